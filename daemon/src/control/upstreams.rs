//! Flow control per upstream, as an operator sees it: for each upstream a
//! queue's job types call, its limits (`[[upstream]]`), what Redis holds
//! now (tokens, attempts in flight, a Retry-After hold) and its breaker.
//! What `ward upstreams` prints and the admin API serves.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::UpstreamConfig;
use crate::store::{Limit, Queue, QueueError};

/// An upstream's token bucket as shown.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateShown {
    /// Tokens added per `per_ms`.
    pub rate: u32,
    /// The period, ms.
    pub per_ms: u64,
    /// The bucket's size.
    pub burst: u32,
}

/// One upstream of one queue, as `ward upstreams` and the admin API show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UpstreamLine {
    /// The queue.
    pub queue: String,
    /// The upstream.
    pub upstream: String,
    /// Whether the config read has an `[[upstream]]` table for it (without
    /// a config, its limits are unknown here).
    pub configured: bool,
    /// Its token bucket, if it has one.
    pub rate: Option<RateShown>,
    /// Its cap on attempts in flight, if it has one.
    pub concurrency: Option<u32>,
    /// Tokens in the bucket now.
    pub tokens: Option<f64>,
    /// Attempts holding one of its slots now, fleet-wide.
    pub in_flight: u64,
    /// Held by a Retry-After for this much longer, ms.
    pub held_for_ms: Option<u64>,
    /// Its breaker: `open` or `closed`.
    pub breaker: &'static str,
    /// For an open breaker: how long it stays open, ms.
    pub breaker_open_for_ms: Option<u64>,
}

/// The upstreams of queue `q`: those `named` (by its job types) and those
/// with a breaker in Redis, with the limits of `tables`.
///
/// # Errors
/// Redis errors.
pub async fn list(
    q: &Queue,
    tables: &BTreeMap<String, UpstreamConfig>,
    named: &[String],
) -> Result<Vec<UpstreamLine>, QueueError> {
    let (now, breakers) = q.breakers().await?;
    let mut names: BTreeSet<&str> = named.iter().map(String::as_str).collect();
    names.extend(breakers.iter().map(|b| b.upstream.as_str()));
    let names: Vec<&str> = names.into_iter().collect();
    let limits: Vec<Limit<'_>> = names
        .iter()
        .map(|n| {
            let rate = tables.get(*n).and_then(|t| t.rate);
            Limit {
                name: n,
                per_ms: rate.map_or(0.0, |r| r.per_ms()),
                burst: rate.map_or(0, |r| r.burst),
                concurrency: 0,
            }
        })
        .collect();
    let (_, states) = q.upstream_states(&limits).await?;
    Ok(names
        .iter()
        .zip(states)
        .map(|(n, s)| {
            let table = tables.get(*n);
            let open_until = breakers
                .iter()
                .find(|b| b.upstream == *n)
                .map_or(0, |b| b.open_until_ms);
            let open = open_until > now;
            UpstreamLine {
                queue: q.keys.queue.clone(),
                upstream: (*n).to_string(),
                configured: table.is_some(),
                rate: table.and_then(|t| t.rate).map(|r| RateShown {
                    rate: r.rate,
                    per_ms: u64::try_from(r.per.as_millis()).unwrap_or(u64::MAX),
                    burst: r.burst,
                }),
                concurrency: table.and_then(|t| t.concurrency),
                tokens: s.tokens,
                in_flight: s.in_flight,
                held_for_ms: (s.held_until_ms > now).then(|| s.held_until_ms - now),
                breaker: if open { "open" } else { "closed" },
                breaker_open_for_ms: open.then(|| open_until - now),
            }
        })
        .collect())
}
