//! Applying finished attempts: one APPLY script per batch, and the encoder
//! that is the only writer of its keys and arguments.
//!
//! The layout is declared once (in `layout.rs`), as enums whose variants
//! are the fields in order. The script receives it as generated Lua tables (field
//! name → position), so a position is never written in `apply.lua`; a test
//! checks that the script reads only names the layout has.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

mod layout;

use self::layout::{
    BatchKey, CompletionKey, FollowOnArg, Fresh, FreshKey, Full, Head, LAYOUTS, Layout, QueueKey,
};
use super::batches::BATCH_LUA;
use super::pause::PAUSED_LUA;
use super::script::{Call, script};
use super::{GROUP, Keys, MAX_HISTORY, Queue, QueueError, RETIRED_TTL};
use crate::job::Outcome;
use crate::transition::{Completion, Deferral, Transition};

/// Most acknowledged entries left in a stream for the next trim; past it,
/// entries are deleted as they are acknowledged (see the APPLY script).
const MAX_ACKED_LEFT: usize = 100_000;
/// Longest failure message kept in a history entry.
const MAX_HISTORY_MESSAGE: usize = 512;

/// The script's source, without the shared preamble.
const APPLY: &str = include_str!("../lua/apply.lua");
/// Its helper that enqueues a success's follow-on jobs.
const FOLLOW_ON_LUA: &str = include_str!("../lua/follow_on.lua");

static APPLY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    let layout: String = LAYOUTS.iter().map(Layout::lua).collect();
    script(
        &format!("{layout}{PAUSED_LUA}{BATCH_LUA}{FOLLOW_ON_LUA}"),
        APPLY,
    )
});

/// One argument: bytes, borrowed from the completion where they can be, or
/// a number, written straight into the command (several per completion, on
/// the hot path: formatting each into a string first costs an allocation).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg<'a> {
    Bytes(Cow<'a, [u8]>),
    Number(u64),
}

impl Default for Arg<'_> {
    fn default() -> Self {
        Arg::Bytes(Cow::Borrowed(b""))
    }
}

impl Arg<'_> {
    /// The argument as Redis receives it.
    #[cfg(test)]
    fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Arg::Bytes(b) => Cow::Borrowed(b),
            Arg::Number(n) => Cow::Owned(n.to_string().into_bytes()),
        }
    }
}

fn text(s: &str) -> Arg<'_> {
    Arg::Bytes(Cow::Borrowed(s.as_bytes()))
}

fn bytes(b: &[u8]) -> Arg<'_> {
    Arg::Bytes(Cow::Borrowed(b))
}

fn number<'a>(n: impl TryInto<u64>) -> Arg<'a> {
    Arg::Number(n.try_into().unwrap_or(u64::MAX))
}

fn owned<'a>(s: String) -> Arg<'a> {
    Arg::Bytes(Cow::Owned(s.into_bytes()))
}

fn millis<'a>(d: Duration) -> Arg<'a> {
    number(delay_ms(d))
}

/// `d` in whole ms, as records and history lines state delays.
fn delay_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// APPLY's keys and arguments for one batch, in the layout above.
#[derive(Debug)]
struct Encoder<'a> {
    keys: Vec<String>,
    args: Vec<Arg<'a>>,
    /// The batch's distinct plugin digests: nearly every completion of a
    /// batch ran the same plugin, so each is sent once and referred to by
    /// its position (from 1).
    digests: Vec<&'a str>,
    /// The distinct batches the completions belong to, each referred to by
    /// its position (from 1; 0 for none); their keys ([`BatchKey`]) follow
    /// the queue's in KEYS.
    batches: Vec<&'a str>,
}

