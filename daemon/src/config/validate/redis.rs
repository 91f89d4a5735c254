//! `[redis]`: the URL (or a cluster's seed nodes, or Sentinels and a master
//! name), the CA file of a TLS connection, and the password from a secret.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::defaults::DEFAULT_REDIS_URL;
use toml::Spanned;

use crate::config::raw::RawRedis;

/// The Redis address (a URL, default when not given; or the cluster's or
/// Sentinels' address, see [`crate::config::address::Target`]) and the `ca_file`
/// resolved against the config's folder `base`.
pub(super) fn redis(
    raw: RawRedis,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> (String, Option<PathBuf>) {
    let mut url = match (raw.cluster, raw.sentinels) {
        (Some(_), Some(s)) => {
            problem(
                s.span(),
                "[redis] names both a cluster and sentinels: a cluster fails over by itself; keep one".to_string(),
            );
            DEFAULT_REDIS_URL.to_string()
        }
        (Some(c), None) => deployment(raw.url.as_ref(), c, "cluster", problem, |nodes| {
            crate::config::address::cluster_address(nodes)
        }),
        (None, Some(s)) => match &raw.master_name {
            Some(name) if !name.get_ref().is_empty() && !name.get_ref().contains(['/', ',']) => {
                let name = name.get_ref().clone();
                deployment(raw.url.as_ref(), s, "sentinels", problem, |nodes| {
                    crate::config::address::sentinel_address(nodes, &name)
                })
            }
            Some(name) => {
                problem(
                    name.span(),
                    "[redis] master_name must be the master's name in the Sentinels' configuration (`sentinel monitor <name> …`), not empty and without / or ,".to_string(),
                );
                DEFAULT_REDIS_URL.to_string()
            }
            None => {
                problem(
                    s.span(),
                    "[redis] sentinels needs master_name, the name the Sentinels monitor the master by (`sentinel monitor <name> …`)".to_string(),
                );
                DEFAULT_REDIS_URL.to_string()
            }
        },
        (None, None) => {
            if let Some(name) = &raw.master_name {
                problem(
                    name.span(),
                    "[redis] master_name is only used with sentinels = [\"redis://host:26379\", …]"
                        .to_string(),
                );
            }
            single(raw.url, problem)
        }
    };
    if let Some(p) = raw.password {
        match password(p.get_ref(), &url) {
            Ok(with) => url = with,
            Err(message) => problem(p.span(), message),
        }
    }
    let ca = raw.ca_file.map(|f| {
        let file = base.join(f.get_ref());
        match std::fs::read_to_string(&file) {
            Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
            Ok(_) => problem(
                f.span(),
                format!(
                    "[redis] ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                ),
            ),
            Err(e) => problem(
                f.span(),
                format!("[redis] ca_file {}: cannot read it: {e}", file.display()),
            ),
        }
        if !url.starts_with("rediss") {
            problem(
                f.span(),
                "[redis] ca_file is only used with a rediss:// url; write the url as rediss://host:port for TLS, or remove ca_file".to_string(),
            );
        }
        file
    });
    (url, ca)
}

/// `[redis] url`, checked (the default when not given).
fn single(url: Option<Spanned<String>>, problem: &mut dyn FnMut(Range<usize>, String)) -> String {
    match url {
        Some(url) => {
            // The address forms of a cluster and of Sentinels are accepted
            // too (what `--redis` takes), see `config::address`.
            if crate::config::address::Target::parse(url.get_ref()).is_err() {
                problem(
                    url.span(),
                    format!(
                        "[redis] url `{}` is not a Redis URL; write it like \"redis://127.0.0.1:6379\" (or rediss:// for TLS; for a cluster or Sentinels see `cluster` and `sentinels`)",
                        crate::config::address::redacted_url(url.get_ref())
                    ),
                );
            }
            url.into_inner()
        }
        None => DEFAULT_REDIS_URL.to_string(),
    }
}

/// The address of a cluster or of Sentinels from their node list `nodes`
/// (`key` is its name in `[redis]`), which replaces `url`.
fn deployment(
    url: Option<&Spanned<String>>,
    nodes: Spanned<Vec<String>>,
    key: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
    address: impl FnOnce(&[String]) -> Result<String, String>,
) -> String {
    if let Some(url) = url {
        problem(
            url.span(),
            format!("[redis] names both url and {key}: {key} replaces url; remove url"),
        );
    }
    match address(nodes.get_ref()) {
        Ok(a) => a,
        Err(why) => {
            problem(
                nodes.span(),
                format!(
                    "[redis] {key} {why} (write it like {key} = [\"redis://10.0.0.1:{}\", \"redis://10.0.0.2:{}\"])",
                    if key == "cluster" { 7000 } else { 26379 },
                    if key == "cluster" { 7001 } else { 26379 },
                ),
            );
            DEFAULT_REDIS_URL.to_string()
        }
    }
}
/// `url` with the password of `[redis] password = "secret:NAME"` in it.
fn password(value: &str, url: &str) -> Result<String, String> {
    let Some(name) = value.strip_prefix(crate::config::observability::SECRET_PREFIX) else {
        return Err(
            "[redis] password must be \"secret:NAME\" (read from the environment variable NAME or $CREDENTIALS_DIRECTORY/NAME, systemd's LoadCredential=): a password in clear has no place in the config file".to_string(),
        );
    };
    if !crate::secret::valid_name(name) {
        return Err(format!(
            "[redis] password `secret:{name}`: a secret name is letters, digits and _, not starting with a digit"
        ));
    }
    let Some(secret) = crate::secret::read(name) else {
        return Err(format!(
            "[redis] password: secret `{name}` is not set: give the process an environment variable {name} or a file $CREDENTIALS_DIRECTORY/{name} (systemd LoadCredential={name}:/etc/ward/{name})"
        ));
    };
    with_password(url, &secret)
}

/// `url` (`redis://[user@]host...`) with `password` in its user info.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let Some(scheme_end) = url.find("://") else {
        return Err(format!("[redis] url `{url}` has no scheme"));
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (user, host) = match rest[..authority_end].rfind('@') {
        Some(at) if rest[..at].contains(':') => {
            return Err(
                "[redis] password is set, and the url has a password too: keep one, the secret"
                    .to_string(),
            );
        }
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => ("", rest),
    };
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Ok(format!("{scheme}{user}:{encoded}@{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_into_the_url_encoded() {
        assert_eq!(
            with_password("redis://10.0.0.5:6379/2", "p@ss w:rd").unwrap(),
            "redis://:p%40ss%20w%3Ard@10.0.0.5:6379/2"
        );
        assert_eq!(
            with_password("rediss://ward@h:6380", "x").unwrap(),
            "rediss://ward:x@h:6380"
        );
        assert!(with_password("redis://u:old@h:1", "x").is_err());
        let url = with_password("redis://h:1", "p@ss").unwrap();
        let info = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection_info()
            .clone();
        assert_eq!(info.redis_settings().password(), Some("p@ss"));
        assert!(
            password("hunter2", "redis://h:1")
                .unwrap_err()
                .contains("in clear")
        );
    }
}
