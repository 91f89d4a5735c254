//! A private `redis-server` per test (or per benchmark) on a free loopback
//! port in a temp dir, plain, with the append-only file, or with TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{Error, free_port, try_free_port, try_wait_for};

/// A private redis-server, stopped (by PID) on drop.
pub struct Redis {
    /// The plain (non-TLS) port on 127.0.0.1.
    pub port: u16,
    child: Child,
    /// The server's data folder (`--dir`).
    pub dir: TempDir,
    aof: bool,
    /// For [`Redis::start_with_tls`]: the TLS port and the CA file its
    /// certificate chains to.
    pub tls: Option<(u16, PathBuf)>,
}

impl Redis {
    /// A server on a free port, with neither snapshots nor append-only file.
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// [`Redis::start`], returning an error instead of panicking.
    pub fn try_start() -> Result<Redis, Error> {
        Self::spawn_with(try_free_port()?, tempfile::tempdir()?, false, &[])
    }

    /// A server on `port` (a port a test freed, to start it again there).
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
        let tls = tls_args(dir.path());
        let tls_port = free_port();
        let mut args = vec!["--tls-port".to_string(), tls_port.to_string()];
        args.extend(tls);
        let mut r =
            Self::spawn_with(free_port(), dir, false, &args).unwrap_or_else(|e| panic!("{e}"));
        r.tls = Some((tls_port, r.dir.path().join("ca.pem")));
        r
    }

    fn spawn(port: u16, dir: TempDir, aof: bool) -> Redis {
        Self::spawn_with(port, dir, aof, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn spawn_with(port: u16, dir: TempDir, aof: bool, extra: &[String]) -> Result<Redis, Error> {
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
            .map_err(|cause| Error::Spawn {
                program: "redis-server (see the README's set-up)".into(),
                cause,
            })?;
        // Built before waiting, so that the server is stopped if it never answers.
        let r = Redis {
            port,
            child,
            dir,
            aof,
            tls: None,
        };
        try_wait_for(
            Duration::from_secs(10),
            "redis-server to answer PING",
            || {
                connect(&r.url())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            },
        )?;
        Ok(r)
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

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A new connection to the plain port.
    pub fn con(&self) -> redis::Connection {
        connect(&self.url()).unwrap()
    }

    /// How many calls of `command` (lower case, e.g. `set`) the server has
    /// served since it started or since `CONFIG RESETSTAT`, calls from
    /// scripts included.
    pub fn calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.con())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new synchronous connection to the Redis at `url`.
pub fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection()
}

/// Makes a throw-away CA (`dir/ca.pem`) and a certificate for 127.0.0.1
/// signed by it, with openssl; the `redis-server` arguments that serve it
/// (clients need not present one).
pub(crate) fn tls_args(dir: &Path) -> Vec<String> {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
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
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
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
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "--tls-cert-file".into(),
        file("server.pem"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.pem"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}
