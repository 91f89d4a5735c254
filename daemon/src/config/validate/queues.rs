//! `[[queue]]` tables and `[defaults] dead_payload_max`: limits, leases,
//! record keeping and dead-letter retention.

use crate::priority::Weights;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::checked;
use crate::config::defaults::{
    DEFAULT_BATCH_RETENTION, DEFAULT_CONCURRENCY, DEFAULT_DEAD_PAYLOAD_MAX, DEFAULT_LEASE,
    DEFAULT_MAX_PAYLOAD, DEFAULT_STALL_AFTER, MAX_CONCURRENCY, MAX_MAX_PAYLOAD, MIN_LEASE,
    SUCCEEDED_TTL,
};
use crate::config::raw::RawQueue;
use crate::config::{DeadLetterConfig, QueueConfig};

/// The queues in file order, each without its job types yet; a queue
/// defined twice is reported and kept once.
pub(super) fn queues(
    raw: Vec<RawQueue>,
    default_payload_max: usize,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Vec<QueueConfig> {
    if raw.is_empty() {
        problem(
            0..0,
            "no [[queue]] is defined; add one, e.g. [[queue]] name = \"default\"".into(),
        );
    }
    let mut queues: Vec<QueueConfig> = Vec::new();
    for q in raw {
        let name = q.name.get_ref().clone();
        if let Some(msg) = check_name(&name) {
            problem(q.name.span(), format!("queue name `{name}` {msg}"));
        }
        if queues.iter().any(|other| other.name == name) {
            problem(q.name.span(), format!("queue `{name}` is defined twice"));
            continue;
        }
        queues.push(queue(q, name, default_payload_max, problem));
    }
    queues
}

/// One `[[queue]]` table named `name`, checked, without its job types.
fn queue(
    q: RawQueue,
    name: String,
    default_payload_max: usize,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> QueueConfig {
    let dead = dead_letter_config(&q, &name, default_payload_max, problem);
    let concurrency = checked(q.concurrency, DEFAULT_CONCURRENCY, problem, |c| {
        (*c == 0 || *c > MAX_CONCURRENCY).then(|| {
            format!("queue `{name}`: concurrency {c} is out of range; use 1 to {MAX_CONCURRENCY}")
        })
    });
    let lease = checked(q.lease, DEFAULT_LEASE, problem, |l| {
        (*l < MIN_LEASE).then(|| {
            format!(
                "queue `{name}`: lease must be at least {MIN_LEASE:?}; heartbeats renew it every third of it"
            )
        })
    });
    let succeeded_ttl = checked(q.succeeded_ttl, SUCCEEDED_TTL, problem, |t| {
        (t.subsec_nanos() != 0).then(|| {
            format!(
                "queue `{name}`: succeeded_ttl must be whole seconds (records expire by the second); use \"0s\" to keep no record of succeeded jobs"
            )
        })
    });
    // "0s" keeps ledgers until deleted by hand.
    let batch_retention = q
        .batch_retention
        .map_or(Some(DEFAULT_BATCH_RETENTION), |r| {
            Some(*r.get_ref()).filter(|d| !d.is_zero())
        });
    let max_payload = super::jobs::size(
        q.max_payload.as_ref(),
        DEFAULT_MAX_PAYLOAD,
        1..=MAX_MAX_PAYLOAD,
        &format!("queue `{name}`: max_payload"),
        problem,
    );
    let max_backlog = q.max_backlog.map(|m| {
        let v = *m.get_ref();
        u64::try_from(v)
            .ok()
            .filter(|v| *v >= 1)
            .unwrap_or_else(|| {
                problem(
                    m.span(),
                    format!("queue `{name}`: max_backlog {v} is out of range; use 1 or more"),
                );
                1
            })
    });
    let wait_replicas = q.wait_replicas.as_ref().map_or(0, |w| {
        let v = *w.get_ref();
        u32::try_from(v).ok().filter(|v| (1..=16).contains(v)).unwrap_or_else(|| {
            problem(
                w.span(),
                format!("queue `{name}`: wait_replicas {v} is out of range; use 1 to 16 (or leave it out to wait for none)"),
            );
            0
        })
    });
    let priority_weights = match &q.priority_weights {
        None => Weights::default(),
        Some(w) => Weights::from_list(w.get_ref()).unwrap_or_else(|| {
            problem(
                w.span(),
                format!(
                    "queue `{name}`: priority_weights must be three whole numbers [high, normal, low], each at least 1, e.g. [8, 3, 1]"
                ),
            );
            Weights::default()
        }),
    };
    let max_wait = q.max_wait.map(|w| {
        if w.get_ref().is_zero() {
            problem(
                w.span(),
                format!("queue `{name}`: max_wait must be more than 0, e.g. \"5m\""),
            );
        }
        *w.get_ref()
    });
    // "0s" turns the stall alert off.
    let stall_after = q.stall_after.map_or(Some(DEFAULT_STALL_AFTER), |s| {
        Some(*s.get_ref()).filter(|d| !d.is_zero())
    });
    QueueConfig {
        max_wait,
        stall_after,
        priority_weights,
        max_payload,
        max_backlog,
        wait_replicas,
        name,
        concurrency,
        lease,
        succeeded_ttl,
        batch_retention,
        jobs: BTreeMap::new(),
        dead,
    }
}

/// `[defaults] dead_payload_max`, the value queues inherit.
pub(super) fn default_payload_max(
    raw: Option<&Spanned<i64>>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> usize {
    raw.map_or(DEFAULT_DEAD_PAYLOAD_MAX, |m| {
        payload_max(m, "[defaults]", problem)
    })
}

/// A queue's `dead_*` keys, checked: lengths at least 1, durations above 0.
fn dead_letter_config(
    q: &RawQueue,
    name: &str,
    default_payload_max: usize,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> DeadLetterConfig {
    let mut dead = DeadLetterConfig {
        payload_max: default_payload_max,
        ..DeadLetterConfig::default()
    };
    if let Some(len) = &q.dead_max_len {
        match u64::try_from(*len.get_ref()) {
            Ok(n) if n >= 1 => dead.max_len = Some(n),
            _ => problem(
                len.span(),
                format!(
                    "queue `{name}`: dead_max_len {} keeps no dead letter; use 1 or more, or leave it out for no limit",
                    len.get_ref()
                ),
            ),
        }
    }
    if let Some(age) = &q.dead_max_age {
        if age.get_ref().is_zero() {
            problem(
                age.span(),
                format!(
                    "queue `{name}`: dead_max_age must be more than 0, e.g. \"30d\"; leave it out for no limit"
                ),
            );
        } else {
            dead.max_age = Some(*age.get_ref());
        }
    }
    if let Some(every) = &q.dead_trim_interval {
        if every.get_ref().is_zero() {
            problem(
                every.span(),
                format!("queue `{name}`: dead_trim_interval must be more than 0, e.g. \"30s\""),
            );
        } else {
            dead.trim_interval = *every.get_ref();
        }
    }
    if let Some(m) = &q.dead_payload_max {
        dead.payload_max = payload_max(m, &format!("queue `{name}`"), problem);
    }
    dead
}

/// A `dead_payload_max` value: a byte count of at least 0.
fn payload_max(m: &Spanned<i64>, at: &str, problem: &mut dyn FnMut(Range<usize>, String)) -> usize {
    match usize::try_from(*m.get_ref()) {
        Ok(n) => n,
        Err(_) => {
            problem(
                m.span(),
                format!(
                    "{at}: dead_payload_max {} is not a size in bytes; use e.g. 65536",
                    m.get_ref()
                ),
            );
            DEFAULT_DEAD_PAYLOAD_MAX
        }
    }
}

/// Queue names become part of Redis keys inside a `{hash tag}`, so braces and
/// whitespace would break the key layout; returns what is wrong, if anything.
#[must_use]
pub fn check_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 128 {
        Some("is longer than 128 characters")
    } else if name
        .chars()
        .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
    {
        Some("may not contain braces, whitespace or control characters")
    } else {
        None
    }
}
