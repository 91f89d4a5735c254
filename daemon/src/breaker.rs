//! Circuit breakers, one per upstream of a queue, shared by every daemon.
//!
//! A job type lists the upstreams it calls (`[[job]] upstreams`). Failures
//! that point at one of them (transient, timeout or recoverable; named by
//! the plugin's `upstream`, or the job type's only upstream when the plugin
//! names none) are counted in Redis
//! (`ward:{Q}:breaker:<upstream>`); `[defaults.breaker] failures` of them
//! (or the upstream's own, in its `[[upstream]]` table)
//! within `window` open the breaker for `open_for`. While it is open, jobs of
//! the job types that list the upstream are not run: each is put back in the
//! delayed set until the breaker's time is up, without using an attempt.
//! After that the breaker is half open: the next failure opens it again at
//! once, a success closes it.
//!
//! Only declared upstreams count: a plugin or a payload can name anything,
//! and every name would otherwise make a breaker in Redis and a
//! `ward_breaker_open` series. A failure naming an undeclared upstream
//! touches no breaker.
//!
//! Every daemon keeps a copy of the queue's breakers, refreshed twice a
//! second, so deciding whether to run a job costs no Redis round trip.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::BreakerPolicy;
use crate::job::{FailureClass, Outcome};
use crate::obs::alerts::AlertEvent;
use crate::store::Queue;
use crate::transition::Completion;

/// How often a daemon re-reads its queue's breakers.
pub const REFRESH: Duration = Duration::from_millis(500);

/// One queue's breakers, as this daemon last saw them.
pub struct Breakers {
    queue: Queue,
    policy: BreakerPolicy,
    /// `[[upstream]]` tables' own breaker settings, over `policy`.
    overrides: HashMap<String, BreakerPolicy>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Redis time minus local time, ms.
    offset_ms: i64,
    /// Upstream -> open until (Redis time, ms).
    open_until: HashMap<String, u64>,
    /// Upstreams whose breaker has opened (a success closes it once its
    /// time is up).
    opened: HashSet<String>,
}

impl Breakers {
    /// The breakers of `queue`, opened by `policy`.
    #[must_use]
    pub fn new(queue: Queue, policy: BreakerPolicy) -> Arc<Breakers> {
        Self::with_tables(queue, policy, &std::collections::BTreeMap::new())
    }

