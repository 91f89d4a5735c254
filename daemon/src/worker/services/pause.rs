//! Keeps this daemon's view of its queue's pauses (`ward:{Q}:paused`)
//! fresh, releases held jobs when a pause ends, and ends pauses whose
//! `until` has passed.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::store::{AuditRecord, Pauses, Queue, WHOLE_QUEUE};

use super::Service;
use crate::worker::shutdown::Shutdown;

/// How often the pauses are read: a pause reaches every daemon within this
/// (plus one batch already leased), well inside the promised second.
pub(crate) const POLL: Duration = Duration::from_millis(250);
/// The audit trail's `via` for what a daemon does on its own.
const VIA_DAEMON: &str = "daemon";
/// How long a daemon waits before releasing the jobs of a pause it saw
/// end but did not end itself. The resume (or the daemon whose `--until`
/// ended it) releases them at once and reports how many; the others' release
/// is the backstop for a release cut short, and going in at once would
/// race it, leaving the resume and its audit entry to report a part.
pub(crate) const RELEASE_GRACE: Duration = Duration::from_secs(3);

/// Reads the queue's pauses every [`POLL`] and shares them (`view`) with
/// the reader, which stops leasing while the whole queue is paused, and
/// triage, which holds the jobs of paused types.
///
/// When a pause ends (removed by a resume, or its `until` passed) it
/// releases that pause's held jobs after [`RELEASE_GRACE`], as the resume
/// does: several releasers at once deliver each job once, and this makes a
/// resume whose own release was cut short finish all the same. At start it releases
/// whatever is held and no longer paused, for the same reason. A pause
/// whose `until` passed is removed by the first daemon that sees it (one
/// only, see [`Queue::end_expired_pause`]), which also puts the resume on
/// the audit trail.
pub(crate) struct PauseWatch {
    /// The queue whose pauses it reads.
    pub(crate) queue: Queue,
    /// Where the current pauses are published.
    pub(crate) view: watch::Sender<Pauses>,
    /// This daemon's consumer name, which the audit trail shows for a
    /// pause it ends.
    pub(crate) consumer: String,
}

/// A release for the releaser task to do.
struct Release {
    /// `*` or a job type.
    field: String,
    /// For a pause this daemon ended: its `until_ms`, to put on the audit
    /// trail with the number released.
    ended_until: Option<u64>,
}

impl Service for PauseWatch {
    async fn run(self, mut stop: Shutdown) {
        let (tx, rx) = mpsc::unbounded_channel();
        // Releasing a large held set takes many calls: it runs beside the
        // polls, so a new pause is seen meanwhile.
        let releaser = tokio::spawn(release_loop(self.queue.clone(), self.consumer.clone(), rx));
        let _ = tx.send(Release {
            field: WHOLE_QUEUE.to_string(),
            ended_until: None,
        });
        let mut seen = Seen::default();
        let mut failing = false;
        loop {
            match self.queue.pauses().await {
                Ok(p) => {
                    failing = false;
                    self.take(p, &mut seen, &tx).await;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(queue = %self.queue.keys.queue, error = %e, "cannot read the queue's pauses; keeping the last ones read");
                }
                Err(_) => {}
            }
            if !stop.sleep(POLL).await {
                break;
            }
        }
        // A release cut short here is finished by the next resume or start.
        releaser.abort();
    }
}

/// What the last read showed: the fields present, and those in force.
#[derive(Default)]
struct Seen {
    present: BTreeSet<String>,
    in_force: BTreeSet<String>,
}

impl PauseWatch {
    /// Publishes `p`, ends its pauses whose time is up, releases the jobs
    /// of pauses that ended since the last read, and sets the gauges.
    async fn take(&self, p: Pauses, seen: &mut Seen, tx: &mpsc::UnboundedSender<Release>) {
        let queue = &self.queue.keys.queue;
        let now = crate::clock::now_ms();
        for (field, until) in p.expired(now) {
            match self.queue.end_expired_pause(field, until).await {
                Ok(true) => {
                    tracing::info!(queue = %queue, paused = field, "pause ended: its --until passed; releasing its held jobs");
                    let _ = tx.send(Release {
                        field: field.to_string(),
                        ended_until: Some(until),
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(queue = %queue, paused = field, error = %e, "cannot end a pause whose --until passed; trying again");
                }
            }
        }
        let now_seen = Seen {
            present: p.0.keys().cloned().collect(),
            in_force: p
                .0
                .iter()
                .filter(|(_, x)| x.in_force(now))
                .map(|(f, _)| f.clone())
                .collect(),
        };
        let ended: BTreeSet<&String> = seen
            .in_force
            .difference(&now_seen.in_force)
            .chain(seen.present.difference(&now_seen.present))
            .collect();
        for field in ended {
            crate::obs::events::paused_state(queue, field, false);
            tracing::info!(queue = %queue, paused = %field, "resumed");
            let (tx, field) = (tx.clone(), field.clone());
            // Dropped unsent when the daemon stops first: the next resume
            // or start releases them.
            tokio::spawn(async move {
                tokio::time::sleep(RELEASE_GRACE).await;
                let _ = tx.send(Release {
                    field,
                    ended_until: None,
                });
            });
        }
        for field in now_seen.in_force.difference(&seen.in_force) {
            crate::obs::events::paused_state(queue, field, true);
            tracing::info!(queue = %queue, paused = %field, "paused: its jobs are held until a resume");
        }
        *seen = now_seen;
        self.view.send_if_modified(|v| {
            let changed = *v != p;
            *v = p;
            changed
        });
    }
}

/// Does the releases sent on `rx`, one after the other, until the sender
/// is gone.
async fn release_loop(queue: Queue, consumer: String, mut rx: mpsc::UnboundedReceiver<Release>) {
    let name = &queue.keys.queue;
    while let Some(r) = rx.recv().await {
        let released = match queue.release_held(&r.field).await {
            Ok(done) => {
                if done.released > 0 {
                    tracing::info!(queue = %name, paused = %r.field, released = done.released, "released held jobs");
                }
                done.released
            }
            Err(e) => {
                tracing::warn!(queue = %name, paused = %r.field, error = %e, "cannot release held jobs; `ward resume` releases them");
                0
            }
        };
        let Some(until) = r.ended_until else {
            continue;
        };
        let record = AuditRecord {
            at_ms: crate::clock::now_ms(),
            by: consumer.clone(),
            via: VIA_DAEMON.to_string(),
            action: "resume".to_string(),
            queue: name.clone(),
            target: r.field.clone(),
            count: released,
            note: format!(
                "the pause's --until ({}) passed",
                crate::text::format_ms(until)
            ),
            ..AuditRecord::default()
        };
        if let Err(e) = queue.store().append_audit(&record).await {
            tracing::warn!(queue = %name, error = %e, "cannot put the end of a pause on the audit trail");
        }
    }
}
