//! `[metrics]`, `[log]`, `[alerts]` and `[tracing]`, checked.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::checked;
use crate::config::defaults::{
    DEFAULT_WEBHOOK_ATTEMPTS, DEFAULT_WEBHOOK_TIMEOUT, MAX_WEBHOOK_ATTEMPTS, MIN_SAMPLE_INTERVAL,
};
use crate::config::observability::{
    AlertsConfig, BatchFailureRule, DEFAULT_BATCH_FAILURE_MIN, DEFAULT_SERVICE_NAME, MetricsConfig,
    ObsConfig, RawAlerts, RawLog, RawMetrics, RawTracing, RawWebhook, Setting, TracingConfig,
    WebhookConfig, WebhookFormat,
};

/// `[tracing]`: `None` (traces off) without an `otlp_endpoint`.
pub fn tracing(
    raw: RawTracing,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<TracingConfig> {
    let endpoint = raw.otlp_endpoint?;
    let url = endpoint.get_ref().trim().trim_end_matches('/');
    let parsed = url.parse::<http::Uri>().ok().filter(|u| u.host().is_some());
    let ok = parsed
        .as_ref()
        .is_some_and(|u| u.scheme_str() == Some("http") && u.query().is_none());
    if !ok {
        problem(
            endpoint.span(),
            format!(
                "[tracing] otlp_endpoint `{url}` is not an http:// URL of an OTLP/HTTP collector; write it like \"http://127.0.0.1:4318\" (spans go to its /v1/traces; for TLS, run a local collector that forwards them)"
            ),
        );
        return None;
    }
    let service_name = raw.service_name.map_or_else(
        || DEFAULT_SERVICE_NAME.to_string(),
        |n| {
            if n.get_ref().trim().is_empty() {
                problem(
                    n.span(),
                    "[tracing] service_name must not be empty (default \"ward\")".to_string(),
                );
            }
            n.into_inner()
        },
    );
    let traces_url = if url.ends_with("/v1/traces") {
        url.to_string()
    } else {
        format!("{url}/v1/traces")
    };
    Some(TracingConfig {
        traces_url,
        service_name,
    })
}

/// Validates the three tables; every problem goes to `problem`.
pub fn validate(
    metrics: RawMetrics,
    log: RawLog,
    alerts: RawAlerts,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> ObsConfig {
    let mut out = ObsConfig::default();
    validate_metrics(metrics, &mut out.metrics, problem);
    out.log_level = log_level(log, problem);
    validate_alerts(alerts, &mut out.alerts, base, problem);
    out
}

/// `[metrics]`, over the defaults in `out`.
fn validate_metrics(
    metrics: RawMetrics,
    out: &mut MetricsConfig,
    problem: &mut dyn FnMut(Range<usize>, String),
) {
    if metrics.enabled == Some(false) {
        out.listen = None;
    } else if let Some(listen) = metrics.listen {
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => out.listen = Some(addr),
            Err(_) => problem(
                listen.span(),
                format!(
                    "[metrics] listen `{}` is not an address; write it like \"127.0.0.1:9464\" (or set enabled = false)",
                    listen.get_ref()
                ),
            ),
        }
    }
    out.sample_interval = checked(
        metrics.sample_interval,
        out.sample_interval,
        problem,
        |every| {
            (*every < MIN_SAMPLE_INTERVAL)
                .then(|| "[metrics] sample_interval must be at least 100ms".to_string())
        },
    );
}

/// `[log] level`, if it is a filter `tracing` can parse.
fn log_level(log: RawLog, problem: &mut dyn FnMut(Range<usize>, String)) -> Option<String> {
    let level = log.level?;
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level.get_ref()) {
        problem(
            level.span(),
            format!(
                "[log] level `{}` is not a log filter ({e}); write it like \"info\" or \"warn,ward=debug\"",
                level.get_ref()
            ),
        );
        return None;
    }
    Some(level.into_inner())
}

