//! `ward dev`'s private `redis-server`: a free loopback port (never 6379),
//! data and log in the temp dir, no snapshots, no append-only file;
//! stopped by PID, never by name.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::DevError;

/// How long a new `redis-server` may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` child, killed on [`PrivateRedis::stop`] or drop.
#[derive(Debug)]
pub struct PrivateRedis {
    /// The child, taken when stopped (so stopping twice is harmless).
    child: Mutex<Option<Child>>,
    /// Its PID, to print and for tests to check it is gone.
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PrivateRedis {
    /// Starts `program` on a free port with its data and log in `dir`,
    /// and waits until it accepts connections. A port taken between
    /// choosing and binding is retried on another.
    ///
    /// # Errors
    /// [`DevError::RedisSpawn`] when the program cannot be run;
    /// [`DevError::RedisDown`] when it exits or does not listen in time.
    pub fn start(program: &Path, dir: &Path) -> Result<PrivateRedis, DevError> {
        let mut tries = 3;
        loop {
            match Self::start_once(program, dir) {
                Err(DevError::RedisDown { .. }) if tries > 1 => tries -= 1,
                other => return other,
            }
        }
    }

    fn start_once(program: &Path, dir: &Path) -> Result<PrivateRedis, DevError> {
        let port = super::free_port().map_err(|source| DevError::Io {
            what: "cannot find a free loopback port".into(),
            source,
        })?;
        let log = dir.join("redis.log");
        let out = std::fs::File::create(&log).map_err(|source| DevError::Io {
            what: format!("cannot write {}", log.display()),
            source,
        })?;
        let err = out.try_clone().map_err(|source| DevError::Io {
            what: format!("cannot write {}", log.display()),
            source,
        })?;
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C in the terminal reaches ward
            // alone, which stops its daemon while Redis still answers, and
            // then stops Redis.
            .process_group(0)
            .spawn()
            .map_err(|source| DevError::RedisSpawn {
                program: program.to_path_buf(),
                source,
            })?;
        let redis = PrivateRedis {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            port,
        };
        // `redis` is built before waiting so that a server that never
        // answers is still stopped (on drop).
        let down = |why: String| DevError::RedisDown {
            program: program.to_path_buf(),
            port,
            why,
            log_tail: tail(&log),
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = redis.exited() {
                return Err(down(format!("exited: {status}")));
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(redis);
            }
            if Instant::now() >= deadline {
                return Err(down(format!("no connection within {STARTUP:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The child's exit status, if it has exited.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the server (by PID) and reaps it; later calls do nothing.
    /// SIGKILL is enough: it holds nothing worth saving.
    pub fn stop(&self) {
        let taken = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last lines of a log, for an error message.
fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
