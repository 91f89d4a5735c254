//! `[log]`: the raw table as written, then validation that reports problems
//! through the caller's `problem(span, message)` (the same list as the rest
//! of the config).
//!
//! ```toml
//! [log]
//! level = "info"              # an EnvFilter directive; RUST_LOG wins when set
//! ```

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Log filter, e.g. `"info"` or `"warn,ward=debug"`; `RUST_LOG` wins.
    pub level: Option<Spanned<String>>,
}

/// The validated observability settings.
#[derive(Debug, Clone, Default)]
pub struct ObsConfig {
    /// `[log] level`, if the file sets one.
    pub log_level: Option<String>,
}

/// Validates the table; every problem goes to `problem`.
pub fn validate(log: RawLog, problem: &mut dyn FnMut(Range<usize>, String)) -> ObsConfig {
    let mut out = ObsConfig::default();
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
            log: RawLog,
        }
        let t: Tables = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let cfg = validate(t.log, &mut |_, m| problems.push(m));
        (cfg, problems)
    }

    #[test]
    fn a_log_level_is_a_filter() {
        let (cfg, problems) = check("[log]\nlevel = \"warn,ward=debug\"\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cfg.log_level.as_deref(), Some("warn,ward=debug"));
        let (_, problems) = check("[log]\nlevel = \"loud[\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
