//! One daemon of the fleet sends a fleet-wide alert: the queues this
//! daemon serves, registered as it starts them, and the claim taken in
//! Redis before such an alert goes out (see `store/alert_claim.rs`).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use super::Alert;
use crate::store::Queue;

static QUEUES: LazyLock<Mutex<HashMap<String, Queue>>> = LazyLock::new(Mutex::default);

/// This process's name in alert claims: unique per daemon (several may run
/// on one host, and a restarted one is another).
static OWNER: LazyLock<String> =
    LazyLock::new(|| format!("{}-{:016x}", std::process::id(), rand::random::<u64>()));

/// Makes `queue`'s fleet-wide alerts go through its claim. Before this
/// (Redis not reached yet), they are sent unclaimed.
pub fn register_queue(queue: Queue) {
    let mut map = QUEUES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.insert(queue.keys.queue.clone(), queue);
}

/// Whether this daemon sends `alert`: always for a kind only it can see;
/// for a fleet-wide one, when it holds the alert's claim for `cooldown`.
/// When Redis cannot say, it sends (a duplicate beats a lost alert).
pub(super) async fn may_send(alert: &Alert, cooldown: Duration) -> bool {
    if !alert.kind.fleet_wide() {
        return true;
    }
    let queue = QUEUES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&alert.queue)
        .cloned();
    let Some(queue) = queue else { return true };
    let kind = if alert.escalated {
        format!("{}:escalated", alert.kind.as_str())
    } else {
        alert.kind.as_str().to_string()
    };
    match queue.claim_alert(&kind, &alert.job, &OWNER, cooldown).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(kind = alert.kind.as_str(), queue = %alert.queue, error = %e, "cannot claim a fleet-wide alert in Redis; sending it anyway");
            true
        }
    }
}
