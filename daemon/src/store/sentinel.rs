//! Following the master that Redis Sentinels name: after a failover the
//! old master is gone (connection errors) or has become a replica (writes
//! answer `READONLY`); either way the next command's error makes the
//! connection ask the Sentinels again and move to the master they name now.
//! The failed command is not re-sent (it may have run): callers retry, as
//! they do after any connection error, and Ward's scripts are safe to re-run.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::Mutex;

use crate::config::address::SentinelTarget;

/// A self-reconnecting connection to the master the Sentinels name,
/// shared by its clones.
#[derive(Clone)]
pub struct Followed {
    inner: Arc<Inner>,
    /// This clone's copy of the current connection (cheap to clone; swapped
    /// when the master moves).
    current: Arc<Current>,
}

/// The connection to the master as last resolved, and its address.
struct Current {
    con: ConnectionManager,
    addr: String,
}

struct Inner {
    /// Asks the Sentinels; one question at a time.
    sentinels: Mutex<SentinelClient>,
    /// The latest resolved master, which every clone moves to.
    latest: ArcSwap<Current>,
    config: ConnectionManagerConfig,
}

impl Followed {
    /// Asks the Sentinels of `target` for the master and connects to it.
    ///
    /// # Errors
    /// No Sentinel answers, none knows the master, or the master refuses.
    pub(super) async fn connect(
        target: &SentinelTarget,
        config: ConnectionManagerConfig,
    ) -> Result<Followed, RedisError> {
        let mut sentinels = sentinel_client(target)?;
        let first = resolve(&mut sentinels, &config).await?;
        let inner = Inner {
            sentinels: Mutex::new(sentinels),
            latest: ArcSwap::from_pointee(first),
            config,
        };
        let current = inner.latest.load_full();
        Ok(Followed {
            inner: Arc::new(inner),
            current,
        })
    }

    /// The master's address as last resolved (`host:port`), for logs.
    #[must_use]
    pub fn master(&self) -> String {
        self.inner.latest.load().addr.clone()
    }

    /// Moves to the latest resolved master, if another clone has found one.
    fn refresh(&mut self) {
        let latest = self.inner.latest.load();
        if !Arc::ptr_eq(&latest, &self.current) {
            self.current = latest.clone();
        }
    }

    /// After `e`: if it says the master is gone or demoted, asks the
    /// Sentinels again and moves to the master they name.
    async fn follow(&mut self, e: &RedisError) {
        if !master_lost(e) {
            return;
        }
        let stale = self.current.addr.clone();
        let mut sentinels = self.inner.sentinels.lock().await;
        // Another clone may have moved while this one waited for the lock.
        if self.inner.latest.load().addr != stale {
            drop(sentinels);
            self.refresh();
            return;
        }
        match resolve(&mut sentinels, &self.inner.config).await {
            Ok(next) => {
                if next.addr != stale {
                    tracing::warn!(from = %stale, to = %next.addr, "Redis Sentinel names a new master; following it");
                }
                self.inner.latest.store(Arc::new(next));
                drop(sentinels);
                self.refresh();
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot ask Redis Sentinel for the master; retrying on the next command");
            }
        }
    }
}

/// A client for the master the Sentinels of `target` name now (for a
/// pub/sub connection of its own).
///
/// # Errors
/// No Sentinel answers or none knows the master.
pub(super) async fn master_client(target: &SentinelTarget) -> Result<redis::Client, RedisError> {
    sentinel_client(target)?.async_get_client().await
}

/// The Sentinels' client for `target`: the master's user and password and
/// TLS go to the master; the Sentinels are reached as their URLs say.
fn sentinel_client(target: &SentinelTarget) -> Result<SentinelClient, RedisError> {
    let mut addrs: Vec<ConnectionAddr> = Vec::new();
    for url in &target.sentinels {
        addrs.push(super::client(url)?.get_connection_info().addr().clone());
    }
    let mut b = SentinelClientBuilder::new(addrs, &target.master_name, SentinelServerType::Master)?;
    if target.tls {
        b = b
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        if let Some(ca) = super::connect::trusted_ca() {
            let certs = || redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            };
            b = b
                .set_client_to_redis_certificates(certs())
                .set_client_to_sentinel_certificates(certs());
        }
    }
    if let Some(user) = &target.username {
        b = b.set_client_to_redis_username(user);
    }
    if let Some(pass) = &target.password {
        b = b.set_client_to_redis_password(pass);
    }
    b.build()
}

/// Asks the Sentinels for the master (they check its `ROLE`) and connects.
async fn resolve(
    sentinels: &mut SentinelClient,
    config: &ConnectionManagerConfig,
) -> Result<Current, RedisError> {
    let client = sentinels.async_get_client().await?;
    let addr = client.get_connection_info().addr().to_string();
    let con = ConnectionManager::new_with_config(client, config.clone()).await?;
    Ok(Current { con, addr })
}

/// Whether `e` means the master this connection knows is no longer the
/// master: unreachable, or answering as a replica.
fn master_lost(e: &RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// How long a connection waits for the Sentinels when a command found the
/// master gone, at most (then the command's own error is returned).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(5);

impl ConnectionLike for Followed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.refresh();
            let mut con = self.current.con.clone();
            let reply = con.req_packed_command(cmd).await;
            if let Err(e) = &reply {
                let _ = tokio::time::timeout(FOLLOW_TIMEOUT, self.follow(e)).await;
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.refresh();
            let mut con = self.current.con.clone();
            let reply = con.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &reply {
                let _ = tokio::time::timeout(FOLLOW_TIMEOUT, self.follow(e)).await;
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.current.con.get_db()
    }
}
