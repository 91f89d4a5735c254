//! `ward config`: check a config file without touching Redis.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::Config;

/// `ward config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the file and compile every plugin it names.
    Check {
        /// The config file (TOML).
        #[arg(long, short, env = "WARD_CONFIG", default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

impl ConfigCommand {
    /// Runs one `ward config` command.
    pub(crate) fn exec(self) -> anyhow::Result<()> {
        match self {
            ConfigCommand::Check { config } => check(&config),
        }
    }
}

/// Validates the config, compiles its plugins and lists them, with each
/// schedule's next fire time.
fn check(path: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let plugins = crate::worker::check(&cfg)?;
    println!("{}: ok", cfg.path.display());
    for (queue, job, path, digest) in plugins {
        println!(
            "  {queue}/{job}: {} (sha256 {})",
            path.display(),
            &digest[..16.min(digest.len())]
        );
    }
    for sc in &cfg.schedules {
        let next = crate::schedule::next_fire(&sc.schedule, sc.tz, chrono::Utc::now())
            .map_or_else(|| "never".to_string(), |t| t.to_rfc3339());
        println!(
            "  schedule {}: `{}` -> {}/{} (next fire {next})",
            sc.name, sc.cron, sc.queue, sc.job
        );
    }
    Ok(())
}
