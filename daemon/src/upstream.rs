//! Flow control per upstream, one queue's worth, shared by every daemon of
//! the queue through Redis (see `store/upstreams.rs`).
//!
//! An `[[upstream]]` table may give an upstream a token bucket (`rate` per
//! `per`, holding `burst`) and a cap on the attempts calling it in flight
//! at once, fleet-wide (`concurrency`). Before a batch of deliveries runs,
//! the attempts that call limited upstreams are admitted in one script
//! call: each takes a token of every rate-limited upstream it calls and a
//! slot of every capped one, all or none. A job not admitted is held back
//! without spending an attempt ([`crate::transition::Deferral`]) until the
//! earliest time it could run: when the bucket will have a token for it
//! (each refused job is promised a later token than the one before, so a
//! line of them wakes at the rate, not at once), or, for a full upstream,
//! after a short wait that grows with the line.
//!
//! A slot is leased for the queue's lease and renewed with the attempt's
//! delivery, so the slots of a daemon that died come back once their lease
//! runs out; finished attempts give theirs back in one call per batch of
//! completions.
//!
//! A failure that names an upstream with a Retry-After (a 429 or 503) holds
//! the whole upstream until then: every daemon sees the hold (the admit
//! script checks it in the same step; every daemon's copy, refreshed twice
//! a second, holds back the jobs of upstreams without a table).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::UpstreamConfig;
use crate::job::Outcome;
use crate::store::{Limit, Queue, QueueError, Refused, Release};
use crate::transition::Completion;

/// How often a daemon re-reads its queue's upstreams (holds, metrics).
pub const REFRESH: Duration = Duration::from_millis(500);
/// The shortest lease of a slot: slots are renewed at most every
/// [`REFRESH`], so a queue's lease shorter than a few of those would let
/// slots of running attempts expire between renewals.
const MIN_SLOT_LEASE: Duration = Duration::from_secs(2);

/// One queue's upstreams, as this daemon knows them.
pub struct Upstreams {
    queue: Queue,
    /// How long a slot is leased (the queue's lease), renewed meanwhile.
    lease: Duration,
    /// Every upstream the queue's job types name, with its table when it
    /// has one: index = position, as the scripts see them.
    all: Vec<(String, Option<UpstreamConfig>)>,
    /// Upstream name → index in `all`.
    index: HashMap<String, usize>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Redis time minus local time, ms.
    offset_ms: i64,
    /// Upstream index → held until (Redis time, ms).
    held_until: HashMap<usize, u64>,
    /// Entry id of an admitted attempt → the capped upstreams it holds a
    /// slot of.
    slots: HashMap<String, Vec<usize>>,
}

/// The limits of `u` as the scripts take them.
fn limit<'a>(name: &'a str, u: Option<&UpstreamConfig>) -> Limit<'a> {
    Limit {
        name,
        per_ms: u.and_then(|u| u.rate).map_or(0.0, |r| r.per_ms()),
        burst: u.and_then(|u| u.rate).map_or(0, |r| r.burst),
        concurrency: u.and_then(|u| u.concurrency).unwrap_or(0),
    }
}

