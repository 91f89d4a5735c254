//! The job types of a config, compiled: one [`JobType`] per `[[job]]`,
//! each plugin file compiled once however many job types share it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::policy::RetryPolicy;
use crate::redact::FieldPath;
use crate::runtime::{Outbound, Plugin, Reuse, Runtime, RuntimeSpec, Sandbox};

/// One queue's job types, by name (looked up for every delivery: hashed
/// with `foldhash`, not SipHash).
pub(crate) type JobTypes = HashMap<String, Arc<JobType>, foldhash::fast::RandomState>;

/// One queue's job types as its reader, reclaimer and completer see them:
/// a live reload swaps the whole map at once, and each of them loads it
/// once per batch (one atomic load), so a batch never sees half of a
/// reload. An attempt holds its own `Arc<JobType>` and finishes on it.
pub(crate) type SharedJobs = Arc<arc_swap::ArcSwap<JobTypes>>;

/// A job type, ready to run.
pub(crate) struct JobType {
    /// The compiled component.
    pub(crate) plugin: Arc<Plugin>,
    /// The limits of each attempt.
    pub(crate) sandbox: Sandbox,
    /// When to retry and when to give up.
    pub(crate) policy: RetryPolicy,
    /// How long a succeeded job's idempotency key is remembered.
    pub(crate) idempotency_ttl: Duration,
    /// Payload fields never shown in this type's dead letters.
    pub(crate) redact: Vec<FieldPath>,
    /// Upstreams whose circuit breakers hold this type's jobs back.
    pub(crate) upstreams: Vec<String>,
    /// Its groups (tenants) and their cap on attempts in flight.
    pub(crate) group: Option<crate::fairness::GroupLimit>,
    /// How a success's result is kept.
    pub(crate) results: crate::transition::ResultPolicy,
    /// The next stage's job type (`then`): enqueued with the result as its
    /// payload when a job of this type succeeds.
    pub(crate) then: Option<String>,
    /// Its metric handles, looked up once here rather than per attempt.
    pub(crate) metrics: Arc<crate::obs::events::JobMetrics>,
}

/// Loads every plugin named in `config`, compiling each file once, the
/// files side by side (a load from the compile cache is mostly
/// decompressing, which one thread does at a time per plugin).
///
/// # Errors
/// One message listing every plugin that failed to load.
pub(crate) fn load_plugins(
    runtime: &Runtime,
    config: &Config,
) -> anyhow::Result<HashMap<String, JobTypes>> {
    let compiled = load_each(runtime, config);
    let mut errors = Vec::new();
    let mut out = HashMap::new();
    for q in &config.queues {
        let mut jobs = JobTypes::default();
        // A child job runs in its parent's queue: these are the types it may have.
        let job_types: Arc<BTreeSet<String>> = Arc::new(q.jobs.keys().cloned().collect());
        for j in q.jobs.values() {
            let key = (j.plugin.clone(), j.fuel.is_some());
            let plugin = match compiled.get(&key) {
                Some(Ok(p)) => p.clone(),
                Some(Err(e)) => {
                    errors.push(format!("job `{}` in queue `{}`: {e}", j.name, q.name));
                    continue;
                }
                None => continue,
            };
            let mut secrets = BTreeMap::new();
            for name in &j.secrets {
                match crate::runtime::read_secret(name) {
                    Some(value) => {
                        secrets.insert(name.clone(), value);
                    }
                    None => errors.push(format!(
                        "job `{}` in queue `{}`: secret `{name}` is granted but not set: give the daemon an environment variable {name} or a file $CREDENTIALS_DIRECTORY/{name} (systemd LoadCredential=)",
                        j.name, q.name
                    )),
                }
            }
            jobs.insert(
                j.name.clone(),
                Arc::new(JobType {
                    plugin,
                    sandbox: Sandbox {
                        timeout: j.timeout,
                        memory: j.memory_limit,
                        fuel: j.fuel,
                        output_limit: j.output_limit,
                        http: Arc::new(Outbound::new(j.http.clone())),
                        secrets: Arc::new(secrets),
                        reuse: Reuse::new(j.reuse_instance),
                        job_types: job_types.clone(),
                    },
                    policy: j.retry,
                    idempotency_ttl: j.idempotency_ttl,
                    redact: j.redact.clone(),
                    upstreams: j.upstreams.clone(),
                    group: j.group.clone(),
                    results: j.results,
                    then: j.then.clone(),
                    metrics: crate::obs::events::JobMetrics::of(q.name.as_str(), &j.name),
                }),
            );
        }
        out.insert(q.name.clone(), jobs);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        anyhow::bail!(
            "{}: cannot load plugins:\n  {}",
            config.path.display(),
            errors.join("\n  ")
        )
    }
}

