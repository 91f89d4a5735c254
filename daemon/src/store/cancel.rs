//! Cancelling jobs: the one-job CANCEL script, the cancel requests of
//! running jobs (`ward:{Q}:cancels`), and the control channel daemons
//! subscribe to (`ward:{Q}:control`).

use std::sync::LazyLock;

use futures_util::StreamExt as _;

use super::batches::BATCH_LUA;
use super::script::script;
use super::wake::subscribed;
use super::{GROUP, Keys, MAX_HISTORY, Queue, QueueError, RETIRED_TTL};

static CANCEL_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(BATCH_LUA, include_str!("lua/cancel.lua")));
static REQUESTS_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/cancel_requests.lua")));

/// `ward:{Q}:held`: the jobs a pause holds back. The pause part of the
/// control work owns the name (in `keys.rs`); until then it is built here.
fn held_key(keys: &Keys) -> String {
    format!("ward:{{{}}}:held", keys.queue)
}

/// Most cancel requests a daemon reads per poll.
const MAX_REQUESTS: usize = 10_000;

/// What a cancel did to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting (`was`: `delayed`, `paused` or `queued`) and will
    /// never run.
    Now {
        /// Where it waited.
        was: String,
    },
    /// It was running: the request is recorded and announced, and the
    /// daemon running it interrupts the attempt. `new` is false when a
    /// request was already there.
    Requested {
        /// Whether this made the request (false: one was already there).
        new: bool,
    },
    /// It had already finished (`state`: succeeded, dead, discarded,
    /// cancelled): nothing changed.
    Finished {
        /// Its final state.
        state: String,
    },
    /// The queue has no such job (or nothing of it is left).
    Missing,
}

/// A message on a queue's control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// `cancel <id>`: job `id` was cancelled while running.
    Cancel(String),
    /// Anything else (`pause`, `resume`, ...), as it came.
    Other(String),
}

impl ControlMessage {
    /// Reads one message's text.
    #[must_use]
    pub fn parse(text: &str) -> ControlMessage {
        match text.split_once(' ') {
            Some(("cancel", id)) if !id.is_empty() => ControlMessage::Cancel(id.to_string()),
            _ => ControlMessage::Other(text.to_string()),
        }
    }
}

/// A subscription to one queue's control channel, on a connection of its own.
pub struct ControlFeed {
    pubsub: redis::aio::PubSub,
}

impl ControlFeed {
    /// Subscribes to the control channel of the queue with `keys` at `url`.
    ///
    /// # Errors
    /// Redis refused the connection or the subscription.
    pub async fn subscribe(url: &str, keys: &Keys) -> Result<ControlFeed, QueueError> {
        Ok(ControlFeed {
            pubsub: subscribed(url, &keys.control).await?,
        })
    }

    /// The next message; `None` once the connection is gone (then
    /// subscribe again).
    pub async fn next(&mut self) -> Option<ControlMessage> {
        let msg = self.pubsub.on_message().next().await?;
        let text: String = msg.get_payload().unwrap_or_default();
        Some(ControlMessage::parse(&text))
    }
}

impl Queue {
    /// Cancels job `id` on behalf of `by` with `note` (`""` for none), in
    /// one script: a delayed, paused or not yet delivered job is marked
    /// `cancelled` and never runs; a running one gets a cancel request in
    /// its record and in `ward:{Q}:cancels`, announced as `cancel <id>` on
    /// `ward:{Q}:control`; a finished one is left as it is.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn cancel_job(
        &self,
        id: &str,
        by: &str,
        note: &str,
    ) -> Result<Cancelled, QueueError> {
        let mut con = self.con.clone();
        let (status, detail): (String, String) = CANCEL_SCRIPT
            .key(&self.keys.jobs)
            .key(&self.keys.delayed)
            .key(held_key(&self.keys))
            .key(&self.keys.cancels)
            .key(self.keys.record(id))
            .key(self.keys.history(id))
            .key(&self.keys.jobs_high)
            .key(&self.keys.jobs_low)
            .arg(id)
            .arg(by)
            .arg(note)
            .arg(MAX_HISTORY)
            .arg(&self.keys.control)
            .arg(GROUP)
            .arg(RETIRED_TTL.as_secs())
            .invoke_async(&mut con)
            .await?;
        match status.as_str() {
            "cancelled" => Ok(Cancelled::Now { was: detail }),
            "requested" => Ok(Cancelled::Requested { new: detail == "1" }),
            "finished" => Ok(Cancelled::Finished { state: detail }),
            "missing" => Ok(Cancelled::Missing),
            _ => Err(QueueError::Protocol {
                what: "CANCEL",
                detail: format!("{status} {detail}"),
            }),
        }
    }

    /// The ids of the jobs with a cancel request whose attempt still runs
    /// somewhere; requests of jobs that ended meanwhile are dropped.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn cancel_requests(&self) -> Result<Vec<String>, QueueError> {
        let mut con = self.con.clone();
        let ids: Vec<String> = REQUESTS_SCRIPT
            .key(&self.keys.cancels)
            .key(&self.keys.jobs)
            .key(&self.keys.jobs_high)
            .key(&self.keys.jobs_low)
            .arg(&self.keys.record_prefix)
            .arg(GROUP)
            .arg(MAX_REQUESTS)
            .invoke_async(&mut con)
            .await?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_are_read_by_their_first_word() {
        assert_eq!(
            ControlMessage::parse("cancel 1-0"),
            ControlMessage::Cancel("1-0".into())
        );
        assert_eq!(
            ControlMessage::parse("cancel "),
            ControlMessage::Other("cancel ".into())
        );
        assert_eq!(
            ControlMessage::parse("pause"),
            ControlMessage::Other("pause".into())
        );
        assert_eq!(held_key(&Keys::new("q")), "ward:{q}:held");
    }
}
