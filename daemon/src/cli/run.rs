//! `ward run`: the daemon.

use std::path::PathBuf;

use clap::Args;

use crate::config::Config;

/// `ward run`
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The config file (TOML).
    #[arg(long, short, env = "WARD_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
}

impl RunArgs {
    /// Loads the config and runs the daemon until SIGINT or SIGTERM.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let config = Config::load(&self.config)?;
        crate::worker::run(config, shutdown_signal()).await
    }
}

/// Resolves on SIGINT or SIGTERM (systemd's stop). SIGHUP, which would
/// otherwise end the process on the spot, is logged and ignored: Ward does
/// not reload its config in place; restart it to apply a new one.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP ignored: Ward does not reload its config in place; restart it (systemctl restart ward) to apply a new one"
                );
            }
        });
    }
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
