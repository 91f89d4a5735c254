//! systemd's side of the daemon (`Type=notify`): `READY=1` once Redis
//! answers, Ward's function library is loaded and every plugin is compiled;
//! `STATUS=` with the attempts in flight; `WATCHDOG=1` only while every
//! queue's reader goes round its loop; `STOPPING=1` at shutdown. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing.
//!
//! The watchdog pings come from the work itself: each reader marks a
//! [`Beat`] every time round its loop (and at least once a second while it
//! waits for a free slot or a resume), and the pinger pings only when every
//! beat is younger than the watchdog interval (or 4 s, whichever is longer:
//! an idle reader waits up to 2 s in a blocking read between beats). A reader that hangs (a
//! deadlock, a blocking call on the runtime) stops the pings, and systemd
//! restarts the daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::shutdown::Shutdown;

/// How often a reader waiting for room or for a resume still beats.
pub(crate) const BEAT_WHILE_WAITING: Duration = Duration::from_secs(1);

/// The shortest silence that counts as a hung reader: an idle reader sits
/// in a blocking read of [`super::reader::BLOCK`] between two beats, so a
/// watchdog shorter than twice that still waits this long.
const STALL_MIN: Duration = Duration::from_secs(4);

/// When a reader last went round its loop.
#[derive(Debug)]
pub(crate) struct Beat {
    origin: Instant,
    /// Milliseconds after `origin`.
    last_ms: AtomicU64,
}

impl Beat {
    fn new(origin: Instant) -> Beat {
        let beat = Beat {
            origin,
            last_ms: AtomicU64::new(0),
        };
        beat.now();
        beat
    }

    /// The reader is alive now.
    pub(crate) fn now(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The daemon's conversation with systemd.
pub(crate) struct Systemd {
    /// `WatchdogSec=`, when the unit sets one (and it is for this process).
    watchdog: Option<Duration>,
    origin: Instant,
    beats: Mutex<Vec<(String, Arc<Beat>)>>,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET`'s companions: whether a watchdog is wanted.
    pub(crate) fn from_env() -> Arc<Systemd> {
        let watchdog = sd_notify::watchdog_enabled();
        Arc::new(Systemd {
            watchdog,
            origin: Instant::now(),
            beats: Mutex::new(Vec::new()),
        })
    }

    /// A new beat, for queue `queue`'s reader.
    pub(crate) fn beat_for(&self, queue: &str) -> Arc<Beat> {
        let beat = Arc::new(Beat::new(self.origin));
        if let Ok(mut beats) = self.beats.lock() {
            beats.push((queue.to_string(), beat.clone()));
        }
        beat
    }

    /// Every queue consumes: `READY=1`.
    pub(crate) fn ready(&self) {
        notify(&[NotifyState::Ready, NotifyState::Status(&status())]);
    }

    /// A live reload begins: `RELOADING=1` with the monotonic time systemd
    /// asks for beside it; [`Systemd::ready`] ends it.
    pub(crate) fn reloading(&self) {
        let mut states = vec![
            NotifyState::Reloading,
            NotifyState::Status("reloading the config"),
        ];
        match NotifyState::monotonic_usec_now() {
            Ok(now) => states.push(now),
            Err(e) => tracing::debug!(error = %e, "cannot read the monotonic clock for systemd"),
        }
        notify(&states);
    }

    /// Shutdown has begun: `STOPPING=1`.
    pub(crate) fn stopping(&self) {
        notify(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: no new leases; finishing the attempts in flight"),
        ]);
    }

    /// Pings the watchdog while every reader is alive, and keeps `STATUS=`
    /// current, until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, mut stop: Shutdown) {
        // Twice per watchdog interval, as systemd advises; a few seconds for
        // the status alone.
        let every = self.watchdog.map_or(Duration::from_secs(5), |w| {
            (w / 2).max(Duration::from_millis(50))
        });
        let mut reported_stall = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.recv() => return,
            }
            let Some(limit) = self.watchdog else {
                notify(&[NotifyState::Status(&status())]);
                continue;
            };
            match self.stalled(limit.max(STALL_MIN)) {
                None => {
                    reported_stall = false;
                    notify(&[NotifyState::Watchdog, NotifyState::Status(&status())]);
                }
                Some((queue, age)) if !reported_stall => {
                    reported_stall = true;
                    tracing::error!(
                        queue,
                        stalled_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                        "a queue's reader has not gone round its loop within the watchdog interval; no more watchdog pings (systemd restarts the daemon)"
                    );
                }
                Some(_) => {}
            }
        }
    }

    /// The first reader whose last beat is older than `limit`, and its age.
    fn stalled(&self, limit: Duration) -> Option<(String, Duration)> {
        let beats = self.beats.lock().ok()?;
        beats
            .iter()
            .map(|(q, b)| (q.clone(), b.age()))
            .find(|(_, age)| *age > limit)
    }
}

/// What `systemctl status` shows.
fn status() -> String {
    format!(
        "running; {} attempts in flight",
        crate::obs::events::in_flight_total()
    )
}

/// Sends `state` to systemd; errors are logged, never fatal (a daemon
/// outside systemd has no socket, and that is fine).
fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_stops_beating_is_found_stalled() {
        let sd = Systemd {
            watchdog: Some(Duration::from_millis(40)),
            origin: Instant::now(),
            beats: Mutex::new(Vec::new()),
        };
        let a = sd.beat_for("a");
        let _b = sd.beat_for("b");
        assert_eq!(sd.stalled(Duration::from_millis(40)), None);
        std::thread::sleep(Duration::from_millis(60));
        a.now();
        let (queue, age) = sd.stalled(Duration::from_millis(40)).unwrap();
        assert_eq!(queue, "b");
        assert!(age >= Duration::from_millis(60), "{age:?}");
    }
}
