//! Flow control per upstream, shared by every daemon of a queue: token
//! buckets, slot holders with leases, Retry-After holds
//! (`ward:{Q}:upstream:<name>`, `...:slots`), and the queue's backlog
//! limit that `ward_enqueue` reads (`ward:{Q}:limits`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::reply::protocol;
use super::script::script;
use super::{Queue, QueueError};

static ADMIT_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/upstream_admit.lua")));
static RELEASE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/upstream_release.lua")));
static RENEW_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/upstream_renew.lua")));
static STATES_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/upstreams.lua")));

/// One upstream's limits, as the scripts take them.
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    /// The upstream.
    pub name: &'a str,
    /// Tokens added per ms (0: no rate limit).
    pub per_ms: f64,
    /// The bucket's size.
    pub burst: u32,
    /// Most slots held at once (0: no cap).
    pub concurrency: u32,
}

/// Why an upstream did not admit a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token in its bucket.
    RateLimited,
    /// Every slot is taken.
    Busy,
    /// Held until its Retry-After.
    Held,
}

/// A job the upstreams did not admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub why: Refusal,
    /// Which upstream (an index into the limits passed).
    pub upstream: usize,
    /// The earliest it could run.
    pub wait: Duration,
}

/// What a batch of finished attempts gives back to one upstream.
#[derive(Debug, Clone, Default)]
pub struct Release<'a> {
    /// The upstream.
    pub name: &'a str,
    /// A Retry-After to hold it for (zero: none).
    pub hold: Duration,
    /// The slot members (entry ids) to release.
    pub members: Vec<&'a str>,
}

/// One upstream's flow-control state as Redis holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UpstreamState {
    /// Tokens in the bucket now (`None`: no rate limit).
    pub tokens: Option<f64>,
    /// Slots held by attempts in flight.
    pub in_flight: u64,
    /// Held (Retry-After) until this Redis time, Unix ms (0: not held).
    pub held_until_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Queue {
    /// Admits each of `jobs` (its slot member, the indexes into `limits` of
    /// its upstreams) to all of its upstreams or none, in one call; a slot
    /// is leased for `lease`. Per job: `None` admitted, else why not.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn upstream_admit(
        &self,
        limits: &[Limit<'_>],
        lease: Duration,
        jobs: &[(&str, Vec<usize>)],
    ) -> Result<Vec<Option<Refused>>, QueueError> {
        let mut inv = ADMIT_SCRIPT.prepare_invoke();
        for l in limits {
            inv.key(self.keys.upstream(l.name))
                .key(self.keys.upstream_slots(l.name));
        }
        inv.arg(limits.len()).arg(ms(lease));
        for l in limits {
            inv.arg(l.per_ms.to_string())
                .arg(l.burst)
                .arg(l.concurrency);
        }
        for (member, ups) in jobs {
            inv.arg(*member).arg(ups.len());
            for u in ups {
                inv.arg(u + 1);
            }
        }
        let mut con = self.con.clone();
        let reply: Vec<i64> = inv.invoke_async(&mut con).await?;
        if reply.len() != jobs.len() * 3 {
            return Err(QueueError::Protocol {
                what: "upstream admit",
                detail: format!("{} values for {} jobs", reply.len(), jobs.len()),
            });
        }
        Ok(reply
            .chunks(3)
            .map(|c| {
                let why = match c[0] {
                    1 => Refusal::RateLimited,
                    2 => Refusal::Busy,
                    3 => Refusal::Held,
                    _ => return None,
                };
                Some(Refused {
                    why,
                    upstream: usize::try_from(c[1] - 1).unwrap_or(0),
                    wait: Duration::from_millis(u64::try_from(c[2]).unwrap_or(0)),
                })
            })
            .collect())
    }

    /// Releases the slots of finished attempts and sets the holds their
    /// Retry-Afters asked for, in one call; returns each upstream's
    /// `held_until` (Redis time, ms; 0: not held).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn upstream_release(&self, releases: &[Release<'_>]) -> Result<Vec<u64>, QueueError> {
        let mut inv = RELEASE_SCRIPT.prepare_invoke();
        for r in releases {
            inv.key(self.keys.upstream(r.name))
                .key(self.keys.upstream_slots(r.name));
        }
        inv.arg(releases.len());
        for r in releases {
            inv.arg(ms(r.hold)).arg(r.members.len());
            for m in &r.members {
                inv.arg(*m);
            }
        }
        let mut con = self.con.clone();
        Ok(inv.invoke_async(&mut con).await?)
    }

    /// Renews for `lease` the slots `held` (upstream, members) this daemon's
    /// attempts hold.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn upstream_renew(
        &self,
        lease: Duration,
        held: &[(String, Vec<String>)],
    ) -> Result<(), QueueError> {
        if held.is_empty() {
            return Ok(());
        }
        let mut inv = RENEW_SCRIPT.prepare_invoke();
        for (name, _) in held {
            inv.key(self.keys.upstream_slots(name));
        }
        inv.arg(ms(lease));
        for (_, members) in held {
            inv.arg(members.len());
            for m in members {
                inv.arg(m);
            }
        }
        let mut con = self.con.clone();
        let _: i64 = inv.invoke_async(&mut con).await?;
        Ok(())
    }

    /// The state of each of `limits`' upstreams, and the Redis time (ms).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn upstream_states(
        &self,
        limits: &[Limit<'_>],
    ) -> Result<(u64, Vec<UpstreamState>), QueueError> {
        let mut inv = STATES_SCRIPT.prepare_invoke();
        for l in limits {
            inv.key(self.keys.upstream(l.name))
                .key(self.keys.upstream_slots(l.name));
            inv.arg(l.per_ms.to_string()).arg(l.burst);
        }
        let mut con = self.con.clone();
        let reply: Vec<i64> = inv.invoke_async(&mut con).await?;
        let Some((&now, rest)) = reply.split_first() else {
            return Err(protocol("upstreams", &Value::Nil));
        };
        if rest.len() != limits.len() * 3 {
            return Err(QueueError::Protocol {
                what: "upstreams",
                detail: format!("{} values for {} upstreams", rest.len(), limits.len()),
            });
        }
        let states = rest
            .chunks(3)
            .map(|c| UpstreamState {
                #[allow(clippy::cast_precision_loss, reason = "a token count, shown")]
                tokens: (c[0] >= 0).then(|| c[0] as f64 / 1000.0),
                in_flight: u64::try_from(c[1]).unwrap_or(0),
                held_until_ms: u64::try_from(c[2]).unwrap_or(0),
            })
            .collect();
        Ok((u64::try_from(now).unwrap_or(0), states))
    }

    /// The `max_backlog` the daemons last published for this queue.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn max_backlog(&self) -> Result<Option<u64>, QueueError> {
        let mut con = self.con.clone();
        let v: Option<u64> = redis::cmd("HGET")
            .arg(&self.keys.limits)
            .arg("max_backlog")
            .query_async(&mut con)
            .await?;
        Ok(v)
    }

    /// Tells `ward_enqueue` the queue's `max_backlog` (`None`: no limit).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn publish_max_backlog(&self, max: Option<u64>) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        match max {
            Some(m) => {
                let _: i64 = redis::cmd("HSET")
                    .arg(&self.keys.limits)
                    .arg("max_backlog")
                    .arg(m)
                    .query_async(&mut con)
                    .await?;
            }
            None => {
                let _: i64 = redis::cmd("HDEL")
                    .arg(&self.keys.limits)
                    .arg("max_backlog")
                    .query_async(&mut con)
                    .await?;
            }
        }
        Ok(())
    }
}
