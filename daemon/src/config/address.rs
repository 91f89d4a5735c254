//! Which Redis deployment Ward talks to, read from one address string, so
//! that every part of Ward (the daemon, its services, the `ward` tools, the
//! admin server) passes the same string around and connects the same way:
//!
//! - `redis://host:port[/db]`, `rediss://…` (TLS), `unix:///path`: one
//!   server;
//! - `redis+cluster://[user:password@]host:port,host:port,…` (or
//!   `rediss+cluster://`): a Redis Cluster, by its seed nodes;
//! - `redis+sentinel://[user:password@]host:port,host:port,…/master_name`
//!   (or `rediss+sentinel://`): the master that the Sentinels at those
//!   addresses name `master_name`; the user and password are the master's.
//!
//! The config's `[redis] cluster = […]` and `sentinels = […]` with
//! `master_name` are written as these strings (`validate/redis.rs`); the
//! store connects by them (`store/connect.rs`).

use redis::{ErrorKind, RedisError};

/// The scheme suffix of a cluster's address.
const CLUSTER: &str = "+cluster://";
/// The scheme suffix of a Sentinel-watched master's address.
const SENTINEL: &str = "+sentinel://";

/// A Redis deployment, as an address string names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, by its URL.
    Single(String),
    /// A Redis Cluster, by the URLs of its seed nodes (each with the user
    /// and password, if any).
    Cluster(Vec<String>),
    /// A master that Sentinels watch.
    Sentinel(SentinelTarget),
}

/// Where Sentinels are, and how to reach the master they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// The Sentinels' URLs (`redis://host:port`, no password).
    pub sentinels: Vec<String>,
    /// The master's name in the Sentinels' configuration.
    pub master_name: String,
    /// Whether the master is reached over TLS.
    pub tls: bool,
    /// The master's user (ACL), if any.
    pub username: Option<String>,
    /// The master's password, if any.
    pub password: Option<String>,
}

impl Target {
    /// Reads an address string (see the module's documentation).
    ///
    /// # Errors
    /// An address that names no host, a Sentinel address without a master
    /// name, or a URL the Redis client cannot parse.
    pub fn parse(address: &str) -> Result<Target, RedisError> {
        let invalid = |why: String| {
            RedisError::from((ErrorKind::InvalidClientConfig, "bad Redis address", why))
        };
        if let Some((scheme, rest)) = split_scheme(address, CLUSTER) {
            let (userinfo, hosts) = split_userinfo(rest);
            let hosts = hosts.trim_end_matches('/');
            let nodes = host_list(hosts).map_err(invalid)?;
            let urls: Vec<String> = nodes
                .iter()
                .map(|h| format!("{scheme}://{userinfo}{h}"))
                .collect();
            for url in &urls {
                redis::Client::open(url.as_str())?;
            }
            return Ok(Target::Cluster(urls));
        }
        if let Some((scheme, rest)) = split_scheme(address, SENTINEL) {
            let (userinfo, rest) = split_userinfo(rest);
            let Some((hosts, master)) = rest.split_once('/') else {
                return Err(invalid(format!(
                    "`{}` names no master: end it with /<master_name>",
                    redacted_url(address)
                )));
            };
            let master = master.trim_end_matches('/');
            if master.is_empty() {
                return Err(invalid(
                    "the Sentinel address's master name is empty".into(),
                ));
            }
            let sentinels: Vec<String> = host_list(hosts)
                .map_err(invalid)?
                .iter()
                .map(|h| format!("{scheme}://{h}"))
                .collect();
            for url in &sentinels {
                redis::Client::open(url.as_str())?;
            }
            // The client decodes the user info the same way as in a plain URL.
            let info = redis::Client::open(format!("redis://{userinfo}localhost"))?
                .get_connection_info()
                .redis_settings()
                .clone();
            return Ok(Target::Sentinel(SentinelTarget {
                sentinels,
                master_name: master.to_string(),
                tls: scheme == "rediss",
                username: info.username().map(str::to_string),
                password: info.password().map(str::to_string),
            }));
        }
        redis::Client::open(address)?;
        Ok(Target::Single(address.to_string()))
    }

    /// What kind of deployment, for logs: `redis`, `cluster` or `sentinel`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Single(_) => "redis",
            Target::Cluster(_) => "cluster",
            Target::Sentinel(_) => "sentinel",
        }
    }
}

/// The address string of a cluster with seed nodes `urls` (all
/// `redis://` or all `rediss://`, with the same user info if any).
///
/// # Errors
/// Seeds of mixed schemes or user infos, or a seed that is not a URL.
pub fn cluster_address(urls: &[String]) -> Result<String, String> {
    joined(urls, CLUSTER, "")
}