/// `[alerts]` with its webhooks, over the defaults in `out`.
fn validate_alerts(
    alerts: RawAlerts,
    out: &mut AlertsConfig,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) {
    let rules = &mut out.rules;
    out.environment = alerts.environment;
    rules.window = checked(alerts.window, rules.window, problem, |w| {
        w.is_zero()
            .then(|| "[alerts] window must be more than 0".to_string())
    });
    rules.threshold = checked(alerts.threshold, rules.threshold, problem, |t| {
        (*t == 0).then(|| {
            "[alerts] threshold must be at least 1 (alert once that many events fall in the window)"
                .to_string()
        })
    });
    rules.retry_threshold = checked(
        alerts.retry_threshold,
        rules.retry_threshold,
        problem,
        |t| {
            (*t == 0).then(|| {
                "[alerts] retry_threshold must be at least 1 (alert once that many retries of one job type fall in the window)"
                    .to_string()
            })
        },
    );
    if let Some(c) = alerts.cooldown {
        rules.cooldown = c.into_inner();
    }
    rules.growth_factor = checked(alerts.growth_factor, rules.growth_factor, problem, |v| {
        (!v.is_finite() || *v < 1.0).then(|| {
            format!(
                "[alerts] growth_factor {v} must be 1.0 or more (2.0: repeat within the cooldown once the count doubled)"
            )
        })
    });
    if let Some(g) = alerts.group_wait {
        rules.group_wait = g.into_inner();
    }
    out.batch_failures = batch_failures(
        alerts.batch_failure_ratio,
        alerts.batch_failure_min,
        problem,
    );
    for hook in alerts.webhook {
        out.webhooks
            .push(validate_webhook(hook, "[[alerts.webhook]]", base, problem));
    }
    let first_escalation = alerts.escalation.first().map(|h| h.url.span());
    for hook in alerts.escalation {
        out.escalation.push(validate_webhook(
            hook,
            "[[alerts.escalation]]",
            base,
            problem,
        ));
    }
    match (alerts.escalate_after, first_escalation) {
        (Some(after), None) => problem(
            after.span(),
            "[alerts] escalate_after needs an [[alerts.escalation]] to escalate to".to_string(),
        ),
        (None, Some(span)) => problem(
            span,
            "[[alerts.escalation]] is used only with [alerts] escalate_after (how long an alert may stay unresolved)".to_string(),
        ),
        (Some(after), Some(_)) if after.get_ref().is_zero() => problem(
            after.span(),
            "[alerts] escalate_after must be more than 0".to_string(),
        ),
        (Some(after), Some(_)) => out.rules.escalate_after = Some(after.into_inner()),
        (None, None) => {}
    }
}

