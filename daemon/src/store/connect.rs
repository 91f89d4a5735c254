//! Reaching Redis: the connection, TLS, and what concerns the server as a
//! whole rather than one queue.

use std::time::Duration;

use redis::RedisError;
use redis::aio::ConnectionManager;

use super::{Keys, Queue, QueueError};

/// Connects to Redis, with a response timeout long enough for blocking reads
/// of `block` plus slack.
///
/// # Errors
/// The connection error, with the URL's password left out.
pub async fn connect(url: &str, block: Duration) -> Result<ConnectionManager, RedisError> {
    let client = client(url)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(block + Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, cfg).await
}

/// The CA bundle `rediss://` connections trust instead of the system's
/// roots (`[redis] ca_file`), once set for the process.
static TLS_CA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

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

/// The URL with any password replaced by `***`, for messages.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A connection to Ward's Redis server, for what concerns the server rather
/// than one queue (`PING`, the function library), and the source of
/// per-queue handles.
#[derive(Clone)]
pub struct Store {
    con: ConnectionManager,
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
    pub fn new(con: ConnectionManager) -> Store {
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
    pub(super) fn con(&self) -> ConnectionManager {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redacted_url("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(redacted_url("redis://h:1"), "redis://h:1");
    }
}
