//! `[metrics]`, `[log]`, `[alerts]` and `[tracing]`: the raw tables as written and the
//! validated settings. Validation is in `validate/observability.rs` and
//! reports every problem through the caller's `problem(span, message)` (the
//! same list as the rest of the config). Reachable as `crate::obs::config`.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9464"   # /metrics, /healthz, /readyz; port 0 = any free port
//! # enabled = false           # no endpoint at all
//! sample_interval = "5s"      # how often queue depth and lag are sampled
//!
//! [log]
//! level = "info"              # an EnvFilter directive; RUST_LOG wins when set
//!
//! [tracing]
//! otlp_endpoint = "http://127.0.0.1:4318"   # OTLP/HTTP; off when absent
//!
//! [alerts]
//! environment = "prod"
//! window = "5m"
//! threshold = 1
//! cooldown = "15m"
//! growth_factor = 2.0
//! group_wait = "10s"
//!
//! [[alerts.webhook]]
//! url = "https://hooks.example.com/ward"
//! headers = { Authorization = "secret:ALERT_TOKEN" }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use super::defaults::{
    DEFAULT_COOLDOWN, DEFAULT_GROUP_WAIT, DEFAULT_GROWTH_FACTOR, DEFAULT_LISTEN,
    DEFAULT_RETRY_THRESHOLD, DEFAULT_SAMPLE_INTERVAL, DEFAULT_THRESHOLD, DEFAULT_WEBHOOK_ATTEMPTS,
    DEFAULT_WEBHOOK_TIMEOUT, DEFAULT_WINDOW,
};
use super::units::opt_duration;
pub use super::validate::observability::{check_url, validate};

/// A header or URL value of this form is read from a secret.
pub const SECRET_PREFIX: &str = "secret:";

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `false` turns the endpoint off (no /metrics, /healthz, /readyz).
    pub enabled: Option<bool>,
    /// `host:port` of the endpoint; port 0 picks a free port (logged).
    pub listen: Option<Spanned<String>>,
    /// How often each queue's depth and lag are sampled.
    #[serde(default, deserialize_with = "opt_duration")]
    pub sample_interval: Option<Spanned<Duration>>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Log filter, e.g. `"info"` or `"warn,ward=debug"`; `RUST_LOG` wins.
    pub level: Option<Spanned<String>>,
}

/// `[tracing]`: OpenTelemetry traces, off unless an endpoint is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The OTLP/HTTP collector's base URL, e.g. `"http://127.0.0.1:4318"`
    /// (spans go to `<url>/v1/traces`, protobuf).
    pub otlp_endpoint: Option<Spanned<String>>,
    /// The `service.name` of Ward's spans (default `ward`).
    pub service_name: Option<Spanned<String>>,
}

/// `[tracing]`, validated: where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// The collector's traces URL (`.../v1/traces`).
    pub traces_url: String,
    /// `service.name`.
    pub service_name: String,
}

/// `[tracing] service_name` when not given.
pub const DEFAULT_SERVICE_NAME: &str = "ward";

/// `[alerts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Named in every alert, e.g. `"prod"`.
    pub environment: Option<String>,
    /// The sliding window events are counted in.
    #[serde(default, deserialize_with = "opt_duration")]
    pub window: Option<Spanned<Duration>>,
    /// Events of one group within the window that make an alert.
    pub threshold: Option<Spanned<u32>>,
    /// Retries of one job type within the window that make a retry-spike alert.
    pub retry_threshold: Option<Spanned<u32>>,
    /// No repeat for a group within this long, unless it grew.
    #[serde(default, deserialize_with = "opt_duration")]
    pub cooldown: Option<Spanned<Duration>>,
    /// Within the cooldown, repeat once the count is this many times the last one sent.
    pub growth_factor: Option<Spanned<f64>>,
    /// How long a group gathers events before its alert is sent.
    #[serde(default, deserialize_with = "opt_duration")]
    pub group_wait: Option<Spanned<Duration>>,
    /// Alert when this share of a batch's ended members is dead (0 to 1).
    pub batch_failure_ratio: Option<Spanned<f64>>,
    /// Members that must have ended before a batch's ratio is judged.
    pub batch_failure_min: Option<Spanned<u64>>,
    /// `[[alerts.webhook]]`: where alerts are POSTed.
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
    /// An alert unresolved this long after it was first sent is escalated.
    #[serde(default, deserialize_with = "opt_duration")]
    pub escalate_after: Option<Spanned<Duration>>,
    /// `[[alerts.escalation]]`: where escalated alerts are POSTed.
    #[serde(default)]
    pub escalation: Vec<RawWebhook>,
}

/// `[[alerts.webhook]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `http://` or `https://` URL, or `secret:NAME`.
    pub url: Spanned<String>,
    /// Extra request headers; a value `secret:NAME` is read from a secret.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// The limit of one request.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Spanned<Duration>>,
    /// Requests per alert, the first included (exponential backoff between).
    pub max_attempts: Option<Spanned<u32>>,
    /// The body's shape: `ward` (default), `slack`, `alertmanager`.
    pub format: Option<Spanned<String>>,
    /// A PEM file of CA certificates an `https://` receiver may chain to,
    /// besides the system's (relative to the config file's folder).
    pub ca_file: Option<Spanned<String>>,
}

