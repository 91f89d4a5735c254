//! Which Redis a tool command talks to, and which of its queues.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::config::{self, Config};
use crate::store::{self, Queue, Store};

/// Which Redis a tool command talks to.
#[derive(Debug, Args)]
pub(crate) struct RedisTarget {
    /// Redis URL (default: the config's, else redis://127.0.0.1:6379); a
    /// cluster as redis+cluster://host:port,host:port, a Sentinel-watched
    /// master as redis+sentinel://host:26379,host:26379/master_name.
    #[arg(long, env = "WARD_REDIS_URL")]
    redis: Option<String>,
    /// Take the Redis URL (and the queues, where a command lists them) from
    /// this config file.
    #[arg(long, short, env = "WARD_CONFIG")]
    config: Option<PathBuf>,
}

impl RedisTarget {
    /// The config file: `--config` or `WARD_CONFIG`, else
    /// [`super::DEFAULT_CONFIG`] when it exists.
    pub(crate) fn config(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = PathBuf::from(super::DEFAULT_CONFIG);
            default.is_file().then_some(default)
        })
    }

    /// The Redis URL: `--redis`, else the config's, else the default. Reading
    /// the config also trusts its `ca_file`, so a TLS connection made next
    /// can verify the server.
    pub(crate) fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.redis {
            return Ok(url.clone());
        }
        match &self.config() {
            Some(path) => {
                let cfg = Config::load(path)?;
                if let Some(ca) = &cfg.redis_ca {
                    let pem = std::fs::read(ca).with_context(|| {
                        format!("[redis] ca_file {}: cannot read it", ca.display())
                    })?;
                    store::trust_ca(pem);
                }
                Ok(cfg.redis_url)
            }
            None => Ok(config::DEFAULT_REDIS_URL.to_string()),
        }
    }

    /// The job type's `idempotency_ttl` from `--config`, else the default.
    pub(crate) fn idempotency_ttl(
        &self,
        queue: &str,
        job: &str,
    ) -> anyhow::Result<std::time::Duration> {
        let Some(path) = &self.config() else {
            return Ok(config::DEFAULT_IDEMPOTENCY_TTL);
        };
        let cfg = Config::load(path)?;
        Ok(cfg
            .queues
            .iter()
            .find(|q| q.name == queue)
            .and_then(|q| q.jobs.get(job))
            .map_or(config::DEFAULT_IDEMPOTENCY_TTL, |j| j.idempotency_ttl))
    }

    /// Connects to the Redis server.
    pub(crate) async fn store(&self) -> anyhow::Result<Store> {
        let url = self.url()?;
        let con = store::connect(&url, std::time::Duration::from_secs(1))
            .await
            .with_context(|| format!("cannot reach Redis at {}", store::redacted_url(&url)))?;
        Ok(Store::new(con))
    }

    /// Connects to queue `name`, after checking the name is one Ward accepts.
    pub(crate) async fn queue(&self, name: &str) -> anyhow::Result<Queue> {
        if let Some(why) = config::check_name(name) {
            anyhow::bail!("queue name `{name}` {why}");
        }
        Ok(self.store().await?.queue(name))
    }
}

/// A queue and the Redis that holds it.
#[derive(Debug, Args)]
pub(crate) struct QueueTarget {
    #[command(flatten)]
    pub(crate) target: RedisTarget,
    /// The queue.
    pub(crate) queue: String,
}

impl QueueTarget {
    /// Connects to the queue.
    pub(crate) async fn connect(&self) -> anyhow::Result<Queue> {
        self.target.queue(&self.queue).await
    }
}

/// The queues a tool looks at, and how it prints them.
#[derive(Debug, Args)]
pub(crate) struct QueuesArgs {
    #[command(flatten)]
    pub(crate) target: RedisTarget,
    /// The queues (default: every [[queue]] of `--config`).
    queues: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl QueuesArgs {
    /// The queues named, else every [[queue]] of `--config`; `tool` is the
    /// command, for the message when there are neither.
    pub(crate) fn names(&self, tool: &str) -> anyhow::Result<Vec<String>> {
        if !self.queues.is_empty() {
            return Ok(self.queues.clone());
        }
        let Some(path) = &self.target.config() else {
            anyhow::bail!(
                "name the queues (`ward {tool} emails reports`) or give --config to take every [[queue]] of it"
            );
        };
        Ok(Config::load(path)?
            .queues
            .into_iter()
            .map(|q| q.name)
            .collect())
    }
}
