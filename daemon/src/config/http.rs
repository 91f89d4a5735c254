//! A job type's outbound HTTP policy: the `host:port` allow-list, the
//! per-request timeout and the bounds of its connection pool. Plain data,
//! checked when the config is validated; the runtime enforces it (and
//! re-exports it as `crate::runtime::HttpPolicy`).

use std::time::Duration;

/// Where a job type may send HTTP requests, how long each may take, and
/// how many idle connections its pool keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    allow: Vec<(String, u16)>,
    /// Host-side limit of one request, connect to last byte of headers.
    pub timeout: Duration,
    /// Most idle connections kept open per `host:port` for the next
    /// attempts of the job type (0: a connection per request).
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept before it is closed.
    pub pool_idle_timeout: Duration,
    /// CA certificates (DER) `https` upstreams may chain to besides
    /// Mozilla's roots, read from `http.ca_file` when the config is loaded.
    pub extra_roots: Roots,
    /// Whether `https` connections offer HTTP/2 by ALPN (`http.http2`):
    /// one connection then carries many attempts' requests at once.
    pub http2: bool,
}

/// CA certificates, DER each; shown as their number, not their bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Roots(pub Vec<Vec<u8>>);

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} certificate(s)", self.0.len())
    }
}

/// Idle connections kept per `host:port` unless `http.pool_max_idle` says.
pub const DEFAULT_POOL_MAX_IDLE: usize = 1024;

/// How long an idle connection is kept unless `http.pool_idle_timeout`
/// says: below the 60–120 s after which common servers and load balancers
/// close idle connections themselves, so Ward rarely sends on one the
/// other end is closing.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            allow: Vec::new(),
            timeout: Duration::ZERO,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            extra_roots: Roots::default(),
            http2: false,
        }
    }
}

impl HttpPolicy {
    /// A policy from `host:port` entries (`"api.mailer.example:443"`).
    ///
    /// # Errors
    /// A message naming the first entry that is not `host:port`.
    pub fn new(allow: &[String], timeout: Duration) -> Result<HttpPolicy, String> {
        let mut parsed = Vec::with_capacity(allow.len());
        for entry in allow {
            let (host, port) = entry
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .filter(|(h, _)| !h.is_empty() && !h.contains('/'))
                .ok_or_else(|| {
                    format!("http.allow entry `{entry}` is not host:port; write it like \"api.example.com:443\"")
                })?;
            parsed.push((host.trim_matches(['[', ']']).to_ascii_lowercase(), port));
        }
        Ok(HttpPolicy {
            allow: parsed,
            timeout,
            ..HttpPolicy::default()
        })
    }

    /// Whether a request to `host:port` may go out.
    #[must_use]
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.allow.iter().any(|(h, p)| *h == host && *p == port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_matches_host_and_port_exactly() {
        let p = HttpPolicy::new(
            &["api.mailer.example:443".into(), "127.0.0.1:8080".into()],
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(p.allows("api.mailer.example", 443));
        assert!(p.allows("API.Mailer.Example", 443));
        assert!(p.allows("127.0.0.1", 8080));
        assert!(!p.allows("api.mailer.example", 80));
        assert!(!p.allows("evil.example", 443));
        assert!(!p.allows("127.0.0.1", 8081));
    }

    #[test]
    fn allow_entries_need_a_port() {
        let err =
            HttpPolicy::new(&["api.mailer.example".into()], Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("host:port"), "{err}");
        assert!(HttpPolicy::new(&["http://x:1/".into()], Duration::from_secs(1)).is_err());
    }
}
