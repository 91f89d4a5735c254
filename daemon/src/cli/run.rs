//! `ward run`: the daemon.

use std::path::PathBuf;

use clap::Args;

use crate::config::Config;

/// How long the admin API's requests in progress may take to finish once
/// the daemon has stopped.
const API_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// `ward run`
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The config file (TOML).
    #[arg(long, short, env = "WARD_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
}

impl RunArgs {
    /// Loads the config and runs the daemon until SIGINT or SIGTERM, with
    /// the admin API beside it when `[admin] listen` is set (stopped by the
    /// same signal).
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let config = Config::load(&self.config)?;
        let Some(admin) = crate::admin::Server::bind(&config).await? else {
            return crate::worker::run(config, shutdown_signal()).await;
        };
        let (reload, reloads) = crate::worker::reload_channel();
        let admin = admin.with_reload(reload);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let api = tokio::spawn(admin.serve(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }));
        let signal = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        };
        let ran = crate::worker::run_with(config, signal, reloads).await;
        // The signal (or, after an early error, the dropped sender) has told
        // the API to stop; give its requests in progress a moment.
        let mut api = api;
        if tokio::time::timeout(API_STOP, &mut api).await.is_err() {
            api.abort();
        }
        ran
    }
}

/// Resolves on SIGINT or SIGTERM (systemd's stop). SIGHUP is the daemon's
/// own: it reloads the config (see `worker::run`).
pub(crate) async fn shutdown_signal() {
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
