//! The real `ward` binary as a child process: the daemon (`ward run`) with
//! its output in a log file, and one-shot CLI runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Error, try_wait_for};

/// The `ward` binary under test. Cargo names it in `CARGO_BIN_EXE_ward`
/// when it runs the daemon's integration tests; otherwise it is the `ward`
/// of the profile folder the running test binary was built into (tests live
/// in `<target>/<profile>/deps/`, which Cargo builds `ward` beside).
pub fn ward_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CARGO_BIN_EXE_ward") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().unwrap();
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps");
        profile.join("ward")
    })
}

/// Where the `ward` processes of the tests keep compiled plugins: one folder
/// under the target folder, shared by every test (a plugin compiles once per
/// machine, as in a real deployment), never the user's `~/.cache/ward`.
pub fn compile_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::target_dir().join("test-cache"))
}

/// A [`Command`] for `bin` (a `ward`) with the tests' environment: compiled
/// plugins go to [`compile_cache`] (as `$XDG_CACHE_HOME/ward`), whatever
/// `CACHE_DIRECTORY` or `XDG_CACHE_HOME` the test runner has.
pub fn ward_command_of(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_remove("CACHE_DIRECTORY")
        .env("XDG_CACHE_HOME", compile_cache());
    cmd
}

/// [`ward_command_of`] the `ward` under test ([`ward_bin`]).
pub fn ward_command() -> Command {
    ward_command_of(ward_bin())
}

/// A running `ward run`, killed (by PID) on drop; its output goes to a file.
pub struct Ward {
    child: Child,
    /// The temp dir holding the config and the log.
    pub dir: TempDir,
    /// The file the daemon's stdout and stderr go to.
    pub log: PathBuf,
}

impl Ward {
    /// Starts [`ward_bin`] with `config_text` as its config.
    pub fn start(config_text: &str) -> Ward {
        Self::start_with_env(config_text, &[])
    }

    /// Starts the daemon with extra environment variables (e.g. secrets).
    pub fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Ward {
        Self::try_start(ward_bin(), config_text, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the daemon `bin` with `config_text` as its config, JSON logs
    /// at `RUST_LOG=info,ward=debug` unless `env` sets another, and `env`.
    pub fn try_start(bin: &Path, config_text: &str, env: &[(&str, &str)]) -> Result<Ward, Error> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("ward.toml");
        std::fs::write(&cfg, config_text)?;
        let log = dir.path().join("ward.log");
        let out = std::fs::File::create(&log)?;
        let child = ward_command_of(bin)
            .args(["--log-format", "json", "run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info,ward=debug")
            .envs(env.iter().copied())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|cause| Error::Spawn {
                program: bin.display().to_string(),
                cause,
            })?;
        Ok(Ward { child, dir, log })
    }

    /// Waits until the daemon logged that it is running.
    pub fn ready(self) -> Ward {
        self.try_ready(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits up to `timeout` until the daemon logged that it is running;
    /// fails at once if it exits first.
    pub fn try_ready(mut self, timeout: Duration) -> Result<Ward, Error> {
        let mut exited = None;
        let waited = try_wait_for(timeout, "ward to start", || {
            if self.logs().contains("ward is running") {
                return true;
            }
            exited = self.child.try_wait().ok().flatten();
            exited.is_some()
        });
        // What it was doing is in its log: a timeout says nothing alone.
        if waited.is_err() {
            return Err(Error::NotRunning {
                after: timeout,
                log_tail: self.log_tail(),
            });
        }
        match exited {
            // It may have logged the line just before exiting.
            Some(status) if !self.logs().contains("ward is running") => Err(Error::Exited {
                status,
                log_tail: self.log_tail(),
            }),
            _ => Ok(self),
        }
    }

    /// The last 20 lines the daemon logged.
    fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Everything the daemon wrote so far.
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

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the daemon has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(self) -> ExitStatus {
        self.try_stop(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("ward did not stop on SIGTERM"))
    }

    /// Sends SIGTERM and waits up to `timeout` for the daemon to exit (it is
    /// killed on drop if it does not).
    pub fn try_stop(mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|cause| Error::Spawn {
                program: "kill".into(),
                cause,
            })?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "ward to stop on SIGTERM".into(),
                    after: timeout,
                });
            }
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
    ward_command().args(args).output().unwrap()
}

/// Runs the `ward` CLI with `stdin` as standard input.
pub fn ward_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = ward_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// A command's standard output, trimmed.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A command's standard error, trimmed.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").unwrap()
}

/// A KiB figure of `/proc/<pid>/status`, such as `VmRSS` or `VmHWM` (the
/// peak); `None` when the process or the field is not there.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    proc_kib(pid, "status", field)
}

/// A KiB figure `field` of `/proc/<pid>/<file>` (`status`, or
/// `smaps_rollup` for `Pss`); `None` when the process or the field is not
/// there.
pub fn proc_kib(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
