//! A tiny HTTP/1.1 client over `std::net::TcpStream` (one request per
//! connection), and `ward admin` as a child process killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ward_testkit::{wait_for, ward_command};

/// The operator token's name, secret and value in every config here.
pub const OPERATOR: (&str, &str, &str) = ("ops-bot", "WARD_TEST_ADMIN_OP", "op-3f9a-token-value");
/// The viewer token's.
pub const VIEWER: (&str, &str, &str) = ("watcher", "WARD_TEST_ADMIN_RO", "ro-77c1-token-value");

/// The environment that holds both tokens' values.
pub fn token_env() -> Vec<(&'static str, &'static str)> {
    vec![(OPERATOR.1, OPERATOR.2), (VIEWER.1, VIEWER.2)]
}

/// `[admin]` on `port` with the two tokens.
pub fn admin_table(port: u16) -> String {
    admin_table_with(port, "")
}

/// [`admin_table`] with `extra` keys of `[admin]` (such as
/// `failed_auth_limit = 3`).
pub fn admin_table_with(port: u16, extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n\n[[admin.token]]\nname = \"{}\"\nrole = \"operator\"\nsecret = \"{}\"\n\n[[admin.token]]\nname = \"{}\"\nrole = \"viewer\"\nsecret = \"{}\"\n",
        OPERATOR.0, OPERATOR.1, VIEWER.0, VIEWER.1
    )
}

/// An answer: its status and its body read as JSON (`Null` if it is not).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: Value,
    pub text: String,
}

/// Sends one request to `127.0.0.1:port`; `token` goes in a bearer header.
pub fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
    request_with(port, method, path, token, &[], body)
}

/// [`request`] with `headers` added (such as `X-Forwarded-For`).
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    try_request(port, method, path, token, headers, body)
        .unwrap_or_else(|raw| panic!("not an HTTP answer: {raw}"))
}

/// A raw HTTP/1.1 form POST (one connection), as a script of the
/// attacker's own would send it; the status and
/// all that came back.
pub fn post_form(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}Content-Type: application/x-www-form-urlencoded",
        header_lines(headers)
    );
    let raw = exchange(port, &head, body).unwrap_or_else(|e| panic!("no answer: {e}"));
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"));
    (status, raw)
}

/// `headers` as header lines, each ending in CRLF.
fn header_lines(headers: &[(&str, &str)]) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect()
}

/// Sends `head` (request line and headers, without the last CRLF) with
/// `body` on a connection of its own to `127.0.0.1:port`, and reads all
/// that comes back until the server closes it.
fn exchange(port: u16, head: &str, body: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// [`request`], with what came back instead of a panic when it is not an
/// HTTP answer (a server still starting may close a connection unanswered).
fn try_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{}Content-Type: application/json",
        header_lines(headers)
    );
    let raw = exchange(port, &head, body)?;
    let (head, text) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let Some(status) = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()) else {
        return Err(raw);
    };
    Ok(Answer {
        status,
        head: head.to_string(),
        body: serde_json::from_str(text).unwrap_or(Value::Null),
        text: text.to_string(),
    })
}

/// `GET path` with `token`, asserting 200; the JSON body.
pub fn get_ok(port: u16, path: &str, token: &str) -> Value {
    let a = request(port, "GET", path, Some(token), "");
    assert_eq!(a.status, 200, "GET {path}: {}", a.text);
    a.body
}

/// Waits until the API on `port` answers.
pub fn wait_serving(port: u16) {
    wait_for(Duration::from_secs(30), "the admin API to answer", || {
        try_request(port, "GET", "/v1/whoami", Some(VIEWER.2), &[], "")
            .is_ok_and(|a| a.status == 200)
    });
}

/// A running `ward admin --config`, killed (by PID) on drop.
pub struct AdminProc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl AdminProc {
    /// Starts `ward admin` with `config` and the tokens' environment, and
    /// waits until it answers on `port`.
    pub fn start(config: &str, port: u16) -> AdminProc {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ward.toml");
        std::fs::write(&path, config).unwrap();
        let child = admin_command(&path)
            .envs(token_env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = AdminProc { child, _dir: dir };
        wait_serving(port);
        proc
    }
}

impl Drop for AdminProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ward admin --config <path>`, not started.
pub fn admin_command(path: &Path) -> Command {
    let mut c = ward_command();
    c.args(["--log-format", "json", "admin", "--config"])
        .arg(path);
    c
}
