//! Every default and limit of the configuration, in one place: what a key
//! means when the file leaves it out, and the bounds validation enforces.
//!
//! The runtime and the queue read some of these too (the runtime re-exports
//! its sandbox defaults from here), so that the config never has to import
//! the modules it configures.

use std::time::Duration;

/// Redis URL used when neither the config nor `--redis` gives one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Parallel attempts per queue when `[[queue]] concurrency` is not given.
pub const DEFAULT_CONCURRENCY: u32 = 16;
/// Wall-clock limit of one attempt when `[[job]] timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Visibility timeout of a delivery when `[[queue]] lease` is not given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease allowed: heartbeats must fit several times into it.
pub const MIN_LEASE: Duration = Duration::from_millis(300);
/// How long an idempotency key is remembered when `[[job]] idempotency_ttl` is not given.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest duration any key may set (3650 days): Redis takes expiries
/// and idle times as i64 milliseconds added to the current time, tokio adds
/// timeouts and sleeps to an `Instant`; far below both limits, far above any
/// sensible setting.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The largest `dead_payload_max`: Redis refuses strings over 512 MB.
pub const MAX_DEAD_PAYLOAD_MAX: usize = 512 << 20;
/// Upper bound on `concurrency`; each slot reserves a pooled wasm
/// instance (address space, a few memory mappings; see
/// docs/configuration.md for what bounds a daemon's slots).
pub const MAX_CONCURRENCY: u32 = 100_000;
/// Most threads `[daemon] threads` may ask for.
pub const MAX_THREADS: i64 = 1024;
/// How often the daemon applies a queue's dead-letter retention when
/// `[[queue]] dead_trim_interval` is not given.
pub const DEFAULT_DEAD_TRIM_INTERVAL: Duration = Duration::from_secs(30);
/// `[[queue]] stall_after` when not given: ready jobs that waited this long
/// while no daemon recorded any outcome of the queue raise a `stalled` alert.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(10 * 60);
/// Largest payload a job may carry when `[[queue]] max_payload` is not given.
pub const DEFAULT_MAX_PAYLOAD: usize = 8 << 20;
/// Largest `max_payload` (Redis' largest string).
pub const MAX_MAX_PAYLOAD: usize = 512 << 20;
/// How long the record of a succeeded job is kept when `[[queue]]
/// succeeded_ttl` is not given. Short, because the records held are this
/// times the throughput (~330 bytes each): 15 min at 1,000 jobs/s is
/// ~300 MB, where the former 24 h was ~28 GB and ended in Redis OOM. Records
/// of dead and discarded jobs are kept much longer (see `RETIRED_TTL`).
pub const SUCCEEDED_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a finished batch's ledger is kept when `[[queue]]
/// batch_retention` is not given: long enough to look back at last week's
/// imports, short enough that ledgers do not pile up for good.
pub const DEFAULT_BATCH_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest result kept in a job's record when `[[job]] result_max_bytes` is
/// not given: a record is read whole by `ward job show` and the API.
pub use crate::transition::DEFAULT_RESULT_MAX_BYTES;
/// The largest `result_max_bytes`: a record this big already slows every
/// read of it; bigger outputs belong in the plugin's own storage.
pub const MAX_RESULT_MAX_BYTES: usize = 16 << 20;
/// Largest payload copied into a dead-letter entry when neither the queue
/// nor `[defaults]` sets `dead_payload_max`.
pub use crate::redact::DEFAULT_DEAD_PAYLOAD_MAX;

/// Linear memory a single instance may grow to (all memories together).
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;
/// Captured stdout/stderr kept per attempt when the job type does not say.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 << 10;
/// Host-side limit of one outbound HTTP request when the job type does not say.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest `memory_limit` a job type may set: less cannot hold a component.
pub const MIN_MEMORY_LIMIT: usize = 1 << 20;
/// Largest `memory_limit` a job type may set.
pub const MAX_MEMORY_LIMIT: usize = 4 << 30;
/// Largest `output_limit` a job type may set.
pub const MAX_OUTPUT_LIMIT: usize = 16 << 20;
/// Most attempts one instance may serve with `reuse_instance`: past a
/// million, the instance's start is amortised to nothing anyway.
pub const MAX_REUSE_INSTANCE: u32 = 1_000_000;

/// Breakers: failures within the window that open one.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Breakers: the window failures are counted in.
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(60);
/// Breakers: how long an open breaker holds jobs back.
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(30);
/// Breakers: the shortest `window` and `open_for` allowed.
pub const MIN_BREAKER_PERIOD: Duration = Duration::from_millis(100);

/// Where the endpoint listens when `[metrics] listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// How often queue depth and lag are sampled by default.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest `[metrics] sample_interval` allowed.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Alerts: the sliding window dead letters are counted in.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Alerts: dead letters of one group within the window that make an alert.
pub const DEFAULT_THRESHOLD: u32 = 1;
/// Alerts: retries of one job type within the window that make a
/// retry-spike alert (retries are routine; a burst of them is not).
pub const DEFAULT_RETRY_THRESHOLD: u32 = 50;
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
/// Webhooks: the most requests per alert `max_attempts` may ask for.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 20;

/// Where compiled plugins are kept when `[daemon] compile_cache` is not set:
/// systemd's `CacheDirectory=` (`$CACHE_DIRECTORY`), else
/// `$XDG_CACHE_HOME/ward`, else `~/.cache/ward`; `None` when none is known.
#[must_use]
pub fn compile_cache_dir() -> Option<std::path::PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = var("CACHE_DIRECTORY") {
        // systemd lists one folder per CacheDirectory= entry, `:`-separated.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .map(str::to_string)?;
        return Some(std::path::PathBuf::from(first));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(std::path::PathBuf::from(xdg).join("ward"));
    }
    var("HOME").map(|home| std::path::PathBuf::from(home).join(".cache").join("ward"))
}
