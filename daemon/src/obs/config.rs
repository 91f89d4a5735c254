//! `[metrics]`, `[log]` and `[alerts]`: raw tables as written, then one
//! validation pass that reports every problem through the caller's
//! `problem(span, message)` (the same list as the rest of the config).
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
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// Where the endpoint listens when `[metrics] listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// How often queue depth and lag are sampled by default.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Alerts: the sliding window dead letters are counted in.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Alerts: dead letters of one group within the window that make an alert.
pub const DEFAULT_THRESHOLD: u32 = 1;
/// Alerts: no repeat for a group within this long (unless it grew).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(15 * 60);
/// Alerts: within the cooldown, repeat once the count reached this many
/// times the count last sent.
pub const DEFAULT_GROWTH_FACTOR: f64 = 2.0;
/// Alerts: how long a group that crossed its threshold gathers more events
/// before it is sent (so a burst makes one alert, not one per event).
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(10);
/// Webhooks: the limit of one request.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Webhooks: requests per alert, the first included.
pub const DEFAULT_WEBHOOK_ATTEMPTS: u32 = 5;
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
    /// No repeat for a group within this long, unless it grew.
    #[serde(default, deserialize_with = "opt_duration")]
    pub cooldown: Option<Spanned<Duration>>,
    /// Within the cooldown, repeat once the count is this many times the last one sent.
    pub growth_factor: Option<Spanned<f64>>,
    /// How long a group gathers events before its alert is sent.
    #[serde(default, deserialize_with = "opt_duration")]
    pub group_wait: Option<Spanned<Duration>>,
    /// `[[alerts.webhook]]`: where alerts are POSTed.
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
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
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<Duration>>, D::Error> {
    let raw = Spanned::<String>::deserialize(d)?;
    let span = raw.span();
    let parsed = crate::config::parse_duration(raw.get_ref()).map_err(serde::de::Error::custom)?;
    Ok(Some(Spanned::new(span, parsed)))
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
}

/// How events are grouped into alerts (see [`crate::obs::alerts::Grouper`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupRules {
    /// The sliding window.
    pub window: Duration,
    /// Events within the window that make an alert.
    pub threshold: u32,
    /// No repeat within this long unless the count grew by `growth_factor`.
    pub cooldown: Duration,
    /// See [`GroupRules::cooldown`].
    pub growth_factor: f64,
    /// How long a group gathers events before it is sent.
    pub group_wait: Duration,
}

