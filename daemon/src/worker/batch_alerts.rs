//! The batch failure alert (`[alerts] batch_failure_ratio`): after a
//! batch of outcomes is recorded, each job batch that lost a member to the
//! dead-letter stream is read back from its ledger, and one
//! `batch_failures` alert event is raised when its dead share of the ended
//! members is at or over the ratio (with at least `batch_failure_min`
//! ended). The alert task groups and cools them down like the others.

use crate::obs::alerts::{self, AlertEvent};
use crate::obs::metrics::job_label;
use crate::store::Queue;
use crate::transition::{Completion, Transition};

/// Checks the batches of the dead letters among `batch` (those that took
/// effect, `took`). Reads only when a batch member died: the common case
/// costs nothing.
pub(crate) async fn check(queue: &Queue, batch: &[Completion], took: &[bool]) {
    let Some(rule) = alerts::batch_rule() else {
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for (c, took) in batch.iter().zip(took) {
        if !*took || !matches!(c.transition(), Transition::DeadLetter(_)) {
            continue;
        }
        let Some(b) = c.batch() else { continue };
        if seen.contains(&b) {
            continue;
        }
        seen.push(b);
        let ledger = match queue.batch(b).await {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(queue = %queue.keys.queue, batch = b, error = %e, "cannot read a batch's ledger for its failure alert");
                continue;
            }
        };
        let ended = ledger.succeeded + ledger.dead + ledger.cancelled;
        #[allow(
            clippy::cast_precision_loss,
            reason = "member counts are far below 2^52"
        )]
        let over = ledger.dead as f64 >= rule.ratio * ended as f64;
        if ended >= rule.min_ended && over {
            let q = &queue.keys.queue;
            alerts::raise(AlertEvent::batch_failures(
                q,
                &job_label(q, c.job()),
                c,
                b,
                ledger.dead,
                ended,
                &rule,
            ));
        }
    }
}
