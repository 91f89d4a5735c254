//! Readiness, and the two small loops that keep it and the queue gauges
//! fresh: a Redis PING every second on a connection of its own, and one
//! depth-and-lag sample per queue every `sample_interval`.
//!
//! `/readyz` is 200 only when all of these hold:
//! - Redis answered a PING within the last [`PING_FRESH`];
//! - every plugin is compiled;
//! - every queue's consumer group exists (seen by the last sample);
//! - the daemon is not shutting down.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::obs::events::{QueueSampleFailed, QueueSampled};
use crate::obs::metrics as m;
use crate::store::{self, Keys, Queue};

/// How often Redis is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// How often Redis' memory settings and use are read (`INFO memory`).
pub const MEMORY_EVERY: Duration = Duration::from_secs(30);
/// A PING older than this no longer counts as "connected".
pub const PING_FRESH: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
#[derive(Debug)]
pub struct Readiness {
    last_ping: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    plugins: AtomicBool,
    /// Queue name → whether its consumer group was seen.
    groups: Mutex<BTreeMap<String, bool>>,
    stopping: AtomicBool,
    /// What Redis' memory calls for (see [`crate::store::Memory::warnings`]).
    warnings: Mutex<Vec<String>>,
}

impl Readiness {
    /// Nothing ready yet, for these queues.
    #[must_use]
    pub fn new<'a>(queues: impl IntoIterator<Item = &'a str>) -> Readiness {
        Readiness {
            last_ping: Mutex::new(None),
            last_error: Mutex::new(None),
            plugins: AtomicBool::new(false),
            groups: Mutex::new(queues.into_iter().map(|q| (q.to_string(), false)).collect()),
            stopping: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Warnings that do not make the daemon unready, shown by `/readyz`.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Replaces the warnings; each new one is logged once.
    fn set_warnings(&self, now: Vec<String>) {
        if let Ok(mut w) = self.warnings.lock() {
            for line in now.iter().filter(|l| !w.contains(l)) {
                tracing::warn!("{line}");
            }
            *w = now;
        }
    }

    /// Every plugin is compiled.
    pub fn set_plugins_loaded(&self) {
        self.plugins.store(true, Ordering::Relaxed);
    }

    /// The daemon is shutting down: no longer ready for new work.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.publish();
    }

    fn set_ping(&self, result: Result<(), String>) {
        if let Ok(mut at) = self.last_ping.lock()
            && result.is_ok()
        {
            *at = Some(Instant::now());
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = result.err();
        }
        self.publish();
    }

    /// Whether Redis answered a PING within [`PING_FRESH`]: one slow PING on
    /// a busy machine does not count as Redis being away.
    fn redis_fresh(&self) -> bool {
        self.last_ping
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() <= PING_FRESH)
    }

    fn set_group(&self, queue: &str, exists: bool) {
        if let Ok(mut g) = self.groups.lock() {
            g.insert(queue.to_string(), exists);
        }
    }

    fn publish(&self) {
        let gauge = |yes: bool| if yes { 1.0 } else { 0.0 };
        metrics::gauge!(m::REDIS_UP).set(gauge(self.redis_fresh()));
        metrics::gauge!(m::READY).set(gauge(self.check().is_ok()));
    }

    /// `Ok` when ready, else one short line per failing check.
    ///
    /// # Errors
    /// The failing checks.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut failing = Vec::new();
        if self.stopping.load(Ordering::Relaxed) {
            failing.push("shutting down".to_string());
        }
        if !self.redis_fresh() {
            let why = self
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "not connected yet".into());
            failing.push(format!(
                "redis: no PING answer within {}s ({why})",
                PING_FRESH.as_secs()
            ));
        }
        if !self.plugins.load(Ordering::Relaxed) {
            failing.push("plugins: not compiled yet".into());
        }
        if let Ok(groups) = self.groups.lock() {
            let missing: Vec<&str> = groups
                .iter()
                .filter(|(_, ok)| !**ok)
                .map(|(q, _)| q.as_str())
                .collect();
            if !missing.is_empty() {
                failing.push(format!(
                    "consumer group `{}` missing for queue(s): {}",
                    store::GROUP,
                    missing.join(", ")
                ));
            }
        }
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing)
        }
    }
}

