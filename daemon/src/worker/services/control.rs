//! Hears of cancel requests and interrupts the attempts they concern.
//!
//! Every daemon of a queue subscribes to `ward:{Q}:control`; `ward job
//! cancel` publishes `cancel <id>` there when the job is running, so the
//! daemon running it interrupts the attempt within milliseconds. Pub/sub
//! loses messages across a reconnect, so the daemon also reads the requests
//! still open (`ward:{Q}:cancels`) every [`POLL`]: a request is acted on
//! within that even when its message was lost.
//!
//! It runs on a thread of its own, with its own connections, like the epoch
//! ticker: a plugin spinning in wasm holds a runtime worker, which then
//! polls the sockets only now and then (tokio looks at I/O every few dozen
//! task polls, and a busy plugin yields once per epoch tick), so a message
//! read there could wait hundreds of ms. From here, the cancel flag reaches
//! the spinning plugin's epoch callback within one tick.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::store::{ControlFeed, ControlMessage, Queue};
use crate::worker::cancels::Cancels;
use crate::worker::shutdown::Shutdown;

use super::Service;

/// How often the open cancel requests are read: the most a request waits
/// when its message was lost.
const POLL: Duration = Duration::from_secs(1);
/// After a subscription Redis refused: how long before the next try.
const RESUBSCRIBE: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// One queue's listener for control messages.
pub(crate) struct Control {
    /// The queue whose requests it reads.
    pub(crate) queue: Queue,
    /// The Redis URL, for the pub/sub connection.
    pub(crate) url: String,
    /// The requests known here and the attempts running here.
    pub(crate) cancels: Arc<Cancels>,
}

impl Service for Control {
    async fn run(self, stop: Shutdown) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let queue = self.queue.keys.queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ward-control-{queue}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(self.listen(stop)),
                    Err(e) => {
                        tracing::error!(queue = %self.queue.keys.queue, error = %e, "cannot start the control thread; running attempts cannot be cancelled");
                    }
                }
                let _ = done_tx.send(());
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(queue = %queue, error = %e, "cannot start the control thread; running attempts cannot be cancelled");
                return;
            }
        };
        // Resolves when the thread ends, by returning or by a panic.
        let _ = done_rx.await;
        if let Err(panic) = thread.join() {
            // Made this service's panic, which the supervisor reports.
            std::panic::resume_unwind(panic);
        }
    }
}

impl Control {
    /// The loop, on the control thread's own runtime and connections.
    async fn listen(self, mut stop: Shutdown) {
        let control = match crate::store::connect(&self.url, POLL).await {
            Ok(con) => Control {
                queue: self.queue.with_connection(con),
                ..self
            },
            // The shared connection then serves the poll; only slower.
            Err(_) => self,
        };
        control.serve(&mut stop).await;
    }

    async fn serve(&self, stop: &mut Shutdown) {
        let mut feed: Option<ControlFeed> = None;
        let mut backoff = RESUBSCRIBE;
        let mut next_subscribe = tokio::time::Instant::now();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.is_shutdown() {
            if feed.is_none() && tokio::time::Instant::now() >= next_subscribe {
                match ControlFeed::subscribe(&self.url, &self.queue.keys).await {
                    Ok(f) => {
                        backoff.reset();
                        feed = Some(f);
                        // Requests made while unsubscribed: read them now.
                        poll.reset_immediately();
                    }
                    Err(e) => {
                        let delay = backoff.next();
                        next_subscribe = tokio::time::Instant::now() + delay;
                        tracing::warn!(queue = %self.queue.keys.queue, error = %e, retry_in = ?delay, "cannot subscribe to control messages; cancel requests are read every second meanwhile");
                    }
                }
            }
            let message = async {
                match feed.as_mut() {
                    Some(f) => f.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = message => match m {
                    Some(m) => self.heard(m),
                    None => feed = None,
                },
                _ = poll.tick() => self.poll().await,
                () = stop.recv() => {}
            }
        }
    }

    /// Acts on one control message.
    fn heard(&self, message: ControlMessage) {
        match message {
            ControlMessage::Cancel(id) => {
                if self.cancels.request(&id) {
                    tracing::info!(queue = %self.queue.keys.queue, job_id = %id, "job cancelled; interrupting its attempt");
                }
            }
            // Pause and resume are read from Redis by whoever owns them.
            ControlMessage::Other(text) => {
                tracing::debug!(queue = %self.queue.keys.queue, message = %text, "control message");
            }
        }
    }

    /// Reads the open requests and acts on any this daemon missed.
    async fn poll(&self) {
        match self.queue.cancel_requests().await {
            Ok(ids) => {
                let missed = self.cancels.replace(ids);
                if missed > 0 {
                    tracing::info!(queue = %self.queue.keys.queue, attempts = missed, "interrupting cancelled attempts whose message was lost");
                }
            }
            Err(e) => {
                tracing::warn!(queue = %self.queue.keys.queue, error = %e, "cannot read cancel requests; trying again in a second");
            }
        }
    }
}