/// The validated observability settings.
#[derive(Debug, Clone)]
pub struct ObsConfig {
    /// `[metrics]`
    pub metrics: MetricsConfig,
    /// `[log] level`, if the file sets one.
    pub log_level: Option<String>,
    /// `[alerts]`
    pub alerts: AlertsConfig,
    /// `[tracing]`: `None` when traces are off.
    pub tracing: Option<TracingConfig>,
}

impl Default for ObsConfig {
    fn default() -> Self {
        ObsConfig {
            metrics: MetricsConfig {
                listen: DEFAULT_LISTEN.parse().ok(),
                sample_interval: DEFAULT_SAMPLE_INTERVAL,
            },
            log_level: None,
            alerts: AlertsConfig::default(),
            tracing: None,
        }
    }
}

/// `[metrics]`, validated.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where the endpoint listens; `None` when it is turned off.
    pub listen: Option<SocketAddr>,
    /// How often queue depth and lag are sampled.
    pub sample_interval: Duration,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    /// Named in every alert.
    pub environment: Option<String>,
    /// Grouping rules.
    pub rules: GroupRules,
    /// Where alerts go; none means alerts are only counted and logged.
    pub webhooks: Vec<WebhookConfig>,
    /// `[[alerts.escalation]]`: the second route.
    pub escalation: Vec<WebhookConfig>,
    /// When a batch's failures make an alert; `None`: never.
    pub batch_failures: Option<BatchFailureRule>,
}

/// `[alerts] batch_failure_ratio` and `batch_failure_min`: a dead batch
/// member raises a `batch_failures` alert event when, in its batch's
/// ledger, at least `min_ended` members have ended and at least `ratio` of
/// them are dead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchFailureRule {
    /// The share of ended members that are dead, from 0 (excluded) to 1.
    pub ratio: f64,
    /// Ended members needed before the ratio counts.
    pub min_ended: u64,
}

/// `[alerts] batch_failure_min` when not given.
pub const DEFAULT_BATCH_FAILURE_MIN: u64 = 20;

/// How events are grouped into alerts (see [`crate::obs::alerts::Grouper`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupRules {
    /// The sliding window.
    pub window: Duration,
    /// Events within the window that make an alert.
    pub threshold: u32,
    /// Retries within the window that make a retry-spike alert.
    pub retry_threshold: u32,
    /// No repeat within this long unless the count grew by `growth_factor`.
    pub cooldown: Duration,
    /// See [`GroupRules::cooldown`].
    pub growth_factor: f64,
    /// How long a group gathers events before it is sent.
    pub group_wait: Duration,
    /// An alert still unresolved this long after its first sending goes to
    /// the escalation route once (`None`: no escalation).
    pub escalate_after: Option<Duration>,
}

impl Default for GroupRules {
    fn default() -> Self {
        GroupRules {
            window: DEFAULT_WINDOW,
            threshold: DEFAULT_THRESHOLD,
            retry_threshold: DEFAULT_RETRY_THRESHOLD,
            cooldown: DEFAULT_COOLDOWN,
            growth_factor: DEFAULT_GROWTH_FACTOR,
            group_wait: DEFAULT_GROUP_WAIT,
            escalate_after: None,
        }
    }
}

/// A config value that is either written out or read from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// The value as written.
    Literal(String),
    /// `secret:NAME`: from the environment variable `NAME`, else the file
    /// `$CREDENTIALS_DIRECTORY/NAME` (see [`crate::obs::secrets::resolve`]).
    Secret(String),
}

impl Setting {
    /// A value as written: `secret:NAME` names a secret, anything else is literal.
    pub(super) fn parse(text: &str) -> Setting {
        match text.strip_prefix(SECRET_PREFIX) {
            Some(name) => Setting::Secret(name.trim().to_string()),
            None => Setting::Literal(text.to_string()),
        }
    }
}

/// One `[[alerts.webhook]]`, validated (secrets not resolved yet: that
/// happens when the daemon starts, so tools reading the config don't need them).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The URL.
    pub url: Setting,
    /// Extra headers, name and value.
    pub headers: Vec<(String, Setting)>,
    /// The limit of one request.
    pub timeout: Duration,
    /// Requests per alert, the first included.
    pub max_attempts: u32,
    /// The body's shape.
    pub format: WebhookFormat,
    /// CA certificates (DER) trusted besides the system's, from `ca_file`.
    pub extra_roots: crate::config::Roots,
}

/// The shape of an alert's body, for the receiver at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// Ward's own JSON object (every field of the alert).
    #[default]
    Ward,
    /// `{"text": "..."}`, as Slack's incoming webhooks (and Mattermost,
    /// Rocket.Chat, Teams' Slack-compatible ones) take it.
    Slack,
    /// Alertmanager's v2 API (`POST /api/v2/alerts`): a list of one alert
    /// with labels and annotations, so its routing and silences apply.
    Alertmanager,
}

impl WebhookFormat {
    /// The names `format` takes.
    pub const NAMES: &[&str] = &["ward", "slack", "alertmanager"];

    /// The format named `name`, if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<WebhookFormat> {
        match name {
            "ward" => Some(WebhookFormat::Ward),
            "slack" => Some(WebhookFormat::Slack),
            "alertmanager" => Some(WebhookFormat::Alertmanager),
            _ => None,
        }
    }
}