    /// The breakers of `queue`, opened by `policy` unless an `[[upstream]]`
    /// table of `tables` sets its own.
    #[must_use]
    pub fn with_tables(
        queue: Queue,
        policy: BreakerPolicy,
        tables: &std::collections::BTreeMap<String, crate::config::UpstreamConfig>,
    ) -> Arc<Breakers> {
        let overrides = tables.iter().map(|(n, t)| (n.clone(), t.breaker)).collect();
        Arc::new(Breakers {
            queue,
            policy,
            overrides,
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The settings of `upstream`'s breaker.
    fn policy(&self, upstream: &str) -> BreakerPolicy {
        self.overrides.get(upstream).copied().unwrap_or(self.policy)
    }

    /// The first of `upstreams` whose breaker is open now, and until when
    /// (Redis time, Unix ms).
    #[must_use]
    pub fn open_among(&self, upstreams: &[String]) -> Option<(String, u64)> {
        let seen = self.seen.lock().ok()?;
        let now = crate::clock::now_offset_ms(seen.offset_ms);
        upstreams.iter().find_map(|u| {
            let until = *seen.open_until.get(u)?;
            (until > now).then(|| (u.clone(), until))
        })
    }

    /// How long from now until Redis time `until_ms`.
    #[must_use]
    pub fn wait_until(&self, until_ms: u64) -> Duration {
        let offset = self.seen.lock().map_or(0, |s| s.offset_ms);
        Duration::from_millis(until_ms.saturating_sub(crate::clock::now_offset_ms(offset)))
    }

    /// Re-reads every breaker of the queue and updates `ward_breaker_open`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn refresh(&self) -> Result<(), crate::store::QueueError> {
        let (now, states) = self.queue.breakers().await?;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.offset_ms = crate::clock::offset_to(now);
        seen.open_until.clear();
        seen.opened.clear();
        for s in states {
            let open = s.open_until_ms > now;
            crate::obs::events::breaker_state(&self.queue.keys.queue, &s.upstream, open);
            if s.open_until_ms > 0 {
                seen.opened.insert(s.upstream.clone());
            }
            seen.open_until.insert(s.upstream, s.open_until_ms);
        }
        Ok(())
    }

    /// This daemon's report opened `upstream`'s breaker; `c` tipped it.
    fn opened(&self, upstream: &str, c: &Completion) {
        let queue = &self.queue.keys.queue;
        let policy = self.policy(upstream);
        crate::obs::events::BreakerOpened {
            queue,
            upstream,
            job: c.job(),
            failures: policy.failures,
            window: policy.window,
            open_for: policy.open_for,
        }
        .emit();
        let job = crate::obs::metrics::job_label(queue, c.job());
        crate::obs::alerts::raise(AlertEvent::breaker_open(queue, &job, upstream, c));
    }

    /// Reports a batch of recorded completions: failures blamed on an
    /// upstream count towards its breaker, successes close the breakers of
    /// their job type's upstreams. `upstreams_of` gives a job type's list.
    pub async fn report<'a>(
        &self,
        batch: &[Completion],
        took: &[bool],
        upstreams_of: impl Fn(&str) -> Option<&'a [String]>,
    ) {
        let mut failures: HashMap<String, (u32, usize)> = HashMap::new();
        let mut succeeded: HashSet<String> = HashSet::new();
        for (i, c) in batch.iter().enumerate() {
            // Only attempts that ran tell about an upstream: not a duplicate,
            // nor a job held back by a breaker.
            if !took.get(i).copied().unwrap_or(true) || !c.transition().ran() {
                continue;
            }
            let Some(upstreams) = upstreams_of(c.job()) else {
                continue;
            };
            match c.outcome() {
                Outcome::Success(_) => succeeded.extend(upstreams.iter().cloned()),
                Outcome::Failure(f) => {
                    let counts = matches!(
                        f.class,
                        FailureClass::Transient | FailureClass::Timeout | FailureClass::Recoverable
                    ) && !matches!(
                        f.code.as_deref(),
                        Some("lease-expired" | "capacity")
                    );
                    let blamed = match &f.upstream {
                        Some(named) => upstreams.contains(named).then(|| named.clone()),
                        None => match upstreams {
                            [only] => Some(only.clone()),
                            _ => None,
                        },
                    };
                    if let (true, Some(u)) = (counts, blamed) {
                        let e = failures.entry(u).or_insert((0, i));
                        e.0 += 1;
                        e.1 = i;
                    }
                }
            }
        }
        let reset: Vec<String> = match self.seen.lock() {
            Ok(seen) => succeeded
                .into_iter()
                .filter(|u| seen.opened.contains(u) && !failures.contains_key(u))
                .collect(),
            Err(_) => Vec::new(),
        };
        for (upstream, (n, last)) in failures {
            match self
                .queue
                .breaker_report(&upstream, n, &self.policy(&upstream))
                .await
            {
                Ok(update) => {
                    if let Ok(mut seen) = self.seen.lock()
                        && let Some(until) = update.open_until_ms
                    {
                        seen.opened.insert(upstream.clone());
                        seen.open_until.insert(upstream.clone(), until);
                    }
                    if update.opened_now {
                        self.opened(&upstream, &batch[last]);
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue.keys.queue, upstream = %upstream, error = %e, "cannot update the circuit breaker");
                }
            }
        }
        for upstream in reset {
            match self
                .queue
                .breaker_report(&upstream, 0, &self.policy(&upstream))
                .await
            {
                Ok(update) => {
                    if let (Ok(mut seen), None) = (self.seen.lock(), update.open_until_ms) {
                        seen.opened.remove(&upstream);
                        seen.open_until.remove(&upstream);
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue.keys.queue, upstream = %upstream, error = %e, "cannot close the circuit breaker");
                }
            }
        }
    }
}
