//! Test harness: a private `redis-server` per test on a free loopback port
//! in a temp dir, the example plugins built from `plugins/`, and the real
//! `ward` binary run as a child process. Every process started here is
//! stopped by PID when its guard drops.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the example plugins once per test process (a no-op when they are
/// fresh) and returns the folder holding `<name>.wasm`.
pub fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = workspace().join("scripts/build-plugins");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run scripts/build-plugins");
        assert!(
            out.status.success(),
            "scripts/build-plugins failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        let target = if target.is_relative() {
            workspace().join(target)
        } else {
            target
        };
        target.join("plugins")
    })
}

/// Path of one built example plugin.
pub fn plugin(name: &str) -> PathBuf {
    let p = plugins().join(format!("{name}.wasm"));
    assert!(p.is_file(), "plugin {} was not built", p.display());
    p
}

/// A free TCP port on 127.0.0.1 (bound then released; never 6379).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port != 6379 {
            return port;
        }
    }
}

/// A private redis-server, stopped (by PID) on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    pub dir: TempDir,
    aof: bool,
    /// For [`Redis::start_with_tls`]: the TLS port and the CA file its
    /// certificate chains to.
    pub tls: Option<(u16, PathBuf)>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        Self::spawn(port, tempfile::tempdir().unwrap(), false)
    }

    /// A server with the append-only file on (`appendfsync everysec`).
    pub fn start_with_aof() -> Redis {
        Self::spawn(free_port(), tempfile::tempdir().unwrap(), true)
    }

    /// A server that also listens with TLS on a second port, with a
    /// certificate for 127.0.0.1 from a throw-away CA made with openssl.
    pub fn start_with_tls() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&d)
                .output()
                .expect("openssl must be installed (see the README's set-up)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=ward-test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ]);
        let tls_port = free_port();
        let mut r = Self::spawn_with(
            free_port(),
            dir,
            false,
            &[
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                d.join("server.pem").display().to_string(),
                "--tls-key-file".into(),
                d.join("server.key").display().to_string(),
                "--tls-ca-cert-file".into(),
                d.join("ca.pem").display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        );
        r.tls = Some((tls_port, r.dir.path().join("ca.pem")));
        r
    }

    fn spawn(port: u16, dir: TempDir, aof: bool) -> Redis {
        Self::spawn_with(port, dir, aof, &[])
    }

    fn spawn_with(port: u16, dir: TempDir, aof: bool, extra: &[String]) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", if aof { "yes" } else { "no" }])
            .args(["--appendfsync", "everysec"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see the README's set-up)");
        let r = Redis {
            port,
            child,
            dir,
            aof,
            tls: None,
        };
        wait_for(
            Duration::from_secs(10),
            "redis-server to answer PING",
            || {
                redis::Client::open(r.url())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            },
        );
        r
    }

    /// Kills the server with SIGKILL and starts it again on the same port
    /// and data folder after `down` of downtime.
    pub fn crash_and_restart(mut self, down: Duration) -> Redis {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::spawn(self.port, dir, self.aof)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `ward run`, killed (by PID) on drop; its output goes to a file.
pub struct Ward {
    child: Child,
    pub dir: TempDir,
    pub log: PathBuf,
}

pub fn ward_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ward")
}

/// Retry defaults for tests: three attempts, short delays, no jitter.
pub const FAST_RETRY: &str =
    "max_attempts = 3\ninitial_delay = \"20ms\"\nmax_delay = \"200ms\"\njitter = \"none\"";

/// A config for one queue `q` on `redis`, with `jobs` as `[[job]]` tables
/// and [`FAST_RETRY`] as `[defaults.retry]`.
pub fn config(redis: &Redis, concurrency: u32, jobs: &str) -> String {
    config_with(redis, concurrency, FAST_RETRY, jobs)
}

/// Like [`config`], with `retry` as the body of `[defaults.retry]`.
pub fn config_with(redis: &Redis, concurrency: u32, retry: &str, jobs: &str) -> String {
    config_full(redis, &format!("concurrency = {concurrency}"), retry, jobs)
}

/// Like [`config_with`], with `queue` as the body of queue `q`'s table
/// (besides its name), e.g. `"concurrency = 8\nlease = \"1s\""`.
pub fn config_full(redis: &Redis, queue: &str, retry: &str, jobs: &str) -> String {
    config_top(redis, METRICS_ANY_PORT, queue, retry, jobs)
}

/// The metrics endpoint on a free port the daemon picks, so daemons of
/// parallel tests never compete for the default 127.0.0.1:9464.
pub const METRICS_ANY_PORT: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// Like [`config_full`], with `top` (e.g. `[metrics]` and `[alerts]`
/// tables) in place of [`METRICS_ANY_PORT`].
pub fn config_top(redis: &Redis, top: &str, queue: &str, retry: &str, jobs: &str) -> String {
    format!(
        "{top}\n[redis]\nurl = \"{}\"\n\n[defaults.retry]\n{retry}\n\n[[queue]]\nname = \"q\"\n{queue}\n\n{jobs}",
        redis.url()
    )
}

/// Like [`config_with`], with `queue_keys` (such as `dead_max_len = 2`)
/// added to the `[[queue]]` table of `q`.
pub fn config_queue(
    redis: &Redis,
    concurrency: u32,
    retry: &str,
    queue_keys: &str,
    jobs: &str,
) -> String {
    format!(
        "{METRICS_ANY_PORT}[redis]\nurl = \"{}\"\n\n[defaults.retry]\n{retry}\n\n[[queue]]\nname = \"q\"\nconcurrency = {concurrency}\n{queue_keys}\n\n{jobs}",
        redis.url()
    )
}

/// A `[[job]]` table for queue `q`.
pub fn job(name: &str, plugin_name: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nqueue = \"q\"\nplugin = \"{}\"\n{extra}\n",
        plugin(plugin_name).display()
    )
}

impl Ward {
    pub fn start(config_text: &str) -> Ward {
        Self::start_with_env(config_text, &[])
    }

    /// Starts the daemon with extra environment variables (e.g. secrets).
    pub fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Ward {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ward.toml");
        std::fs::write(&cfg, config_text).unwrap();
        let log = dir.path().join("ward.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(ward_bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info,ward=debug")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Ward { child, dir, log }
    }

    /// Waits until the daemon logged that it is running.
    pub fn ready(self) -> Ward {
        wait_for(Duration::from_secs(60), "ward to start", || {
            self.logs().contains("ward is running")
        });
        self
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Parsed JSON log lines.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "ward did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `ward` CLI to completion.
pub fn ward(args: &[&str]) -> Output {
    Command::new(ward_bin()).args(args).output().unwrap()
}

/// Runs the `ward` CLI with `stdin` as standard input.
pub fn ward_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(ward_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Polls `cond` every 20 ms until it holds, or panics after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` plain `XADD`s of job type `job` with `payload` into queue `q`, in one
/// pipeline, the way any client enqueues; returns the entry (= job) ids.
pub fn xadd_many(redis: &Redis, n: usize, job: &str, payload: &str) -> Vec<String> {
    let mut pipe = redis::pipe();
    for _ in 0..n {
        pipe.cmd("XADD")
            .arg("ward:{q}:jobs")
            .arg("*")
            .arg("job")
            .arg(job)
            .arg("payload")
            .arg(payload);
    }
    pipe.query(&mut redis.con()).unwrap()
}

/// `ward enqueue` into queue `q`; returns the job id.
pub fn enqueue(redis: &Redis, job: &str, payload: &str) -> String {
    enqueue_with(redis, &[], job, payload)
}

/// `ward enqueue` with extra options (such as `--delay 1s`).
pub fn enqueue_with(redis: &Redis, options: &[&str], job: &str, payload: &str) -> String {
    let url = redis.url();
    let mut args = vec!["enqueue", "--redis", url.as_str()];
    args.extend_from_slice(options);
    args.extend_from_slice(&["q", job, payload]);
    let out = ward(&args);
    assert!(out.status.success(), "enqueue failed: {}", stderr(&out));
    stdout(&out)
}

/// Executions of the plugin per job id, counted from the log lines plugins
/// write through the host (one per attempt for `flaky`), across daemons.
pub fn runs_per_job(daemons: &[&Ward]) -> std::collections::HashMap<String, usize> {
    let mut runs = std::collections::HashMap::new();
    for w in daemons {
        for line in w.log_lines() {
            if line["target"] == "ward::plugin" {
                *runs
                    .entry(line["job_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    runs
}

/// `ward job show --json` for job `id` in queue `q`.
pub fn show(redis: &Redis, id: &str) -> serde_json::Value {
    let out = ward(&["job", "show", "--redis", &redis.url(), "q", id, "--json"]);
    assert!(
        out.status.success(),
        "job show {id} failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until job `id` reaches a final state and returns its JSON.
pub fn wait_final(redis: &Redis, id: &str, timeout: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let deadline = Instant::now() + timeout;
    loop {
        let out = ward(&["job", "show", "--redis", &redis.url(), "q", id, "--json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap();
            if matches!(last["state"].as_str(), Some("succeeded" | "dead")) {
                return last;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not finish within {timeout:?}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stream entry's field/value pairs.
pub type Fields = Vec<(String, Vec<u8>)>;

/// The dead-letter entries of queue `q`, newest first, as field maps.
pub fn dead_letters(redis: &Redis) -> Vec<std::collections::HashMap<String, Vec<u8>>> {
    let mut con = redis.con();
    let entries: Vec<(String, Fields)> = redis::cmd("XREVRANGE")
        .arg("ward:{q}:dead")
        .arg("+")
        .arg("-")
        .query(&mut con)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}

pub fn text(map: &std::collections::HashMap<String, Vec<u8>>, key: &str) -> String {
    String::from_utf8_lossy(map.get(key).map(Vec::as_slice).unwrap_or(b"")).into_owned()
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for plugins to call: answers every
/// request with the next of `responses` (the last one repeats) and records
/// each request's head and body. Runs until dropped.
pub struct HttpStub {
    pub port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpStub {
    /// `responses` are (status, extra header lines, body).
    pub fn start(responses: Vec<(u16, String, String)>) -> HttpStub {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut sock, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                sock.set_nonblocking(false).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then as much body as Content-Length says.
                while let Ok(k) = sock.read(&mut chunk) {
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let (status, headers, body) = responses[n.min(responses.len() - 1)].clone();
                n += 1;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes());
            }
        });
        HttpStub {
            port,
            requests,
            stop,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