/// The address string of master `master_name` watched by the Sentinels at
/// `urls`.
///
/// # Errors
/// As [`cluster_address`].
pub fn sentinel_address(urls: &[String], master_name: &str) -> Result<String, String> {
    joined(urls, SENTINEL, &format!("/{master_name}"))
}

fn joined(urls: &[String], kind: &str, tail: &str) -> Result<String, String> {
    let mut scheme = None;
    let mut userinfo = None;
    let mut hosts = Vec::new();
    for url in urls {
        let Some((s, rest)) = url.split_once("://") else {
            return Err(format!(
                "`{url}` is not a URL; write it like \"redis://127.0.0.1:7000\""
            ));
        };
        if s != "redis" && s != "rediss" {
            return Err(format!(
                "`{}`: only redis:// and rediss:// addresses are possible here",
                redacted_url(url)
            ));
        }
        if *scheme.get_or_insert(s) != s {
            return Err("mixes redis:// and rediss://; use one for every node".to_string());
        }
        let (info, host) = split_userinfo(rest);
        if *userinfo.get_or_insert(info) != info {
            return Err("names different users or passwords; give every node the same".to_string());
        }
        let host = host.trim_end_matches('/');
        if host.is_empty() || host.contains('/') || host.contains(',') {
            return Err(format!(
                "`{}` must be scheme://host:port, with no database or path",
                redacted_url(url)
            ));
        }
        hosts.push(host);
    }
    let Some(scheme) = scheme else {
        return Err("is empty; name at least one node".to_string());
    };
    Ok(format!(
        "{scheme}{kind}{}{}{tail}",
        userinfo.unwrap_or(""),
        hosts.join(",")
    ))
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

/// `(scheme, rest)` when `address` is `<scheme><kind>rest`.
fn split_scheme<'a>(address: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let at = address.find(kind)?;
    let scheme = &address[..at];
    matches!(scheme, "redis" | "rediss").then(|| (scheme, &address[at + kind.len()..]))
}

/// `("user:password@", rest)` (empty when there is none).
fn split_userinfo(rest: &str) -> (&str, &str) {
    match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    }
}

/// The comma-separated `host:port`s of an address.
fn host_list(hosts: &str) -> Result<Vec<&str>, String> {
    let list: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if list.iter().any(|h| h.is_empty()) {
        return Err(format!(
            "`{hosts}` must be host:port,host:port,… with no empty entry"
        ));
    }
    Ok(list)
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

    #[test]
    fn addresses_name_one_server_a_cluster_or_a_sentinel_master() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::Single("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://:p%40ss@a:7000,b:7001").unwrap(),
            Target::Cluster(vec![
                "redis://:p%40ss@a:7000".into(),
                "redis://:p%40ss@b:7001".into()
            ])
        );
        let Target::Sentinel(s) =
            Target::parse("rediss+sentinel://u:p%40ss@a:26379,b:26380/main").unwrap()
        else {
            panic!("not a sentinel target");
        };
        assert_eq!(s.sentinels, ["rediss://a:26379", "rediss://b:26380"]);
        assert_eq!(s.master_name, "main");
        assert!(s.tls);
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(Target::parse("redis+sentinel://a:26379").is_err());
        assert!(Target::parse("redis+sentinel://a:26379/").is_err());
        assert!(Target::parse("redis+cluster://a:7000,,b:7001").is_err());
        assert!(Target::parse("http+cluster://a:1").is_err());
    }

    #[test]
    fn config_lists_become_one_address() {
        let seeds = ["redis://a:7000".to_string(), "redis://b:7001/".to_string()];
        assert_eq!(
            cluster_address(&seeds).unwrap(),
            "redis+cluster://a:7000,b:7001"
        );
        assert_eq!(
            sentinel_address(&["redis://s:26379".into()], "main").unwrap(),
            "redis+sentinel://s:26379/main"
        );
        let mixed = ["redis://a:1".to_string(), "rediss://b:2".to_string()];
        assert!(cluster_address(&mixed).unwrap_err().contains("mixes"));
        let users = ["redis://u:x@a:1".to_string(), "redis://b:2".to_string()];
        assert!(
            cluster_address(&users)
                .unwrap_err()
                .contains("different users")
        );
        assert!(
            cluster_address(&["redis://a:1/3".into()])
                .unwrap_err()
                .contains("no database")
        );
        assert!(cluster_address(&[]).is_err());
        // The password secret goes into the address as into a plain URL.
        assert_eq!(
            Target::parse(&cluster_address(&seeds).unwrap()).unwrap(),
            Target::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
    }
}
