//! `ward admin`: the admin HTTP API alone, with no worker in the process
//! (`ward run` serves it too when `[admin] listen` is set).

use std::path::PathBuf;

use clap::Args;

use crate::admin::{Server, StartError};
use crate::config::Config;

/// `ward admin`
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The config file (TOML): its [admin] table, its Redis and its queues.
    #[arg(long, short)]
    pub(crate) config: PathBuf,
}

impl AdminArgs {
    /// Serves the API until SIGINT or SIGTERM.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let config = Config::load(&self.config)?;
        if let Some(ca) = &config.redis_ca {
            let pem = std::fs::read(ca)?;
            crate::store::trust_ca(pem);
        }
        let Some(server) = Server::bind(&config).await? else {
            return Err(StartError::NotConfigured(self.config.display().to_string()).into());
        };
        server.serve(super::run::shutdown_signal()).await;
        tracing::info!("admin API stopped");
        Ok(())
    }
}