impl Default for GroupRules {
    fn default() -> Self {
        GroupRules {
            window: DEFAULT_WINDOW,
            threshold: DEFAULT_THRESHOLD,
            cooldown: DEFAULT_COOLDOWN,
            growth_factor: DEFAULT_GROWTH_FACTOR,
            group_wait: DEFAULT_GROUP_WAIT,
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
    fn parse(text: &str) -> Setting {
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
}

/// Validates the three tables; every problem goes to `problem`.
pub fn validate(
    metrics: RawMetrics,
    log: RawLog,
    alerts: RawAlerts,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> ObsConfig {
    let mut out = ObsConfig::default();

    if metrics.enabled == Some(false) {
        out.metrics.listen = None;
    } else if let Some(listen) = metrics.listen {
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => out.metrics.listen = Some(addr),
            Err(_) => problem(
                listen.span(),
                format!(
                    "[metrics] listen `{}` is not an address; write it like \"127.0.0.1:9464\" (or set enabled = false)",
                    listen.get_ref()
                ),
            ),
        }
    }
    if let Some(every) = metrics.sample_interval {
        if *every.get_ref() < Duration::from_millis(100) {
            problem(
                every.span(),
                "[metrics] sample_interval must be at least 100ms".into(),
            );
        } else {
            out.metrics.sample_interval = every.into_inner();
        }
    }

    if let Some(level) = log.level {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level.get_ref()) {
            problem(
                level.span(),
                format!(
                    "[log] level `{}` is not a log filter ({e}); write it like \"info\" or \"warn,ward=debug\"",
                    level.get_ref()
                ),
            );
        } else {
            out.log_level = Some(level.into_inner());
        }
    }

    let rules = &mut out.alerts.rules;
    out.alerts.environment = alerts.environment;
    if let Some(w) = alerts.window {
        if w.get_ref().is_zero() {
            problem(w.span(), "[alerts] window must be more than 0".into());
        } else {
            rules.window = w.into_inner();
        }
    }
    if let Some(t) = alerts.threshold {
        if *t.get_ref() == 0 {
            problem(
                t.span(),
                "[alerts] threshold must be at least 1 (alert once that many events fall in the window)"
                    .into(),
            );
        } else {
            rules.threshold = t.into_inner();
        }
    }
    if let Some(c) = alerts.cooldown {
        rules.cooldown = c.into_inner();
    }
    if let Some(g) = alerts.growth_factor {
        let v = *g.get_ref();
        if !v.is_finite() || v < 1.0 {
            problem(
                g.span(),
                format!(
                    "[alerts] growth_factor {v} must be 1.0 or more (2.0: repeat within the cooldown once the count doubled)"
                ),
            );
        } else {
            rules.growth_factor = v;
        }
    }
    if let Some(g) = alerts.group_wait {
        rules.group_wait = g.into_inner();
    }
    for hook in alerts.webhook {
        out.alerts.webhooks.push(validate_webhook(hook, problem));
    }
    out
}

fn validate_webhook(
    hook: RawWebhook,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> WebhookConfig {
    let url = Setting::parse(hook.url.get_ref());
    match &url {
        Setting::Literal(u) => {
            if let Some(why) = check_url(u) {
                problem(
                    hook.url.span(),
                    format!("[[alerts.webhook]] url `{u}` {why}"),
                );
            }
        }
        Setting::Secret(name) => check_secret_name(name, hook.url.span(), problem),
    }
    let mut headers = Vec::new();
    for (name, value) in hook.headers {
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problem(
                value.span(),
                format!("[[alerts.webhook]] header name `{name}` is not a valid HTTP header name"),
            );
        }
        let setting = Setting::parse(value.get_ref());
        match &setting {
            Setting::Literal(v) => {
                if hyper::header::HeaderValue::from_str(v).is_err() {
                    problem(
                        value.span(),
                        format!(
                            "[[alerts.webhook]] header `{name}` has a value that is not valid in HTTP (control characters?)"
                        ),
                    );
                }
            }
            Setting::Secret(secret) => check_secret_name(secret, value.span(), problem),
        }
        headers.push((name, setting));
    }
    let timeout = match hook.timeout {
        Some(t) if t.get_ref().is_zero() => {
            problem(
                t.span(),
                "[[alerts.webhook]] timeout must be more than 0".into(),
            );
            DEFAULT_WEBHOOK_TIMEOUT
        }
        Some(t) => t.into_inner(),
        None => DEFAULT_WEBHOOK_TIMEOUT,
    };
    let max_attempts = match hook.max_attempts {
        Some(n) if !(1..=20).contains(n.get_ref()) => {
            problem(
                n.span(),
                format!(
                    "[[alerts.webhook]] max_attempts {} is out of range; use 1 to 20",
                    n.get_ref()
                ),
            );
            DEFAULT_WEBHOOK_ATTEMPTS
        }
        Some(n) => n.into_inner(),
        None => DEFAULT_WEBHOOK_ATTEMPTS,
    };
    WebhookConfig {
        url,
        headers,
        timeout,
        max_attempts,
    }
}

/// What is wrong with a webhook URL, if anything.
#[must_use]
pub fn check_url(url: &str) -> Option<&'static str> {
    match url.parse::<hyper::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => None,
        Ok(_) => Some("must be an http:// or https:// URL with a host"),
        Err(_) => Some("is not a URL; write it like \"https://hooks.example.com/ward\""),
    }
}

fn check_secret_name(
    name: &str,
    span: Range<usize>,
    problem: &mut dyn FnMut(Range<usize>, String),
) {
    if !crate::obs::secrets::valid_name(name) {
        problem(
            span,
            format!(
                "secret name `{name}` must be letters, digits and `_` (it names an environment variable and a credential file)"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (ObsConfig, Vec<String>) {
        #[derive(Deserialize)]
        struct Tables {
            #[serde(default)]
            metrics: RawMetrics,
            #[serde(default)]
            log: RawLog,
            #[serde(default)]
            alerts: RawAlerts,
        }
        let t: Tables = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(t.metrics, t.log, t.alerts, &mut |_, m| problems.push(m));
        (cfg, problems)
    }

    #[test]
    fn defaults_listen_on_loopback_9464_with_one_event_alerts() {
        let (cfg, problems) = check("");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(cfg.alerts.rules, GroupRules::default());
        assert!(cfg.alerts.webhooks.is_empty());
    }

    #[test]
    fn the_endpoint_can_be_turned_off() {
        let (cfg, _) = check("[metrics]\nenabled = false\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!(cfg.metrics.listen, None);
    }

    #[test]
    fn webhooks_read_secret_headers_by_name() {
        let (cfg, problems) = check(
            "[alerts]\nenvironment = \"prod\"\nthreshold = 5\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:9/x\"\nheaders = { Authorization = \"secret:ALERT_TOKEN\", X-Team = \"jobs\" }\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let hook = &cfg.alerts.webhooks[0];
        assert_eq!(hook.url, Setting::Literal("http://127.0.0.1:9/x".into()));
        assert_eq!(
            hook.headers,
            vec![
                (
                    "Authorization".into(),
                    Setting::Secret("ALERT_TOKEN".into())
                ),
                ("X-Team".into(), Setting::Literal("jobs".into())),
            ]
        );
        assert_eq!(cfg.alerts.rules.threshold, 5);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let (_, problems) = check(
            "[metrics]\nlisten = \"localhost\"\n[log]\nlevel = \"loud[\"\n[alerts]\nthreshold = 0\ngrowth_factor = 0.5\n[[alerts.webhook]]\nurl = \"ftp://x\"\nheaders = { Authorization = \"secret:not a name\" }\nmax_attempts = 0\n",
        );
        assert_eq!(problems.len(), 7, "{problems:#?}");
    }
}
