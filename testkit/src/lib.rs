//! The one harness for Ward's integration tests and for `ward-bench`: a
//! private `redis-server` on a free loopback port in a temp dir (never
//! 6379), the real `ward` binary run as a child process with a config
//! written by the builders here, plain `XADD`s and `ward enqueue` the way
//! clients enqueue, and a tiny HTTP server for plugins to call. Every
//! process started here is stopped by PID when its guard drops.
//!
//! Functions that tests call panic with a message on failure (that is how a
//! test reports one); the benchmark uses the `try_` variants, which return
//! an [`Error`] instead.

// A failed step of a harness is a failed test: panicking with the reason is
// its way of reporting, so the workspace's unwrap/expect lints do not apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod config;
mod daemon;
mod http;
mod https;
mod jobs;
mod proxy;
mod server;
mod upstream;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use cluster::{Cluster, Node, Sentinels};
pub use config::{
    Config, FAST_RETRY, METRICS_ANY_PORT, config, config_full, config_queue, config_top,
    config_with, job, job_table,
};
pub use daemon::{
    Ward, compile_cache, proc_kib, proc_status_kib, rss_kib, stderr, stdout, ward, ward_bin,
    ward_command, ward_command_of, ward_with_stdin,
};
pub use http::{HttpStub, Request};
pub use https::HttpsStub;
pub use jobs::{
    Fields, audit, create_group, dead_letters, enqueue, enqueue_with, histories, history,
    job_fields, lease_to, queue_stream, records_by_id, records_of, runs_per_job, show, text,
    wait_final, xadd, xadd_entries, xadd_many, xadd_pipe,
};
pub use proxy::ReplyCutter;
pub use server::{Redis, connect};
pub use upstream::UpstreamStub;

/// What can go wrong when the harness starts or stops a process; the
/// panicking helpers report the same text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started (not installed, not built).
    #[error("cannot start {program}: {cause}")]
    Spawn {
        /// The program, as it was named.
        program: String,
        /// Why the OS refused (in the message, not chained: panics print
        /// only the message).
        cause: std::io::Error,
    },
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: Duration,
    },
    /// The daemon did not log that it was running in time.
    #[error("ward was not running after {after:?}; its log ends:\n{log_tail}")]
    NotRunning {
        /// How long it was awaited.
        after: Duration,
        /// The last lines it logged.
        log_tail: String,
    },
    /// The daemon exited before it logged that it was running.
    #[error("ward exited ({status}) before it was running; its log ends:\n{log_tail}")]
    Exited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The last lines it logged.
        log_tail: String,
    },
    /// A file in the harness's temp dir could not be written or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Redis refused a command.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

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
        run_script("build-plugins");
        target_dir().join("plugins")
    })
}

/// The Cargo target folder: `CARGO_TARGET_DIR` (from the workspace root
/// when relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    if target.is_relative() {
        workspace().join(target)
    } else {
        target
    }
}

/// Builds the Python, JavaScript and C example plugins once per test
/// process (installing their toolchains the first time; a no-op when they
/// are fresh), beside the others in [`plugins`].
pub fn build_lang_plugins() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| run_script("build-lang-plugins"));
}

/// Runs `scripts/<name>` from the workspace root, so that a relative
/// `CARGO_TARGET_DIR` means the same folder to it as to [`plugins`], and
/// panics with its output if it fails.
pub fn run_script(name: &str) {
    let out = Command::new("bash")
        .arg(workspace().join("scripts").join(name))
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Path of one built example plugin.
pub fn plugin(name: &str) -> PathBuf {
    let p = plugins().join(format!("{name}.wasm"));
    assert!(p.is_file(), "plugin {} was not built", p.display());
    p
}

/// A free TCP port on 127.0.0.1 (bound then released; never 6379).
pub fn free_port() -> u16 {
    try_free_port().unwrap()
}

/// [`free_port`], reporting a failure to bind instead of panicking.
pub fn try_free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port != 6379 {
            return Ok(port);
        }
    }
}

/// Polls `cond` every 20 ms until it holds, or panics after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    if let Err(e) = try_wait_for(timeout, what, cond) {
        panic!("{e}");
    }
}

/// [`wait_for`], returning [`Error::Timeout`] instead of panicking.
pub fn try_wait_for(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
