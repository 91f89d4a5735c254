//! `ward reload`: tells the running daemon to reload its config (SIGHUP).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::config::Config;

/// `ward reload`
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    /// The config file (TOML) of the daemon to reload; its `[daemon]
    /// pid_file` says which process that is.
    #[arg(long, short, env = "WARD_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
}

impl ReloadArgs {
    /// Checks the config loads (a broken one would be refused by the daemon
    /// anyway, with less said here), then sends SIGHUP to the process named
    /// in its pid file. The daemon logs what it applied or why it refused.
    pub(crate) fn exec(self) -> anyhow::Result<()> {
        let config = Config::load(&self.config)?;
        let Some(pid_file) = &config.pid_file else {
            anyhow::bail!(
                "{}: no [daemon] pid_file, so the daemon cannot be found; set one (and restart the daemon once), or under systemd use `systemctl reload ward`",
                self.config.display()
            );
        };
        let pid = read_pid(pid_file)?;
        let target = rustix::process::Pid::from_raw(pid)
            .with_context(|| format!("{}: {pid} is not a process id", pid_file.display()))?;
        rustix::process::kill_process(target, rustix::process::Signal::HUP).with_context(|| {
            format!("cannot send SIGHUP to process {pid}: is the daemon still running, and yours?")
        })?;
        println!(
            "sent SIGHUP to ward (pid {pid}); its log says what was applied or why it was refused"
        );
        Ok(())
    }
}

/// The process id in `path`, checked to be a running process.
fn read_pid(path: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the pid file {}: is the daemon running?",
            path.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: `{}` is not a process id", path.display(), text.trim()))?;
    if pid <= 1 || !Path::new(&format!("/proc/{pid}")).exists() {
        anyhow::bail!(
            "{}: no process {pid} is running (a stale pid file?)",
            path.display()
        );
    }
    Ok(pid)
}