impl<'a> Encoder<'a> {
    /// Encodes `batch` for the queue of `keys`.
    fn batch(keys: &Keys, succeeded_ttl: Duration, batch: &'a [Completion]) -> Encoder<'a> {
        let mut digests: Vec<&str> = Vec::new();
        for c in batch {
            if !digests.contains(&c.plugin_digest()) {
                digests.push(c.plugin_digest());
            }
        }
        let mut batches: Vec<&str> = Vec::new();
        for c in batch {
            if let Some(b) = batch_of(c)
                && !batches.contains(&b)
            {
                batches.push(b);
            }
        }
        let mut q: [String; QueueKey::N] = Default::default();
        q[QueueKey::Jobs.at()].clone_from(&keys.jobs);
        q[QueueKey::Dead.at()].clone_from(&keys.dead);
        q[QueueKey::Delayed.at()].clone_from(&keys.delayed);
        q[QueueKey::Acked.at()].clone_from(&keys.acked);
        q[QueueKey::Cancels.at()].clone_from(&keys.cancels);
        q[QueueKey::Held.at()].clone_from(&keys.held);
        q[QueueKey::Paused.at()].clone_from(&keys.paused);
        q[QueueKey::JobsHigh.at()].clone_from(&keys.jobs_high);
        q[QueueKey::JobsLow.at()].clone_from(&keys.jobs_low);
        q[QueueKey::BatchesUnfinished.at()].clone_from(&keys.batches_unfinished);
        q[QueueKey::Progress.at()].clone_from(&keys.progress);
        let mut h: [Arg; Head::N] = Default::default();
        h[Head::Group.at()] = text(GROUP);
        h[Head::Ttl.at()] = number(succeeded_ttl.as_secs());
        h[Head::Queue.at()] = owned(keys.queue.clone());
        h[Head::HistoryMax.at()] = number(MAX_HISTORY);
        h[Head::Wake.at()] = owned(keys.wake.clone());
        h[Head::AckedMax.at()] = number(MAX_ACKED_LEFT);
        h[Head::RetiredTtl.at()] = number(RETIRED_TTL.as_secs());
        h[Head::Batches.at()] = number(batches.len());
        h[Head::Digests.at()] = number(digests.len());
        let mut e = Encoder {
            keys: Vec::with_capacity(
                QueueKey::N + BatchKey::N * batches.len() + CompletionKey::N * batch.len(),
            ),
            args: Vec::with_capacity(Head::N + digests.len() + (Full::N + 1) * batch.len()),
            digests,
            batches,
        };
        e.keys.extend(q);
        for b in &e.batches {
            let (ledger, failed) = keys.batch(b);
            let mut k: [String; BatchKey::N] = Default::default();
            k[BatchKey::Ledger.at()] = ledger;
            k[BatchKey::Failed.at()] = failed;
            e.keys.extend(k);
        }
        e.args.extend(h);
        e.args.extend(e.digests.iter().map(|d| text(d)));
        for c in batch {
            if is_plain_fresh(c) {
                e.fresh(keys, c);
            } else {
                e.full(keys, c);
            }
        }
        e
    }

    /// The keys of completion `c` whose record is `id`'s: its record, its
    /// history, its idempotency key (if it has one). A fresh success
    /// writes no history (its record tells its one line, see
    /// `Queue::job_status`): its keys are [`FreshKey`]'s instead.
    fn keys(&mut self, keys: &Keys, id: &str, c: &Completion, fresh: bool) {
        if fresh {
            let mut k: [String; FreshKey::N] = Default::default();
            k[FreshKey::Record.at()] = keys.record(id);
            let n = match key_of(c) {
                Some(key) => {
                    k[FreshKey::Idem.at()] = keys.idempotency(key);
                    FreshKey::N
                }
                None => FreshKey::Record.at() + 1,
            };
            self.keys.extend(k.into_iter().take(n));
            return;
        }
        let n = match key_of(c) {
            Some(_) => CompletionKey::N,
            None => CompletionKey::History.at() + 1,
        };
        let mut k: [String; CompletionKey::N] = Default::default();
        k[CompletionKey::Record.at()] = keys.record(id);
        if n > CompletionKey::History.at() {
            k[CompletionKey::History.at()] = keys.history(id);
        }
        if let Some(key) = key_of(c) {
            k[CompletionKey::Idem.at()] = keys.idempotency(key);
        }
        self.keys.extend(k.into_iter().take(n));
    }

    /// The position (from 1) of `c`'s batch among the encoded batches; 0
    /// when it belongs to none.
    fn batch_index(&self, c: &Completion) -> usize {
        batch_of(c)
            .and_then(|b| self.batches.iter().position(|x| *x == b))
            .map_or(0, |k| k + 1)
    }

    /// A first delivery that succeeded at once: the common case, kept short.
    fn fresh(&mut self, keys: &Keys, c: &'a Completion) {
        self.keys(keys, c.entry_id(), c, true);
        let digest = self
            .digests
            .iter()
            .position(|d| *d == c.plugin_digest())
            .map_or(0, |k| k + 1);
        let mut f: [Arg; Fresh::N] = Default::default();
        f[Fresh::Entry.at()] = text(c.entry_id());
        f[Fresh::Job.at()] = text(c.job());
        f[Fresh::FirstAt.at()] = number(c.first_at_ms());
        f[Fresh::Finished.at()] = number(c.finished_ms());
        f[Fresh::Plugin.at()] = number(digest);
        f[Fresh::Result.at()] = bytes(c.kept_result().map_or(&b""[..], |(r, _)| r));
        f[Fresh::Batch.at()] = number(self.batch_index(c));
        let n = match key_of(c) {
            Some(key) => {
                f[Fresh::Idem.at()] = text(key);
                f[Fresh::IdemTtl.at()] = millis(c.idempotency_ttl());
                f[Fresh::ResultDigest.at()] = owned(result_digest(c.outcome()));
                Fresh::N
            }
            None => Fresh::Idem.at() + 1,
        };
        self.args.push(text("f"));
        self.args.extend(f.into_iter().take(n));
    }

    /// Every other completion.
    fn full(&mut self, keys: &Keys, c: &'a Completion) {
        self.keys(keys, c.job_id(), c, false);
        // A deferral is a retry that spent no attempt: the completion
        // already carries the attempt before it.
        let (kind, reason) = match c.transition() {
            Transition::Succeed => ("ok", ""),
            Transition::Defer {
                why: Deferral::Paused { .. } | Deferral::BatchPaused { .. },
                ..
            } => ("hold", ""),
            Transition::Retry { .. } | Transition::Defer { .. } => ("retry", ""),
            Transition::DeadLetter(r) => ("dead", r.as_str()),
            Transition::Duplicate { of } => ("dup", of.as_deref().unwrap_or(c.job_id())),
            Transition::Cancel { .. } => ("cancel", ""),
        };
        let mut f: [Arg; Full::N] = Default::default();
        if let Outcome::Failure(e) = c.outcome() {
            f[Full::Class.at()] = text(e.class.as_str());
            f[Full::Code.at()] = text(e.code.as_deref().unwrap_or(""));
            f[Full::Message.at()] = text(&e.message);
            f[Full::Upstream.at()] = text(e.upstream.as_deref().unwrap_or(""));
        }
        f[Full::Entry.at()] = text(c.entry_id());
        f[Full::Id.at()] = text(c.job_id());
        f[Full::Job.at()] = text(c.job());
        f[Full::Attempt.at()] = number(c.attempt());
        f[Full::Finished.at()] = number(c.finished_ms());
        // A success does not need the payload any more; skip sending it.
        if !matches!(c.transition(), Transition::Succeed) {
            f[Full::Payload.at()] = bytes(c.payload());
        }
        let succeeded = matches!(c.transition(), Transition::Succeed);
        if let Some((result, note)) = c.kept_result() {
            f[Full::Result.at()] = bytes(result);
            if let Some(note) = note {
                f[Full::ResultNote.at()] = owned(note);
            }
        }
        f[Full::ResultTtl.at()] = number(c.results().ttl.map_or(0, |t| t.as_secs()));
        f[Full::Reason.at()] = text(reason);
        f[Full::Plugin.at()] = text(c.plugin_digest());
        f[Full::HasCheckpoint.at()] = text(if c.checkpoint().is_some() { "1" } else { "0" });
        f[Full::Checkpoint.at()] = bytes(c.checkpoint().unwrap_or(b""));
        f[Full::FirstAt.at()] = number(c.first_at_ms());
        f[Full::Delay.at()] = number(c.transition().delay().map_or(0, delay_ms));
        f[Full::History.at()] = owned(history_entry(c));
        if let Some(key) = key_of(c) {
            f[Full::Idem.at()] = text(key);
            f[Full::ResultDigest.at()] = owned(result_digest(c.outcome()));
        }
        f[Full::IdemTtl.at()] = millis(c.idempotency_ttl());
        f[Full::LeaseExpiries.at()] = number(c.lease_expiries());
        if let Transition::DeadLetter(_) = c.transition() {
            f[Full::DeadPayload.at()] = bytes(c.dead_payload());
        }
        f[Full::Batch.at()] = number(self.batch_index(c));
        // Only a success enqueues its follow-ons.
        let follow_ons = if succeeded { &c.follow_ons[..] } else { &[] };
        f[Full::FollowOns.at()] = number(follow_ons.len());
        f[Full::Extras.at()] = number(c.extra().len());
        self.args.push(text(kind));
        self.args.extend(f);
        for (k, v) in c.extra() {
            self.args.push(text(k));
            self.args.push(bytes(v));
        }
        for (k, fo) in follow_ons.iter().enumerate() {
            let mut a: [Arg; FollowOnArg::N] = Default::default();
            a[FollowOnArg::Job.at()] = text(&fo.job_type);
            a[FollowOnArg::Payload.at()] = bytes(&fo.payload);
            a[FollowOnArg::Key.at()] = owned(fo.key_for(c.job_id(), k));
            a[FollowOnArg::Batch.at()] = text(fo.batch.as_deref().unwrap_or(""));
            self.args.extend(a);
        }
    }
}

/// Whether `c` takes the short path of a first delivery that succeeded at
/// once: nothing beyond the common case (no follow-on jobs, no result TTL of
/// its own, no note on a result too large to keep), which keeps that path
/// as it was for job types that use none of these.
fn is_plain_fresh(c: &Completion) -> bool {
    matches!(c.transition(), Transition::Succeed)
        && c.is_fresh()
        && c.follow_ons.is_empty()
        && c.results().ttl.is_none()
        && c.kept_result().is_none_or(|(_, note)| note.is_none())
}

/// The batch completion `c`'s job is a member of (see [`Completion::batch`]).
fn batch_of(c: &Completion) -> Option<&str> {
    c.batch()
}

/// The completion's idempotency key as APPLY sees it: the script tells a
/// keyed completion by a key that is not empty, so an empty one is none
/// here too, or the two would read the arguments differently.
fn key_of(c: &Completion) -> Option<&str> {
    c.idempotency_key().filter(|k| !k.is_empty())
}

impl Queue {
    /// Applies a batch of finished attempts in one round trip; returns, per
    /// completion, whether it took effect (a delivery that was already
    /// acknowledged, by another daemon or by an earlier send of this batch,
    /// is skipped), and which were dead-lettered as unrecordable instead.
    ///
    /// # Errors
    /// Redis errors; the batch can then be re-sent as it is.
    pub async fn apply(&self, batch: &[Completion]) -> Result<Applied, QueueError> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        let encoded = Encoder::batch(&self.keys, self.succeeded_ttl, batch);
        let bytes: usize = encoded.keys.iter().map(|k| k.len() + 8).sum::<usize>()
            + encoded
                .args
                .iter()
                .map(|a| match a {
                    Arg::Bytes(b) => b.len() + 8,
                    Arg::Number(_) => 28,
                })
                .sum::<usize>();
        let mut call = Call::new(&APPLY_SCRIPT, encoded.keys.len(), encoded.args.len(), bytes);
        for k in &encoded.keys {
            call.arg(k);
        }
        for a in &encoded.args {
            match a {
                Arg::Bytes(b) => call.arg(&**b),
                Arg::Number(n) => call.arg(*n),
            };
        }
        let mut con = self.con.clone();
        let reply: Vec<String> = call.invoke(&mut con).await?;
        let (took, unrecordable) = reply
            .split_first()
            .map_or(("", &[][..]), |(t, u)| (t.as_str(), u));
        for line in unrecordable {
            let (job_id, why) = line.split_once(' ').unwrap_or((line, ""));
            tracing::error!(queue = %self.keys.queue, job_id, error = why, "Redis refused to record an outcome; the job was dead-lettered with reason `unrecordable` instead");
        }
        if took.len() != batch.len() {
            return Err(QueueError::Protocol {
                what: "apply",
                detail: format!("{} flags for {} completions", took.len(), batch.len()),
            });
        }
        Ok(Applied::read(took, unrecordable))
    }
}