impl Upstreams {
    /// The upstreams `names` (those the queue's job types list) of `queue`,
    /// limited by `tables`; slots leased for `lease` (at least 2 s).
    #[must_use]
    pub fn new(
        queue: Queue,
        lease: Duration,
        tables: &BTreeMap<String, UpstreamConfig>,
        names: impl IntoIterator<Item = String>,
    ) -> Arc<Upstreams> {
        let mut all: Vec<(String, Option<UpstreamConfig>)> = Vec::new();
        for n in names {
            if !all.iter().any(|(m, _)| *m == n) {
                let t = tables.get(&n).cloned();
                all.push((n, t));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let index = all
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Arc::new(Upstreams {
            queue,
            lease: lease.max(MIN_SLOT_LEASE),
            all,
            index,
            seen: Mutex::new(Seen::default()),
        })
    }

    /// How long a slot is leased; renew well within it.
    #[must_use]
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether any upstream has a rate or a cap (else admitting is free).
    #[must_use]
    pub fn any_limited(&self) -> bool {
        self.all.iter().any(|(_, t)| Self::limited(t.as_ref()))
    }

    fn limited(t: Option<&UpstreamConfig>) -> bool {
        t.is_some_and(|t| t.rate.is_some() || t.concurrency.is_some())
    }

    /// The first of `upstreams` held by a Retry-After now, as this daemon
    /// last saw it, and for how much longer.
    #[must_use]
    pub fn held_among(&self, upstreams: &[String]) -> Option<(String, Duration)> {
        let seen = self.seen.lock().ok()?;
        let now = crate::clock::now_offset_ms(seen.offset_ms);
        upstreams.iter().find_map(|u| {
            let until = *seen.held_until.get(self.index.get(u)?)?;
            (until > now).then(|| (u.clone(), Duration::from_millis(until - now)))
        })
    }

    /// Admits the attempts `jobs` (entry id, the upstreams its job type
    /// lists) in one call; per job `None` when it may run, else the
    /// upstream that refused it and why. Jobs calling no limited upstream
    /// are admitted without asking Redis.
    ///
    /// # Errors
    /// Redis errors; nothing was admitted then.
    pub async fn admit(
        &self,
        jobs: &[(&str, &[String])],
    ) -> Result<Vec<Option<(String, Refused)>>, QueueError> {
        let mut used: Vec<usize> = Vec::new();
        let mut asks: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut at: Vec<Option<usize>> = Vec::with_capacity(jobs.len());
        for (entry, ups) in jobs {
            let mut mine = Vec::new();
            for u in *ups {
                let Some(&i) = self.index.get(u) else {
                    continue;
                };
                if !Self::limited(self.all[i].1.as_ref()) {
                    continue;
                }
                let k = used.iter().position(|&x| x == i).unwrap_or_else(|| {
                    used.push(i);
                    used.len() - 1
                });
                mine.push(k);
            }
            if mine.is_empty() {
                at.push(None);
            } else {
                at.push(Some(asks.len()));
                asks.push((entry, mine));
            }
        }
        if asks.is_empty() {
            return Ok(vec![None; jobs.len()]);
        }
        let limits: Vec<Limit<'_>> = used
            .iter()
            .map(|&i| limit(&self.all[i].0, self.all[i].1.as_ref()))
            .collect();
        let answers = self
            .queue
            .upstream_admit(&limits, self.lease, &asks)
            .await?;
        if let Ok(mut seen) = self.seen.lock() {
            for ((entry, mine), answer) in asks.iter().zip(&answers) {
                let capped: Vec<usize> = mine
                    .iter()
                    .map(|&k| used[k])
                    .filter(|&i| {
                        self.all[i]
                            .1
                            .as_ref()
                            .is_some_and(|t| t.concurrency.is_some())
                    })
                    .collect();
                if answer.is_none() && !capped.is_empty() {
                    seen.slots.insert((*entry).to_string(), capped);
                }
            }
        }
        Ok(at
            .into_iter()
            .map(|a| {
                let r = answers.get(a?).copied().flatten()?;
                let name = self.all[used[r.upstream]].0.clone();
                Some((
                    name,
                    Refused {
                        upstream: used[r.upstream],
                        ..r
                    },
                ))
            })
            .collect())
    }

    /// Gives back the slots `batch`'s attempts held and holds each upstream
    /// a failure among them named with a Retry-After, in one call.
    /// `upstreams_of` gives a job type's list.
    pub async fn finish<'a>(
        &self,
        batch: &[Completion],
        upstreams_of: impl Fn(&str) -> Option<&'a [String]>,
    ) {
        let mut per: BTreeMap<usize, (Duration, Vec<&str>)> = BTreeMap::new();
        if let Ok(mut seen) = self.seen.lock() {
            for c in batch {
                for i in seen.slots.remove(c.entry_id()).unwrap_or_default() {
                    per.entry(i).or_default().1.push(c.entry_id());
                }
            }
        }
        for c in batch {
            let (true, Outcome::Failure(f)) = (c.transition().ran(), c.outcome()) else {
                continue;
            };
            let (Some(after), Some(listed)) = (f.retry_after_ms, upstreams_of(c.job())) else {
                continue;
            };
            let named = match (&f.upstream, listed) {
                (Some(n), _) if listed.contains(n) => n,
                (None, [only]) => only,
                _ => continue,
            };
            if let Some(&i) = self.index.get(named) {
                let hold = &mut per.entry(i).or_default().0;
                *hold = (*hold).max(Duration::from_millis(after));
            }
        }
        if per.is_empty() {
            return;
        }
        let releases: Vec<Release<'_>> = per
            .iter()
            .map(|(&i, (hold, members))| Release {
                name: &self.all[i].0,
                hold: *hold,
                members: members.clone(),
            })
            .collect();
        match self.queue.upstream_release(&releases).await {
            Ok(held) => {
                if let Ok(mut seen) = self.seen.lock() {
                    for ((&i, (hold, _)), until) in per.iter().zip(held) {
                        if !hold.is_zero() && until > 0 {
                            seen.held_until.insert(i, until);
                            crate::obs::events::UpstreamHeld {
                                queue: &self.queue.keys.queue,
                                upstream: &self.all[i].0,
                                hold: *hold,
                            }
                            .emit();
                        }
                    }
                }
            }
            Err(e) => {
                // The slots come back when their leases run out.
                tracing::warn!(queue = %self.queue.keys.queue, error = %e, "cannot release upstream slots or record a Retry-After hold");
            }
        }
    }

    /// Renews the leases of the slots this daemon's attempts hold.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew(&self) -> Result<(), QueueError> {
        let held: Vec<(String, Vec<String>)> = {
            let Ok(seen) = self.seen.lock() else {
                return Ok(());
            };
            let mut per: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            for (entry, ups) in &seen.slots {
                for &i in ups {
                    per.entry(i).or_default().push(entry.clone());
                }
            }
            per.into_iter()
                .map(|(i, m)| (self.all[i].0.clone(), m))
                .collect()
        };
        self.queue.upstream_renew(self.lease, &held).await
    }

    /// Forgets the slot of an attempt that ended without a completion (its
    /// lease runs out in Redis).
    pub fn forget(&self, entry: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.slots.remove(entry);
        }
    }

    /// Re-reads every upstream's state (holds, tokens, slots in use) and
    /// updates the `ward_upstream_*` gauges.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn refresh(&self) -> Result<(), QueueError> {
        let limits: Vec<Limit<'_>> = self.all.iter().map(|(n, t)| limit(n, t.as_ref())).collect();
        let (now, states) = self.queue.upstream_states(&limits).await?;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.offset_ms = crate::clock::offset_to(now);
        seen.held_until.clear();
        for (i, s) in states.iter().enumerate() {
            if s.held_until_ms > now {
                seen.held_until.insert(i, s.held_until_ms);
            }
            crate::obs::events::upstream_state(
                &self.queue.keys.queue,
                &self.all[i].0,
                s.tokens,
                s.in_flight,
                s.held_until_ms,
            );
        }
        Ok(())
    }
}
