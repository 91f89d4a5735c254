//! Applies a queue's dead-letter retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::DeadLetterConfig;
use crate::store::{self, Queue};

use super::Service;
use crate::worker::shutdown::Shutdown;

/// Most dead letters one retention call removes per limit; a larger
/// backlog is worked off by further calls straight away.
const MAX_TRIM: usize = 1000;
/// After new dead letters are written, retention runs this much later (or
/// at its interval, if sooner): soon, but at most about once a second
/// however fast jobs die.
const TRIM_AFTER_DEAD: Duration = Duration::from_secs(1);

/// Applies a queue's dead-letter retention (`dead_max_len`, `dead_max_age`)
/// every `trim_interval`, and soon after new dead letters are written.
/// Retention is one script per call, so several daemons may run it at once.
pub(crate) struct Retention {
    /// The queue whose dead letters it trims.
    pub(crate) queue: Queue,
    /// The limits and how often to apply them.
    pub(crate) dead: DeadLetterConfig,
    /// Told by the completer when it has written dead letters.
    pub(crate) dead_written: Arc<Notify>,
}

impl Service for Retention {
    async fn run(self, mut stop: Shutdown) {
        let Retention {
            queue,
            dead,
            dead_written,
        } = self;
        tracing::info!(
            queue = %queue.keys.queue,
            max_len = ?dead.max_len,
            max_age = ?dead.max_age.map(humantime::format_duration),
            every = %humantime::format_duration(dead.trim_interval),
            "dead-letter retention on"
        );
        while !stop.is_shutdown() {
            trim_dead_letters(&queue, &dead).await;
            let after_dead = async {
                dead_written.notified().await;
                tokio::time::sleep(TRIM_AFTER_DEAD.min(dead.trim_interval)).await;
            };
            tokio::select! {
                () = tokio::time::sleep(dead.trim_interval) => {}
                () = after_dead => {}
                () = stop.recv() => {}
            }
        }
    }
}

/// One retention pass, calling the script until no limit is hit.
async fn trim_dead_letters(queue: &Queue, dead: &DeadLetterConfig) {
    let mut total = store::Trimmed::default();
    loop {
        match queue.trim_dead(dead.max_len, dead.max_age, MAX_TRIM).await {
            Ok(t) => {
                total.by_age += t.by_age;
                total.by_len += t.by_len;
                if !t.more {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?dead.trim_interval, "cannot apply dead-letter retention; retrying");
                break;
            }
        }
    }
    DeadLettersTrimmed {
        queue: &queue.keys.queue,
        count: total.by_age,
        by: "age",
    }
    .emit();
    DeadLettersTrimmed {
        queue: &queue.keys.queue,
        count: total.by_len,
        by: "len",
    }
    .emit();
}

/// Dead letters removed by retention. Never silent: one info line per
/// pass and limit that removed any. (Not counted in a metric; this is
/// where `ward_dead_letters_trimmed_total{queue, by}` would be.)
struct DeadLettersTrimmed<'a> {
    /// The queue.
    queue: &'a str,
    /// Entries removed.
    count: usize,
    /// Which limit removed them: `len` (`dead_max_len`) or `age` (`dead_max_age`).
    by: &'static str,
}

impl DeadLettersTrimmed<'_> {
    fn emit(&self) {
        if self.count > 0 {
            tracing::info!(
                queue = %self.queue,
                count = self.count,
                by = self.by,
                record_ttl_s = store::RETIRED_TTL.as_secs(),
                "trimmed dead letters"
            );
        }
    }
}