/// Each distinct plugin file of `config` (per engine: with fuel or not),
/// loaded on a thread of its own; logs each, and how many came from the
/// compile cache.
fn load_each(
    runtime: &Runtime,
    config: &Config,
) -> HashMap<(PathBuf, bool), Result<Arc<Plugin>, String>> {
    let mut keys: Vec<(PathBuf, bool)> = config
        .queues
        .iter()
        .flat_map(|q| q.jobs.values())
        .map(|j| (j.plugin.clone(), j.fuel.is_some()))
        .collect();
    keys.sort();
    keys.dedup();
    let hits = runtime.cache_hits();
    let started = std::time::Instant::now();
    let loaded: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter()
            .map(|(path, fuel)| {
                scope.spawn(move || {
                    let t = std::time::Instant::now();
                    let result = runtime
                        .load(path, *fuel)
                        .map(Arc::new)
                        .map_err(|e| e.to_string());
                    (result, t.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Err("compiling it panicked".to_string()), Duration::ZERO))
            })
            .collect()
    });
    let mut out = HashMap::new();
    for (key, (result, took)) in keys.into_iter().zip(loaded) {
        let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        if let Ok(p) = &result {
            tracing::info!(plugin = %key.0.display(), digest = %p.digest(), took_ms, "plugin compiled");
        }
        out.insert(key, result);
    }
    let from_cache = runtime.cache_hits() - hits;
    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(plugins = out.len(), from_cache, took_ms, "plugins loaded");
    out
}

/// Instances the pool must hold at once: one per slot of every queue, and
/// for each job type that reuses instances, room for one kept instance per
/// slot of its queue (kept instances wait between attempts while other
/// job types' attempts fill the slots).
pub(crate) fn slots(config: &Config) -> u32 {
    config
        .queues
        .iter()
        .map(queue_slots)
        .fold(0u32, u32::saturating_add)
}

/// The most instances one queue needs at once (see [`RuntimeSpec::widest`]).
fn widest(config: &Config) -> u32 {
    config.queues.iter().map(queue_slots).max().unwrap_or(0)
}

/// The instances one queue needs at once (see [`slots`]).
fn queue_slots(q: &crate::config::QueueConfig) -> u32 {
    let reusing = q.jobs.values().filter(|j| j.reuse_instance > 1).count();
    let reusing = u32::try_from(reusing).unwrap_or(u32::MAX);
    q.concurrency.saturating_mul(reusing.saturating_add(1))
}

/// The engine sizes a config needs: pooled slots, largest memory, fuel or not.
pub(crate) fn runtime_for(config: &Config, slots: u32) -> anyhow::Result<Runtime> {
    let jobs = config.queues.iter().flat_map(|q| q.jobs.values());
    let max_memory = jobs
        .clone()
        .map(|j| j.memory_limit)
        .max()
        .unwrap_or(crate::runtime::DEFAULT_MEMORY_LIMIT);
    let fuel = jobs.clone().any(|j| j.fuel.is_some());
    Ok(Runtime::new(&RuntimeSpec {
        slots,
        widest: widest(config).min(slots),
        slot_pages: config.slot_pages,
        max_memory,
        fuel,
        cache: config.compile_cache.as_deref(),
        perf_map: config.perf_map,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(queues: &[(&str, u32)]) -> Config {
        let text: String = queues
            .iter()
            .map(|(name, c)| format!("[[queue]]\nname = \"{name}\"\nconcurrency = {c}\n"))
            .collect();
        Config::from_toml(std::path::Path::new("/nonexistent/ward.toml"), &text).unwrap()
    }

    #[test]
    fn the_widest_queue_not_the_sum_says_how_large_a_pool_is() {
        let many: Vec<(String, u32)> = (0..20).map(|i| (format!("q{i}"), 500)).collect();
        let many: Vec<(&str, u32)> = many.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let cfg = config(&many);
        assert_eq!((slots(&cfg), widest(&cfg)), (10_000, 500));
        let cfg = config(&[("hooks", 9_000), ("small", 16)]);
        assert_eq!((slots(&cfg), widest(&cfg)), (9_016, 9_000));
    }
}
