//! A job type's outbound HTTP policy: the `host:port` allow-list and the
//! per-request timeout. Plain data, checked when the config is validated;
//! the runtime enforces it (and re-exports it as `crate::runtime::HttpPolicy`).

use std::time::Duration;

/// Where a job type may send HTTP requests, and how long each may take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    allow: Vec<(String, u16)>,
    /// Host-side limit of one request, connect to last byte of headers.
    pub timeout: Duration,
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
