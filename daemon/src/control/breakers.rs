//! Circuit breakers, as an operator sees and overrides them: the list
//! `ward breakers` prints, and forcing one open (an upstream known to be
//! down) or closed (known to be back) ahead of what the breaker counted.
//! Daemons pick an override up at their next refresh (twice a second).

use std::time::Duration;

use crate::store::{BreakerForced, Queue, QueueError};

use super::audit::{self, Action, Actor};

/// One breaker as `ward breakers` and the admin API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakerLine {
    /// The queue.
    pub queue: String,
    /// The upstream.
    pub upstream: String,
    /// `open` or `closed`.
    pub state: &'static str,
    /// Failures counted in the current window.
    pub failures: u32,
    /// For an open breaker: how long it stays open, ms.
    pub open_for_ms: Option<u64>,
    /// Times it opened (within the life of its Redis hash).
    pub openings: u32,
}

/// The breakers of queue `q` that have counted anything, by upstream.
///
/// # Errors
/// Redis errors.
pub async fn list(q: &Queue) -> Result<Vec<BreakerLine>, QueueError> {
    let (now, states) = q.breakers().await?;
    Ok(states
        .into_iter()
        .map(|b| {
            let open = b.open_until_ms > now;
            BreakerLine {
                queue: q.keys.queue.clone(),
                upstream: b.upstream,
                state: if open { "open" } else { "closed" },
                failures: b.failures,
                open_for_ms: open.then(|| b.open_until_ms - now),
                openings: b.openings,
            }
        })
        .collect())
}

/// What an operator forces a breaker to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// Open for this long: jobs that need the upstream wait, no attempt spent.
    Open(Duration),
    /// Closed, its failures forgotten: jobs that need the upstream run again.
    Close,
}

/// Forces `upstream`'s breaker of queue `q` open or closed, and puts it on
/// the audit trail (count 1 when the state changed, 0 when it already was).
///
/// # Errors
/// Redis errors.
pub async fn force(
    q: &Queue,
    actor: &Actor,
    upstream: &str,
    how: Override,
    note: &str,
) -> Result<BreakerForced, QueueError> {
    let open_for = match how {
        Override::Open(d) => Some(d),
        Override::Close => None,
    };
    let forced = q
        .breaker_force(upstream, open_for, &actor.name, note)
        .await?;
    let (action, changed) = match how {
        Override::Open(_) => ("breaker-open", true),
        Override::Close => ("breaker-close", forced.was_open),
    };
    let detail = open_for.map(
        |d| serde_json::json!({ "open_for_ms": u64::try_from(d.as_millis()).unwrap_or(u64::MAX) }),
    );
    audit::record(
        &q.store(),
        actor,
        Action {
            action,
            queue: &q.keys.queue,
            target: format!("upstream {upstream}"),
            count: u64::from(changed),
            note,
            detail,
        },
    )
    .await?;
    Ok(forced)
}