/// `[alerts] batch_failure_ratio` and `batch_failure_min`: the rule, when
/// a ratio is set.
fn batch_failures(
    ratio: Option<Spanned<f64>>,
    min: Option<Spanned<u64>>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<BatchFailureRule> {
    match (ratio, min) {
        (Some(ratio), min) => {
            let r = *ratio.get_ref();
            if !r.is_finite() || r <= 0.0 || r > 1.0 {
                problem(
                    ratio.span(),
                    format!(
                        "[alerts] batch_failure_ratio {r} must be more than 0 and at most 1 (0.05: alert once 5% of a batch's ended members are dead)"
                    ),
                );
            }
            let min_ended = match min {
                Some(m) if *m.get_ref() == 0 => {
                    problem(
                        m.span(),
                        "[alerts] batch_failure_min must be at least 1".to_string(),
                    );
                    1
                }
                Some(m) => m.into_inner(),
                None => DEFAULT_BATCH_FAILURE_MIN,
            };
            Some(BatchFailureRule {
                ratio: r,
                min_ended,
            })
        }
        (None, Some(m)) => {
            problem(
                m.span(),
                "[alerts] batch_failure_min has no effect without batch_failure_ratio; set both"
                    .to_string(),
            );
            None
        }
        (None, None) => None,
    }
}

fn validate_webhook(
    hook: RawWebhook,
    table: &str,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> WebhookConfig {
    let url = Setting::parse(hook.url.get_ref());
    match &url {
        Setting::Literal(u) => {
            if let Some(why) = check_url(u) {
                problem(hook.url.span(), format!("{table} url `{u}` {why}"));
            }
        }
        Setting::Secret(name) => check_secret_name(name, hook.url.span(), problem),
    }
    let mut headers = Vec::new();
    for (name, value) in hook.headers {
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problem(
                value.span(),
                format!("{table} header name `{name}` is not a valid HTTP header name"),
            );
        }
        let setting = Setting::parse(value.get_ref());
        match &setting {
            Setting::Literal(v) => {
                if hyper::header::HeaderValue::from_str(v).is_err() {
                    problem(
                        value.span(),
                        format!(
                            "{table} header `{name}` has a value that is not valid in HTTP (control characters?)"
                        ),
                    );
                }
            }
            Setting::Secret(secret) => check_secret_name(secret, value.span(), problem),
        }
        headers.push((name, setting));
    }
    let timeout = checked(hook.timeout, DEFAULT_WEBHOOK_TIMEOUT, problem, |t| {
        t.is_zero()
            .then(|| format!("{table} timeout must be more than 0"))
    });
    let max_attempts = checked(hook.max_attempts, DEFAULT_WEBHOOK_ATTEMPTS, problem, |n| {
        (!(1..=MAX_WEBHOOK_ATTEMPTS).contains(n)).then(|| {
            format!("{table} max_attempts {n} is out of range; use 1 to {MAX_WEBHOOK_ATTEMPTS}")
        })
    });
    let format = match &hook.format {
        None => WebhookFormat::default(),
        Some(f) => WebhookFormat::parse(f.get_ref()).unwrap_or_else(|| {
            problem(
                f.span(),
                format!(
                    "{table} format `{}` is not one of {}",
                    f.get_ref(),
                    WebhookFormat::NAMES.join(", ")
                ),
            );
            WebhookFormat::default()
        }),
    };
    let mut extra_roots = crate::config::Roots::default();
    if let Some(f) = &hook.ca_file {
        let file = base.join(f.get_ref());
        match super::certs::ca_roots(&file) {
            Ok(roots) => extra_roots = crate::config::Roots(roots),
            Err(e) => problem(f.span(), format!("{table} ca_file {}: {e}", file.display())),
        }
        if matches!(&url, Setting::Literal(u) if u.starts_with("http://")) {
            problem(
                f.span(),
                format!(
                    "{table} ca_file is only used with an https:// url; write the url as https://... for TLS, or remove ca_file"
                ),
            );
        }
    }
    WebhookConfig {
        url,
        headers,
        timeout,
        max_attempts,
        format,
        extra_roots,
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
    if !crate::secret::valid_name(name) {
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
    use crate::config::observability::GroupRules;
    use serde::Deserialize;

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
        let cfg = validate(t.metrics, t.log, t.alerts, Path::new("."), &mut |_, m| {
            problems.push(m)
        });
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
    fn a_webhooks_ca_file_must_hold_certificates_and_goes_with_https() {
        let (cfg, problems) = check(
            "[[alerts.webhook]]\nurl = \"https://127.0.0.1:9/x\"\nca_file = \"no-such-ca.pem\"\n",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("[[alerts.webhook]] ca_file ./no-such-ca.pem: cannot read it"),
            "{problems:?}"
        );
        assert!(cfg.alerts.webhooks[0].extra_roots.0.is_empty());
        let (_, problems) = check(
            "[[alerts.escalation]]\nurl = \"http://127.0.0.1:9/x\"\nca_file = \"Cargo.toml\"\n[alerts]\nescalate_after = \"1h\"\n",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("ca_file ./Cargo.toml: holds no PEM certificate"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("ca_file is only used with an https:// url"),
            "{problems:?}"
        );
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
    fn a_batch_failure_rule_needs_a_ratio_within_0_and_1() {
        let (obs, problems) = check("[alerts]\nbatch_failure_ratio = 0.05\n");
        assert!(problems.is_empty(), "{problems:?}");
        let rule = obs.alerts.batch_failures.unwrap();
        assert_eq!(
            (rule.ratio, rule.min_ended),
            (0.05, DEFAULT_BATCH_FAILURE_MIN)
        );
        let (_, problems) = check("[alerts]\nbatch_failure_ratio = 1.5\nbatch_failure_min = 0\n");
        assert_eq!(problems.len(), 2, "{problems:#?}");
        let (_, problems) = check("[alerts]\nbatch_failure_min = 5\n");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("without batch_failure_ratio"));
    }

    #[test]
    fn every_bad_value_is_reported() {
        let (_, problems) = check(
            "[metrics]\nlisten = \"localhost\"\n[log]\nlevel = \"loud[\"\n[alerts]\nthreshold = 0\ngrowth_factor = 0.5\n[[alerts.webhook]]\nurl = \"ftp://x\"\nheaders = { Authorization = \"secret:not a name\" }\nmax_attempts = 0\n",
        );
        assert_eq!(problems.len(), 7, "{problems:#?}");
    }
}