/// What [`Queue::apply`] made of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Per completion, whether its outcome took effect.
    pub took: Vec<bool>,
    /// The completions (by position in the batch) whose outcome Redis
    /// refused after their acknowledgement, each dead-lettered as
    /// `unrecordable` instead, with Redis' words.
    pub unrecordable: Vec<(usize, String)>,
}

impl Applied {
    /// The script's reply: a flag per completion (`1` took effect, `0`
    /// skipped, `e` unrecordable), then one `<job id> <why>` line per `e`,
    /// in order.
    fn read(flags: &str, lines: &[String]) -> Applied {
        let mut whys = lines
            .iter()
            .map(|l| l.split_once(' ').map_or("", |(_, why)| why));
        let mut unrecordable = Vec::new();
        for (i, flag) in flags.bytes().enumerate() {
            if flag == b'e' {
                unrecordable.push((i, whys.next().unwrap_or("").to_string()));
            }
        }
        Applied {
            // 'e' is not the outcome the completion asked for, so it is not
            // counted as one.
            took: flags.bytes().map(|b| b == b'1').collect(),
            unrecordable,
        }
    }
}

/// sha256 of a success's result bytes, hex; empty for a failure.
fn result_digest(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success(out) => crate::digest::sha256_hex(out),
        Outcome::Failure(_) => String::new(),
    }
}

