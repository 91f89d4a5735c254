//! Reaching Redis: the connection, TLS, and what concerns the server as a
//! whole rather than one queue.

use std::time::Duration;

use redis::RedisError;
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClientBuilder;

use super::sentinel::Followed;
use super::{Connection, Keys, Queue, QueueError};
use crate::config::address::Target;

/// How long connecting to one node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to the Redis that the address `url` names (one server, a
/// cluster or a Sentinel-watched master; see [`Target`]), with a response
/// timeout long enough for blocking reads of `block` plus slack.
///
/// # Errors
/// The connection error, with the URL's password left out.
pub async fn connect(url: &str, block: Duration) -> Result<Connection, RedisError> {
    let response = block + Duration::from_secs(10);
    let manager = || {
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2))
    };
    match Target::parse(url)? {
        Target::Single(url) => ConnectionManager::new_with_config(client(&url)?, manager())
            .await
            .map(Connection::Single),
        Target::Cluster(seeds) => {
            let tls = seeds.first().is_some_and(|s| s.starts_with("rediss://"));
            let mut b = ClusterClientBuilder::new(seeds)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(response)
                .retries(3)
                .max_retry_wait(2_000);
            if let (true, Some(ca)) = (tls, trusted_ca()) {
                b = b.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                });
            }
            b.build()?
                .get_async_connection()
                .await
                .map(Connection::Cluster)
        }
        Target::Sentinel(target) => Followed::connect(&target, manager())
            .await
            .map(Connection::Sentinel),
    }
}

/// The clients a pub/sub connection may use for the address `url`, to try
/// in order: the one server; a cluster's seed nodes (a cluster passes every
/// `PUBLISH` to every node, so any node hears a queue's channels); the
/// master the Sentinels name now.
///
/// # Errors
/// An address that is not one, or Sentinels that name no master.
pub(super) async fn pubsub_clients(url: &str) -> Result<Vec<redis::Client>, RedisError> {
    match Target::parse(url)? {
        Target::Single(url) => Ok(vec![client(&url)?]),
        Target::Cluster(seeds) => seeds.iter().map(|s| client(s)).collect(),
        Target::Sentinel(target) => Ok(vec![super::sentinel::master_client(&target).await?]),
    }
}

/// The CA bundle `rediss://` connections trust instead of the system's
/// roots (`[redis] ca_file`), once set for the process.
static TLS_CA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// The CA bundle set by [`trust_ca`], if any.
pub(super) fn trusted_ca() -> Option<&'static [u8]> {
    TLS_CA.get().map(Vec::as_slice)
}

/// Makes `rediss://` connections of this process trust the CA certificates
/// in `pem` (and only those) instead of the system's roots. The first call wins.
pub fn trust_ca(pem: Vec<u8>) {
    let _ = TLS_CA.set(pem);
}

/// A Redis client for `url`: `redis://`, `unix://` or `rediss://` (TLS,
/// verified against the system's roots or the [`trust_ca`] bundle).
///
/// # Errors
/// A URL the client cannot parse, or a CA bundle that is not PEM.
pub fn client(url: &str) -> Result<redis::Client, RedisError> {
    match TLS_CA.get() {
        Some(ca) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        _ => redis::Client::open(url),
    }
}

/// A connection to Ward's Redis server, for what concerns the server rather
/// than one queue (`PING`, the function library), and the source of
/// per-queue handles.
#[derive(Clone)]
pub struct Store {
    con: Connection,
}

impl Store {
    /// Connects to `url` (see [`connect`]).
    ///
    /// # Errors
    /// The connection error, with the URL's password left out.
    pub async fn connect(url: &str, block: Duration) -> Result<Store, RedisError> {
        connect(url, block).await.map(Store::new)
    }

    /// The store over an existing connection.
    #[must_use]
    pub fn new(con: Connection) -> Store {
        Store { con }
    }

    /// The handle of queue `name`, over this store's connection.
    #[must_use]
    pub fn queue(&self, name: &str) -> Queue {
        Queue::new(Keys::new(name), self.con.clone())
    }

    /// `PING`: whether Redis answers on this connection.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        let _: String = redis::cmd("PING").query_async(&mut con).await?;
        Ok(())
    }

    /// The connection, for the operations of the store's other files.
    pub(super) fn con(&self) -> Connection {
        self.con.clone()
    }
}

impl Queue {
    /// `PING`: whether Redis answers on this queue's connection.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.store().ping().await
    }
}
