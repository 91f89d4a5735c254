//! `[metrics]` and `[log]`: raw tables as written, then one
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
//! ```

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// Where the endpoint listens when `[metrics] listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// How often queue depth and lag are sampled by default.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
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
}

impl Default for ObsConfig {
    fn default() -> Self {
        ObsConfig {
            metrics: MetricsConfig {
                listen: DEFAULT_LISTEN.parse().ok(),
                sample_interval: DEFAULT_SAMPLE_INTERVAL,
            },
            log_level: None,
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

/// Validates the two tables; every problem goes to `problem`.
pub fn validate(
    metrics: RawMetrics,
    log: RawLog,
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

    out
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
        }
        let t: Tables = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(t.metrics, t.log, &mut |_, m| problems.push(m));
        (cfg, problems)
    }

    #[test]
    fn defaults_listen_on_loopback_9464() {
        let (cfg, problems) = check("");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn the_endpoint_can_be_turned_off() {
        let (cfg, _) = check("[metrics]\nenabled = false\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!(cfg.metrics.listen, None);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let (_, problems) = check(
            "[metrics]\nlisten = \"localhost\"\nsample_interval = \"1ms\"\n[log]\nlevel = \"loud[\"\n",
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }
}
