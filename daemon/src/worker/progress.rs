//! Progress reports of running 0.2.0 plugins, written to their jobs'
//! records (`store::Queue::write_progress`) by one writer per queue.
//!
//! A plugin may report in a tight loop; Redis sees at most one write per
//! job per [`PROGRESS_EVERY`]: a report only replaces its job's entry in a
//! map (the last one wins), and the writer wakes on the first report after
//! a quiet spell, waits out the window, then writes every job's latest
//! report in one pipeline. Nothing here runs for a queue whose plugins
//! never report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::runtime::ProgressSink;
use crate::store::{ProgressReport, Queue};

/// The shortest time between two writes of one job's progress.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One queue's progress writer; attempts report to it through
/// [`ProgressSink`]. The writer task ends once every handle is dropped,
/// after writing what was reported last.
#[derive(Debug)]
pub(crate) struct ProgressWriter {
    /// Each job's latest report not written yet.
    latest: Arc<Mutex<HashMap<String, ProgressReport>>>,
    /// Wakes the writer (a full channel means it is awake already).
    wake: mpsc::Sender<()>,
}

impl ProgressWriter {
    /// Starts the writer of `queue`'s reports.
    pub(crate) fn start(queue: Queue) -> Arc<ProgressWriter> {
        let latest: Arc<Mutex<HashMap<String, ProgressReport>>> = Arc::default();
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let pending = latest.clone();
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                tokio::time::sleep(PROGRESS_EVERY).await;
                write(&queue, &pending).await;
            }
            write(&queue, &pending).await;
        });
        Arc::new(ProgressWriter { latest, wake })
    }
}

/// Writes and forgets every report waiting in `pending`.
async fn write(queue: &Queue, pending: &Mutex<HashMap<String, ProgressReport>>) {
    let reports: Vec<ProgressReport> = match pending.lock() {
        Ok(mut map) => map.drain().map(|(_, r)| r).collect(),
        Err(_) => return,
    };
    if let Err(e) = queue.write_progress(&reports).await {
        // Progress is shown, never acted on: a lost report is replaced by
        // the next one, and the attempt goes on.
        tracing::warn!(queue = %queue.keys.queue, reports = reports.len(), error = %e, "cannot write progress reports");
    }
}

impl ProgressSink for ProgressWriter {
    fn report(&self, job_id: &str, attempt: u32, percent: u8, message: String) {
        let report = ProgressReport {
            job_id: job_id.to_string(),
            attempt,
            percent,
            message,
            at_ms: crate::clock::now_ms(),
        };
        if let Ok(mut map) = self.latest.lock() {
            map.insert(report.job_id.clone(), report);
        }
        // Full: a wake is pending already, and it will see this report.
        let _ = self.wake.try_send(());
    }
}