/// One line of a job's history, as JSON.
fn history_entry(c: &Completion) -> String {
    let mut v = serde_json::json!({
        "attempt": c.attempt(),
        "finished_at": c.finished_ms(),
    });
    if c.started_ms() > 0 {
        v["started_at"] = c.started_ms().into();
    }
    match c.outcome() {
        Outcome::Success(_) => v["class"] = "success".into(),
        Outcome::Failure(f) => {
            let mut message = f.message.clone();
            crate::cut::truncate(&mut message, MAX_HISTORY_MESSAGE);
            v["class"] = f.class.as_str().into();
            v["message"] = message.into();
            if let Some(code) = &f.code {
                v["code"] = code.as_str().into();
            }
            if let Some(upstream) = &f.upstream {
                v["upstream"] = upstream.as_str().into();
            }
        }
    }
    match c.transition() {
        Transition::Succeed => v["then"] = "succeeded".into(),
        // Held while paused: no attempt; its line reads as an event.
        Transition::Defer {
            why: Deferral::Paused { queue },
            ..
        } => {
            v = serde_json::json!({
                "event": "held",
                "at": c.finished_ms(),
                "why": if *queue { "queue paused" } else { "job type paused" },
            });
        }
        Transition::Defer {
            why: Deferral::BatchPaused { batch },
            ..
        } => {
            v = serde_json::json!({
                "event": "held",
                "at": c.finished_ms(),
                "why": format!("batch {batch} paused"),
            });
        }
        // A deferral's line reads as a retry's; its failure says why.
        Transition::Retry { delay } | Transition::Defer { delay, .. } => {
            v["then"] = "retry".into();
            v["delay_ms"] = delay_ms(*delay).into();
        }
        Transition::DeadLetter(reason) => {
            v["then"] = "dead".into();
            v["reason"] = reason.as_str().into();
        }
        Transition::Cancel { ran } => {
            v["then"] = "cancelled".into();
            if !ran {
                v["event"] = "not run".into();
            }
        }
        Transition::Duplicate { of } => {
            v["event"] = "duplicate".into();
            v["class"] = "duplicate".into();
            v["of"] = of.as_deref().unwrap_or(c.job_id()).into();
            v["then"] = "acknowledged without running".into();
        }
    }
    let digest = c.plugin_digest();
    if !digest.is_empty() {
        v["plugin"] = digest.get(..12).unwrap_or(digest).into();
    }
    v.to_string()
}

#[cfg(test)]
mod tests;
