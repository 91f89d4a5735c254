//! The daemon's TOML configuration: raw serde structs, then one validation
//! pass that reports *every* problem at once, with the file and line of each.
//!
//! Loading goes in two steps, as in Vector: [`RawConfig`] mirrors the file
//! (`deny_unknown_fields` everywhere, so a typo is an error rather than a
//! silently ignored key), and [`Config::load`] turns it into a validated
//! [`Config`] whose values are ready to use (durations parsed, plugin paths
//! resolved against the config file's folder, queue references checked).
//!
//! # Layout
//!
//! - `raw.rs`: the file as written (serde structs).
//! - `units.rs`: durations and sizes, and their parsing.
//! - [`defaults`]: every default and limit, in one place.
//! - `types.rs`: the validated types ([`Config`], [`QueueConfig`], [`JobConfig`], ...).
//! - `http.rs`: a job type's outbound HTTP policy ([`HttpPolicy`]).
//! - [`observability`]: `[metrics]`, `[log]`, `[alerts]` (also `crate::obs::config`).
//! - [`admin`]: `[admin]` and `[[admin.token]]` (the admin HTTP API).
//! - `validate/`: one file per section (redis, queues, jobs, retry,
//!   breakers, schedules, observability, daemon, admin), each reporting its
//!   problems.
//!
//! The config imports no module it configures (Redis access, the queue, the
//! runtime): they import it.

pub mod address;
pub mod admin;
pub mod defaults;
mod http;
pub mod observability;
mod raw;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_outputs;
#[cfg(test)]
mod tests_upstreams;
mod types;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use defaults::{
    DEFAULT_CONCURRENCY, DEFAULT_DEAD_TRIM_INTERVAL, DEFAULT_IDEMPOTENCY_TTL, DEFAULT_LEASE,
    DEFAULT_REDIS_URL, DEFAULT_TIMEOUT, MAX_CONCURRENCY, MAX_THREADS, MIN_LEASE,
};
pub use http::{HttpPolicy, Roots};
pub use raw::{
    RawBreaker, RawConfig, RawDaemon, RawDefaults, RawHttp, RawJob, RawQueue, RawRedis, RawRetry,
    RawSchedule,
};
pub use types::{
    BreakerPolicy, Config, DeadLetterConfig, JobConfig, QueueConfig, RateLimit, ScheduleConfig,
    SlotPages, UpstreamConfig,
};
pub use units::{parse_duration, parse_size};
pub use validate::{check_name, check_plugin_file, check_retry};

/// Everything that can be wrong with a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not have the expected shape.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the TOML parser or serde said.
        message: String,
    },
    /// The file parsed, but its values do not make sense together.
    #[error("{path}: {} problem(s):\n{}", .problems.len(), ProblemList(.problems))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

/// One validation problem, located at a line of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the config file (0 when the problem has no location).
    pub line: usize,
    /// What is wrong and what would be right.
    pub message: String,
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line > 0 {
                write!(f, "  line {}: {}", p.line, p.message)?;
            } else {
                write!(f, "  {}", p.message)?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the line of each problem.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses and validates config text as if it had been read from `path`.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for TOML or shape errors, [`ConfigError::Invalid`]
    /// listing every validation problem.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate::validate(raw, path, base, text)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}