/// PINGs Redis every [`PING_EVERY`] on its own connection (so a busy
/// worker connection cannot make it look down), until `stop`.
pub async fn ping_loop(
    url: String,
    readiness: std::sync::Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut queue: Option<Queue> = None;
    let mut memory_read_at: Option<Instant> = None;
    loop {
        if let Some(q) = &queue
            && memory_read_at.is_none_or(|at| at.elapsed() >= MEMORY_EVERY)
            && let Ok(Ok(mem)) = tokio::time::timeout(PING_EVERY, q.memory()).await
        {
            memory_read_at = Some(Instant::now());
            readiness.set_warnings(mem.warnings());
            #[allow(clippy::cast_precision_loss, reason = "a gauge, bytes to within 2^-52")]
            {
                metrics::gauge!(m::REDIS_MEMORY_USED).set(mem.used_bytes as f64);
                metrics::gauge!(m::REDIS_MEMORY_MAX).set(mem.max_bytes as f64);
            }
            metrics::gauge!(m::REDIS_EVICTING).set(if mem.policy == "noeviction" {
                0.0
            } else {
                1.0
            });
        }
        let result = match &queue {
            Some(q) => tokio::time::timeout(PING_EVERY, q.ping())
                .await
                .map_err(|_| "PING timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            None => {
                match tokio::time::timeout(PING_EVERY * 2, store::connect(&url, PING_EVERY)).await {
                    Ok(Ok(con)) => {
                        let q = Queue::new(Keys::new("health"), con);
                        let r = q.ping().await.map_err(|e| e.to_string());
                        queue = Some(q);
                        r
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("connecting timed out".into()),
                }
            }
        };
        readiness.set_ping(result);
        tokio::select! {
            () = tokio::time::sleep(PING_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Samples one queue's depth and lag every `every` (the first at once),
/// records whether its consumer group exists and raises the queue-wide
/// alerts `rule` finds, until `stop`.
pub async fn sample_loop(
    queue: Queue,
    every: Duration,
    rule: crate::obs::alerts::WatchRule,
    readiness: std::sync::Arc<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    while !*stop.borrow() {
        match queue.sample().await {
            Ok(s) => {
                failing = false;
                readiness.set_group(&queue.keys.queue, s.group_exists);
                QueueSampled {
                    queue: &queue.keys.queue,
                    sample: &s,
                }
                .emit();
                for event in crate::obs::alerts::conditions(&queue.keys.queue, &s, &rule) {
                    crate::obs::alerts::raise(event);
                }
            }
            Err(e) => {
                // Once per streak: Redis being away is already logged loudly.
                if !failing {
                    QueueSampleFailed {
                        queue: &queue.keys.queue,
                        error: &e.to_string(),
                    }
                    .emit();
                }
                failing = true;
            }
        }
        readiness.publish();
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_redis_plugins_and_groups_are_all_there() {
        let r = Readiness::new(["a", "b"]);
        let why = r.check().unwrap_err();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].starts_with("redis:"), "{why:?}");
        r.set_ping(Ok(()));
        r.set_plugins_loaded();
        r.set_group("a", true);
        assert_eq!(
            r.check().unwrap_err(),
            vec!["consumer group `ward` missing for queue(s): b"]
        );
        r.set_group("b", true);
        assert!(r.check().is_ok());
        r.set_stopping();
        assert_eq!(r.check().unwrap_err(), vec!["shutting down"]);
    }

    #[test]
    fn a_failed_ping_says_why() {
        let r = Readiness::new([]);
        r.set_ping(Err("connection refused".into()));
        let why = r.check().unwrap_err();
        assert!(why[0].contains("connection refused"), "{why:?}");
    }
}
