//! Delivering an alert to a webhook: its secrets read once, one POST per
//! try, retried with backoff, the result counted and logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::AlertKind;
use crate::config::Roots;
use crate::config::observability::{Setting, WebhookConfig, WebhookFormat};
use crate::obs::events::AlertDelivered;
use crate::obs::secrets;

/// First delay before a failed webhook request is retried; doubles each time.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest delay between two requests of one alert.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub(super) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One webhook, its secrets read.
#[derive(Clone)]
pub struct Webhook {
    uri: hyper::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    max_attempts: u32,
    /// The body's shape.
    format: WebhookFormat,
    /// `[alerts] cooldown`, seconds: how long an Alertmanager alert lasts
    /// unless renewed.
    cooldown_secs: u64,
    /// `scheme://host:port`, for logs (paths and user info can carry tokens).
    shown: String,
    client: HttpClient,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("sink", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The HTTP client alerts are sent with: plain HTTP, and HTTPS with rustls
/// (ring) trusting the system's CA certificates and `extra` (a webhook's
/// `ca_file`).
pub(super) fn http_client(extra: &Roots) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 && extra.0.is_empty() {
        let why = native
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        tracing::warn!(error = %why, "no system CA certificates (install ca-certificates); https:// webhooks will fail");
    }
    for der in &extra.0 {
        // Checked when the config was loaded: each one is usable.
        let _ = roots.add(rustls::pki_types::CertificateDer::from(der.clone()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring supports them all; the process's default provider is ring too.
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

impl Webhook {
    /// Reads the secrets a webhook names and parses its URL and headers.
    /// `client` is the shared one; a webhook with its own CA certificates
    /// gets a client of its own that trusts them too.
    ///
    /// # Errors
    /// A message naming the missing secret or the bad value.
    pub fn resolve(
        cfg: &WebhookConfig,
        client: &HttpClient,
        cooldown: Duration,
    ) -> Result<Webhook, String> {
        let read = |s: &Setting| match s {
            Setting::Literal(v) => Ok(v.clone()),
            Setting::Secret(name) => secrets::resolve(name),
        };
        let url = read(&cfg.url)?;
        if let Some(why) = crate::config::observability::check_url(&url) {
            return Err(format!("the webhook URL {why}"));
        }
        let uri: hyper::Uri = url.parse().map_err(|e| format!("the webhook URL: {e}"))?;
        let mut headers = Vec::new();
        for (name, value) in &cfg.headers {
            let v = read(value)?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header name `{name}`: {e}"))?;
            let mut v = HeaderValue::from_str(&v)
                .map_err(|_| format!("header `{name}`: the value is not valid in HTTP"))?;
            if matches!(value, Setting::Secret(_)) {
                v.set_sensitive(true);
            }
            headers.push((name, v));
        }
        // Host and port only: the path and any user:password@ can be secret.
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.host().unwrap_or(""),
            uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        );
        Ok(Webhook {
            uri,
            headers,
            timeout: cfg.timeout,
            max_attempts: cfg.max_attempts,
            format: cfg.format,
            cooldown_secs: cooldown.as_secs(),
            shown,
            client: if cfg.extra_roots.0.is_empty() {
                client.clone()
            } else {
                http_client(&cfg.extra_roots)
            },
        })
    }

    /// The body of `alert` for this webhook's receiver.
    ///
    /// # Errors
    /// Serialization errors (none in practice).
    pub(super) fn body(&self, alert: &super::Alert) -> serde_json::Result<Bytes> {
        super::format::body(alert, self.format, self.cooldown_secs).map(Bytes::from)
    }

    /// One POST; `Ok` on a 2xx answer.
    async fn post(&self, body: Bytes) -> Result<(), String> {
        let mut req = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("ward/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| secrets::redact(&error_chain(&e)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }

    /// POSTs `body` until a 2xx answer or `max_attempts` requests, waiting
    /// 1 s, 2 s, 4 s… (at most 60 s) between them; logs and counts the result.
    pub(super) async fn deliver(self, body: Bytes, kind: AlertKind, queue: String, job: String) {
        let mut backoff = crate::backoff::Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            match self.post(body.clone()).await {
                Ok(()) => {
                    AlertDelivered {
                        kind: kind.as_str(),
                        queue: &queue,
                        job: &job,
                        sink: &self.shown,
                        attempts: attempt,
                        error: None,
                    }
                    .emit();
                    return;
                }
                Err(e) => {
                    if attempt < self.max_attempts {
                        let delay = backoff.next();
                        tracing::warn!(kind = kind.as_str(), sink = %self.shown, attempt, error = %e, retry_in = ?delay, "alert webhook failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    last_error = e;
                }
            }
        }
        AlertDelivered {
            kind: kind.as_str(),
            queue: &queue,
            job: &job,
            sink: &self.shown,
            attempts: self.max_attempts,
            error: Some(&last_error),
        }
        .emit();
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_are_named_in_logs_without_path_or_credentials() {
        let cfg = WebhookConfig {
            url: Setting::Literal("https://user:pw@hooks.example.com:8443/T0/B1/secret".into()),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            max_attempts: 1,
            format: WebhookFormat::Ward,
            extra_roots: Roots::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hook = rt.block_on(async {
            Webhook::resolve(
                &cfg,
                &http_client(&Roots::default()),
                Duration::from_secs(60),
            )
            .unwrap()
        });
        assert_eq!(hook.shown, "https://hooks.example.com:8443");
    }
}
