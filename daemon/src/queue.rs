//! Every Redis operation Ward performs, as named operations.
//!
//! Nothing outside this module builds a Redis command. Operations that change
//! a job's state in more than one key run as one Lua script, so a crash
//! between two writes can neither lose a job nor deliver it twice:
//! [`Queue::apply`] acknowledges a whole batch of finished attempts in one
//! round trip, and each acknowledgement only takes effect if its delivery was
//! still pending (`XACK` returned 1), which makes a re-sent batch harmless.
//!
//! Keys (per queue `Q`, all sharing the hash tag `{Q}`):
//! - `ward:{Q}:jobs`: stream of ready deliveries, consumer group `ward`;
//! - `ward:{Q}:job:<id>`: hash, the job record;
//! - `ward:{Q}:dead`: stream of dead-letter entries.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, Value};

use crate::job::{DeadReason, JobState, Outcome};

/// The consumer group every Ward daemon of a queue joins.
pub const GROUP: &str = "ward";
/// How long the record of a succeeded job is kept unless its queue's
/// `succeeded_ttl` says otherwise.
pub const SUCCEEDED_TTL: Duration = Duration::from_secs(24 * 3600);
/// Results larger than this are not stored in the job record.
pub const MAX_STORED_RESULT: usize = 64 * 1024;
/// Most acknowledged entries left in a stream for the next trim; past it,
/// entries are deleted as they are acknowledged (see the APPLY script).
const MAX_ACKED_LEFT: usize = 100_000;
/// Extra (correlation) fields carried from an entry to its retries and dead letter.
const MAX_EXTRA_FIELDS: usize = 32;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis refused or failed a command.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Redis answered something Ward did not expect.
    #[error("unexpected reply from redis to {what}: {detail}")]
    Protocol {
        /// Which operation.
        what: &'static str,
        /// What came back.
        detail: String,
    },
}

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The queue's name.
    pub queue: String,
    /// `ward:{Q}:jobs`
    pub jobs: String,
    /// `ward:{Q}:dead`
    pub dead: String,
    /// `ward:{Q}:delayed`
    pub delayed: String,
    /// `ward:{Q}:wake`: pub/sub channel told of every new due time.
    pub wake: String,
    /// `ward:{Q}:seq`: counter for the ids of jobs that start delayed.
    pub seq: String,
    /// `ward:{Q}:acked`: how many acknowledged entries wait in the stream
    /// to be trimmed.
    pub acked: String,
    /// `ward:{Q}:breakers`: set of the upstreams that have a breaker hash
    /// `ward:{Q}:breaker:<upstream>`.
    pub breakers: String,
    /// `ward:{Q}:breaker:` (append an upstream): one circuit breaker's hash.
    pub breaker_prefix: String,
    /// `ward:{Q}:job:` (append a job id)
    pub record_prefix: String,
}

impl Keys {
    /// The keys of queue `queue`.
    #[must_use]
    pub fn new(queue: &str) -> Keys {
        Keys {
            queue: queue.to_string(),
            jobs: format!("ward:{{{queue}}}:jobs"),
            dead: format!("ward:{{{queue}}}:dead"),
            delayed: format!("ward:{{{queue}}}:delayed"),
            wake: format!("ward:{{{queue}}}:wake"),
            seq: format!("ward:{{{queue}}}:seq"),
            acked: format!("ward:{{{queue}}}:acked"),
            breakers: format!("ward:{{{queue}}}:breakers"),
            breaker_prefix: format!("ward:{{{queue}}}:breaker:"),
            record_prefix: format!("ward:{{{queue}}}:job:"),
        }
    }

    /// `ward:{Q}:job:<id>`
    #[must_use]
    pub fn record(&self, id: &str) -> String {
        format!("{}{id}", self.record_prefix)
    }
}

/// A raw stream entry as delivered by `XREADGROUP`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id.
    pub entry_id: String,
    /// Field/value pairs, as bytes.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A delivery read as a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEntry {
    /// The stream entry this attempt was delivered from.
    pub entry_id: String,
    /// The job's id: the `id` field, or the entry id for a first enqueue.
    pub id: String,
    /// Job type.
    pub job: String,
    /// Payload bytes (empty when the entry has no `payload` field).
    pub payload: Vec<u8>,
    /// 1-based attempt number of this delivery.
    pub attempt: u32,
    /// The idempotency key, from an `idempotency_key` field.
    pub idempotency_key: Option<String>,
    /// Checkpoint carried from the previous attempt.
    pub checkpoint: Option<Vec<u8>>,
    /// When the first attempt started (Unix ms); absent on a first delivery.
    pub first_at: Option<u64>,
    /// The delay chosen after the previous failure, in ms.
    pub last_delay_ms: Option<u64>,
    /// How many times an attempt of this job was lost with its worker.
    pub lease_expiries: u32,
    /// Other fields (correlation ids such as `user_id`), carried along.
    pub extra: Vec<(String, Vec<u8>)>,
}

/// Why an entry could not be read as a job, with what it did carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The stream entry.
    pub entry_id: String,
    /// What is wrong with it.
    pub why: String,
    /// The payload field, if there was one.
    pub payload: Vec<u8>,
    /// Every other field whose name is text, so nothing it carried is lost.
    pub extra: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    /// Reads the entry as a job.
    ///
    /// # Errors
    /// [`Malformed`] when the `job` field is missing or not UTF-8, or the
    /// `attempt` field is not a positive number.
    pub fn parse(self) -> Result<JobEntry, Malformed> {
        let mut id = None;
        let mut job = None;
        let mut payload = Vec::new();
        let mut attempt = None;
        let mut checkpoint = None;
        let mut first_at = None;
        let mut last_delay_ms = None;
        let mut lease_expiries = 0;
        let mut extra = Vec::new();
        let mut problems = Vec::new();
        for (name, value) in self.fields {
            let Ok(name) = String::from_utf8(name) else {
                problems.push("a field name is not UTF-8".to_string());
                continue;
            };
            match name.as_str() {
                "id" => id = String::from_utf8(value).ok(),
                "job" => match String::from_utf8(value) {
                    Ok(j) if !j.is_empty() => job = Some(j),
                    _ => problems.push("the `job` field is empty or not UTF-8".to_string()),
                },
                "payload" => payload = value,
                "attempt" => match std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                {
                    Some(n) if n >= 1 => attempt = Some(n),
                    _ => problems.push(format!(
                        "the `attempt` field `{}` is not a positive number",
                        String::from_utf8_lossy(&value)
                    )),
                },
                "checkpoint" => checkpoint = Some(value),
                "first_at" => {
                    first_at = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                }
                "lease_expiries" => {
                    lease_expiries = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                }
                "last_delay_ms" => {
                    last_delay_ms = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok());
                }
                _ if extra.len() < MAX_EXTRA_FIELDS => extra.push((name, value)),
                _ => {}
            }
        }
        if job.is_none() && problems.is_empty() {
            problems.push(
                "the entry has no `job` field; enqueue with `XADD ward:{Q}:jobs * job <type> payload <bytes>`"
                    .to_string(),
            );
        }
        match job {
            Some(job) if problems.is_empty() => {
                let idempotency_key = extra
                    .iter()
                    .find(|(k, _)| k == "idempotency_key")
                    .and_then(|(_, v)| String::from_utf8(v.clone()).ok());
                Ok(JobEntry {
                    id: id.unwrap_or_else(|| self.entry_id.clone()),
                    entry_id: self.entry_id,
                    job,
                    payload,
                    attempt: attempt.unwrap_or(1),
                    idempotency_key,
                    checkpoint,
                    first_at,
                    last_delay_ms,
                    lease_expiries,
                    extra,
                })
            }
            _ => {
                if let Some(job) = job {
                    extra.push(("job".to_string(), job.into_bytes()));
                }
                Err(Malformed {
                    entry_id: self.entry_id,
                    why: problems.join("; "),
                    payload,
                    extra,
                })
            }
        }
    }
}

/// The result of one attempt, ready to be applied to Redis.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The delivery being acknowledged.
    pub entry_id: String,
    /// The job's id.
    pub job_id: String,
    /// Job type (empty for a malformed entry).
    pub job: String,
    /// The attempt number that just ended (0 when nothing ran).
    pub attempt: u32,
    /// Start of the attempt, Unix ms.
    pub started_ms: u64,
    /// Start of the job's first attempt, Unix ms (0 when nothing ran).
    pub first_at_ms: u64,
    /// For a retry: how long to wait before the next attempt.
    pub delay_ms: u64,
    /// End of the attempt, Unix ms.
    pub finished_ms: u64,
    /// The payload, kept for retries and dead letters.
    pub payload: Vec<u8>,
    /// For a dead letter: the payload as its entry in `ward:{Q}:dead` shows
    /// it (secrets redacted, a marker for a payload too large; see
    /// [`crate::redact::dead_payload`]). `None`: the payload as it is. The
    /// job record always keeps the original `payload`.
    pub dead_payload: Option<Vec<u8>>,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// What to do next.
    pub action: Action,
    /// sha256 of the plugin that ran (empty when none did).
    pub plugin_digest: std::sync::Arc<str>,
    /// Checkpoint to hand to the next attempt.
    pub checkpoint: Option<Vec<u8>>,
    /// Correlation fields carried from the entry.
    pub extra: Vec<(String, Vec<u8>)>,
    /// The job's idempotency key, if it has one.
    pub idempotency_key: Option<String>,
    /// How long the key's completion is remembered.
    pub idempotency_ttl: Duration,
    /// Lost leases so far, this attempt's included if it was lost.
    pub lease_expiries: u32,
    /// For [`Action::Duplicate`]: the job that owns the idempotency key.
    pub duplicate_of: Option<String>,
}

impl Completion {
    /// A first delivery on its first attempt: no record exists yet, so a
    /// success needs none of the tidying of a retried job.
    #[must_use]
    pub fn is_fresh(&self) -> bool {
        self.attempt == 1 && self.job_id == self.entry_id
    }
}

/// The state change a [`Completion`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Mark succeeded.
    Ack,
    /// Re-enqueue as the next attempt.
    Retry,
    /// Move to the dead-letter stream.
    Dead(DeadReason),
    /// Nothing ran: the job's idempotency key is already owned by the given
    /// job id (a second enqueue), or completed by this very job (a redelivery).
    Duplicate,
}

/// A job as `ward job show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobStatus {
    /// Job id.
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Current state.
    pub state: String,
    /// When a waiting job (delayed or retrying) is due, Unix ms.
    pub due_at_ms: Option<u64>,
    /// Attempts and events, oldest first (bounded).
    pub history: Vec<serde_json::Value>,
    /// Job type, if known.
    pub job: Option<String>,
    /// Attempts made so far (including one running now).
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<LastError>,
    /// First attempt start, Unix ms.
    pub first_attempt_at_ms: Option<u64>,
    /// Last attempt end, Unix ms.
    pub last_attempt_at_ms: Option<u64>,
    /// sha256 of the plugin that ran the last attempt.
    pub plugin_digest: Option<String>,
    /// Why it was dead-lettered, if it was.
    pub dead_reason: Option<String>,
    /// The result bytes of a success, as text when UTF-8, else lossily.
    pub result: Option<String>,
}

/// The last failure of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LastError {
    /// Failure class.
    pub class: String,
    /// Failure code.
    pub code: Option<String>,
    /// Message.
    pub message: String,
    /// Upstream.
    pub upstream: Option<String>,
}

/// One queue's Redis operations over a shared, self-reconnecting connection.
#[derive(Clone)]
pub struct Queue {
    /// This queue's keys.
    pub keys: Keys,
    con: ConnectionManager,
    succeeded_ttl: Duration,
}

/// Connects to Redis, with a response timeout long enough for blocking reads
/// of `block` plus slack.
///
/// # Errors
/// The connection error, with the URL's password left out.
pub async fn connect(url: &str, block: Duration) -> Result<ConnectionManager, RedisError> {
    let client = client(url)?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(block + Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client, cfg).await
}

/// The CA bundle `rediss://` connections trust instead of the system's
/// roots (`[redis] ca_file`), once set for the process.
static TLS_CA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Makes `rediss://` connections of this process trust the CA certificates
/// in `pem` (and only those) instead of the system's roots. The first call wins.
pub fn trust_ca(pem: Vec<u8>) {
    let _ = TLS_CA.set(pem);
}

/// A Redis client for `url`: `redis://`, `unix://` or `rediss://` (TLS,
/// verified against the system's roots or the [`trust_ca`] bundle).
///
/// # Errors
/// A URL the client cannot parse, or a CA bundle that is not PEM.
pub fn client(url: &str) -> Result<redis::Client, RedisError> {
    match TLS_CA.get() {
        Some(ca) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        _ => redis::Client::open(url),
    }
}

/// The URL with any password replaced by `***`, for messages.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Current Unix time in ms.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Longest history kept per job (oldest entries are trimmed).
pub const MAX_HISTORY: usize = 50;
/// Longest failure message kept in a history entry.
const MAX_HISTORY_MESSAGE: usize = 512;

const APPLY: &str = include_str!("store/lua/apply.lua");

const PROMOTE: &str = include_str!("store/lua/promote.lua");

const RENEW: &str = include_str!("store/lua/renew.lua");

const CHECK_KEYS: &str = include_str!("store/lua/check_keys.lua");

/// Version of the Redis Function library; bump it with every change.
pub const FUNCTIONS_VERSION: &str = "1";

/// The Redis Function library every client can call to enqueue atomically.
///
/// `FCALL ward_enqueue 1 ward:{Q}:jobs <job> <payload> [idempotency_key] [delay_ms] [ttl_ms] [at_ms]`
/// (empty strings for the optional arguments you skip) returns
/// `[job_id, "created" | "duplicate", due_ms]` (`due_ms` is 0 when the job is
/// ready now). `ttl_ms` is how long the key is remembered (default 24 h).
pub const FUNCTIONS: &str = include_str!("store/lua/functions.lua");

/// The fields of a dead-letter entry that describe the failure; every other
/// field is a correlation field carried from the job's entry (`user_id`,
/// `idempotency_key`, ...). Kept in step with `dead_fields` in [`APPLY`].
pub const DEAD_ENTRY_FIELDS: [&str; 14] = [
    "id", "job", "queue", "reason", "class", "code", "message", "upstream", "attempts", "first_at",
    "last_at", "plugin", "payload", "entry",
];

const REQUEUE: &str = include_str!("store/lua/requeue.lua");

const DISCARD: &str = include_str!("store/lua/discard.lua");

const TRIM_DEAD: &str = include_str!("store/lua/trim_dead.lua");

/// How long the record of a discarded job, or of a dead letter removed by
/// retention, is kept after that (then it expires, bounding memory).
pub const RETIRED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Hashed once: `invoke_async` sends EVALSHA and falls back to EVAL only
/// when the server does not have the script yet (e.g. after a restart).
static APPLY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPLY));
static PROMOTE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PROMOTE));
static REQUEUE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REQUEUE));
static DISCARD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(DISCARD));
static TRIM_DEAD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(TRIM_DEAD));

/// What became of a requeue or a discard of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Done. For a requeue, the new entry's id in `ward:{Q}:jobs`.
    Done(Option<String>),
    /// The dead letter was no longer in `ward:{Q}:dead`: someone requeued
    /// or discarded it meanwhile, or retention removed it. Nothing changed.
    Gone,
    /// Refused, nothing changed; says why.
    Refused(String),
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries older than `dead_max_age`.
    pub by_age: usize,
    /// Entries past `dead_max_len` (the oldest).
    pub by_len: usize,
    /// A per-call limit was hit; call again.
    pub more: bool,
}

static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW));
static CHECK_KEYS_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(CHECK_KEYS));

/// What a client's enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job id (the first job's, for a duplicate).
    pub id: String,
    /// True when the idempotency key was already taken: nothing was added.
    pub duplicate: bool,
    /// When the job is due (Unix ms, server clock), for a delayed job.
    pub due_ms: Option<u64>,
}

/// What the idempotency check says about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// Run it: the key is this job's and not completed.
    Run,
    /// A second enqueue of a key owned by this other job.
    DuplicateOf(String),
    /// This job already succeeded: a redelivery.
    Completed,
}

/// What one promotion pass did, in the Redis server's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs moved from the delayed set to the stream.
    pub moved: usize,
    /// The server's time when it ran, Unix ms.
    pub now_ms: u64,
    /// Due time of the earliest job still waiting, if any.
    pub next_due_ms: Option<u64>,
    /// Ids found in the delayed set without a job record (cannot be run).
    pub missing: Vec<String>,
}

impl Queue {
    /// Operations on queue `keys.queue` over `con`.
    #[must_use]
    pub fn new(keys: Keys, con: ConnectionManager) -> Queue {
        Queue {
            keys,
            con,
            succeeded_ttl: SUCCEEDED_TTL,
        }
    }

    /// The same queue, keeping records of succeeded jobs for `ttl` (whole
    /// seconds; zero keeps none).
    #[must_use]
    pub fn with_succeeded_ttl(mut self, ttl: Duration) -> Queue {
        self.succeeded_ttl = ttl;
        self
    }

    /// The same queue over another connection. A blocking read holds up
    /// every command queued behind it on its connection, so the reader gets
    /// a connection of its own.
    #[must_use]
    pub fn with_connection(&self, con: ConnectionManager) -> Queue {
        Queue {
            keys: self.keys.clone(),
            con,
            succeeded_ttl: self.succeeded_ttl,
        }
    }

    /// Creates the consumer group (and the stream) if missing. The group
    /// starts at the beginning of the stream, so jobs added before any
    /// daemon ran are not skipped.
    ///
    /// # Errors
    /// Any Redis error other than "the group already exists".
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        let res: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.jobs)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads up to `count` new deliveries for `consumer`, waiting at most
    /// `block` for the first one (no busy polling).
    ///
    /// # Errors
    /// Redis errors, or a reply that is not a stream read.
    pub async fn lease_batch(
        &self,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            // BLOCK 0 would wait forever; wait at least a millisecond.
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        let reply: Value = cmd
            .arg("STREAMS")
            .arg(&self.keys.jobs)
            .arg(">")
            .query_async(&mut con)
            .await?;
        parse_xread(reply)
    }

    /// Applies a batch of finished attempts in one round trip; returns, per
    /// completion, whether it took effect (a delivery that was already
    /// acknowledged, by another daemon or by an earlier send of this batch,
    /// is skipped).
    ///
    /// # Errors
    /// Redis errors; the batch can then be re-sent as it is.
    pub async fn apply(&self, batch: &[Completion]) -> Result<Vec<bool>, QueueError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = APPLY_SCRIPT.key(&self.keys.jobs);
        inv.key(&self.keys.dead)
            .key(&self.keys.delayed)
            .key(&self.keys.acked)
            .arg(GROUP)
            .arg(&self.keys.record_prefix)
            .arg(self.succeeded_ttl.as_secs())
            .arg(&self.keys.queue)
            .arg(MAX_HISTORY)
            .arg(&self.keys.wake)
            .arg(MAX_ACKED_LEFT);
        // Nearly every completion of a batch ran the same plugin: its digest
        // is sent once and referred to by index.
        let mut digests: Vec<&str> = Vec::new();
        for c in batch {
            if !digests.contains(&&*c.plugin_digest) {
                digests.push(&c.plugin_digest);
            }
        }
        inv.arg(digests.len());
        for d in &digests {
            inv.arg(*d);
        }
        for c in batch {
            if c.action == Action::Ack && c.is_fresh() {
                let result: &[u8] = match &c.outcome {
                    Outcome::Success(out) if out.len() <= MAX_STORED_RESULT => out,
                    _ => b"",
                };
                let digest = digests
                    .iter()
                    .position(|d| *d == &*c.plugin_digest)
                    .map_or(0, |k| k + 1);
                inv.arg("f")
                    .arg(&c.entry_id)
                    .arg(&c.job)
                    .arg(c.first_at_ms)
                    .arg(c.finished_ms)
                    .arg(digest)
                    .arg(result);
                match &c.idempotency_key {
                    // The history line is the audit record of a keyed job's
                    // one completion.
                    Some(key) => inv
                        .arg(key)
                        .arg(u64::try_from(c.idempotency_ttl.as_millis()).unwrap_or(u64::MAX))
                        .arg(result_digest(&c.outcome))
                        .arg(history_entry(c)),
                    None => inv.arg(""),
                };
                continue;
            }
            let (kind, reason) = match c.action {
                Action::Ack => ("ok", ""),
                Action::Retry => ("retry", ""),
                Action::Dead(r) => ("dead", r.as_str()),
                Action::Duplicate => ("dup", c.duplicate_of.as_deref().unwrap_or(&c.job_id)),
            };
            let (result, class, code, message, upstream): (&[u8], &str, &str, &str, &str) = match &c
                .outcome
            {
                Outcome::Success(out) if out.len() <= MAX_STORED_RESULT => (out, "", "", "", ""),
                Outcome::Success(_) => (b"", "", "", "", ""),
                Outcome::Failure(f) => (
                    b"",
                    f.class.as_str(),
                    f.code.as_deref().unwrap_or(""),
                    &f.message,
                    f.upstream.as_deref().unwrap_or(""),
                ),
            };
            // A success does not need the payload any more; skip sending it.
            let payload: &[u8] = if c.action == Action::Ack {
                b""
            } else {
                &c.payload
            };
            inv.arg(kind)
                .arg(&c.entry_id)
                .arg(&c.job_id)
                .arg(&c.job)
                .arg(c.attempt)
                .arg(c.started_ms)
                .arg(c.finished_ms)
                .arg(payload)
                .arg(result)
                .arg(class)
                .arg(code)
                .arg(message)
                .arg(upstream)
                .arg(reason)
                .arg(&*c.plugin_digest)
                .arg(if c.checkpoint.is_some() { "1" } else { "0" })
                .arg(c.checkpoint.as_deref().unwrap_or(b""))
                .arg(c.first_at_ms)
                .arg(c.delay_ms)
                .arg(history_entry(c))
                .arg(c.idempotency_key.as_deref().unwrap_or(""))
                .arg(u64::try_from(c.idempotency_ttl.as_millis()).unwrap_or(u64::MAX))
                .arg(if c.idempotency_key.is_some() {
                    result_digest(&c.outcome)
                } else {
                    String::new()
                })
                .arg(c.lease_expiries)
                .arg(match c.action {
                    Action::Dead(_) => c.dead_payload.as_deref().unwrap_or(&c.payload),
                    _ => b"",
                })
                .arg(c.extra.len());
            for (k, v) in &c.extra {
                inv.arg(k).arg(v);
            }
        }
        let mut con = self.con.clone();
        let took: String = inv.invoke_async(&mut con).await?;
        if took.len() != batch.len() {
            return Err(QueueError::Protocol {
                what: "apply",
                detail: format!("{} flags for {} completions", took.len(), batch.len()),
            });
        }
        Ok(took.bytes().map(|b| b == b'1').collect())
    }

    /// Appends a job to the stream; returns its id (the entry id).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn enqueue(&self, job: &str, payload: &[u8]) -> Result<String, QueueError> {
        let mut con = self.con.clone();
        let id: String = redis::cmd("XADD")
            .arg(&self.keys.jobs)
            .arg("*")
            .arg("job")
            .arg(job)
            .arg("payload")
            .arg(payload)
            .query_async(&mut con)
            .await?;
        Ok(id)
    }

    /// Moves up to `limit` due jobs from the delayed set back to the stream.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn promote_due(&self, limit: usize) -> Result<Promoted, QueueError> {
        let mut con = self.con.clone();
        let (moved, now_ms, next_due, missing): (usize, u64, i64, Vec<String>) = PROMOTE_SCRIPT
            .key(&self.keys.delayed)
            .key(&self.keys.jobs)
            .arg(&self.keys.record_prefix)
            .arg(limit)
            .invoke_async(&mut con)
            .await?;
        Ok(Promoted {
            moved,
            now_ms,
            next_due_ms: u64::try_from(next_due).ok(),
            missing,
        })
    }

    /// Loads (or replaces) the `ward` Redis Function library.
    ///
    /// # Errors
    /// Redis errors (e.g. a server older than 7.0, which has no functions).
    pub async fn load_functions(&self) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(FUNCTIONS)
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Loads the function library if the server lost it (a restart without
    /// persistence, a `FUNCTION FLUSH`) or has another version; returns
    /// whether it had to.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ensure_functions(&self) -> Result<bool, QueueError> {
        let mut con = self.con.clone();
        let version: Result<String, RedisError> = redis::cmd("FCALL_RO")
            .arg("ward_version")
            .arg(0)
            .query_async(&mut con)
            .await;
        match version {
            Ok(v) if v == FUNCTIONS_VERSION => Ok(false),
            Ok(_) => self.load_functions().await.map(|()| true),
            Err(e) if is_missing_function(&e) => self.load_functions().await.map(|()| true),
            Err(e) => Err(e.into()),
        }
    }

    /// Enqueues through `ward_enqueue`: deduplicated by `key` (remembered for
    /// `ttl`), delayed by `delay` or until `at_ms`. Loads the function
    /// library first if the server does not have it (e.g. after a restart).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn enqueue_with(
        &self,
        job: &str,
        payload: &[u8],
        key: Option<&str>,
        delay: Option<Duration>,
        at_ms: Option<u64>,
        ttl: Duration,
    ) -> Result<Enqueued, QueueError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("ward_enqueue")
            .arg(1)
            .arg(&self.keys.jobs)
            .arg(job)
            .arg(payload)
            .arg(key.unwrap_or(""))
            .arg(delay.map(|d| d.as_millis().to_string()).unwrap_or_default())
            .arg(ttl.as_millis().to_string())
            .arg(at_ms.map(|d| d.to_string()).unwrap_or_default());
        let mut con = self.con.clone();
        let reply: Result<(String, String, u64), RedisError> = cmd.query_async(&mut con).await;
        let (id, status, due) = match reply {
            Err(e) if is_missing_function(&e) => {
                self.load_functions().await?;
                cmd.query_async(&mut con).await?
            }
            other => other?,
        };
        Ok(Enqueued {
            id,
            duplicate: status == "duplicate",
            due_ms: (due > 0).then_some(due),
        })
    }

    /// Resets the lease of deliveries `entry_ids` still owned by `consumer`;
    /// returns those it no longer owns.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew(
        &self,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<String>, QueueError> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = RENEW_SCRIPT.key(&self.keys.jobs);
        inv.arg(GROUP).arg(consumer);
        for id in entry_ids {
            inv.arg(id);
        }
        let mut con = self.con.clone();
        Ok(inv.invoke_async(&mut con).await?)
    }

    /// Takes over deliveries whose lease expired (idle longer than `lease`:
    /// their worker stopped renewing them), at most `count`.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn reclaim(
        &self,
        consumer: &str,
        lease: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.jobs)
            .arg(GROUP)
            .arg(consumer)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        match reply {
            Value::Array(mut parts) if parts.len() >= 2 => {
                parse_entries(parts.swap_remove(1), "XAUTOCLAIM")
            }
            other => Err(protocol("XAUTOCLAIM", &other)),
        }
    }

    /// Removes consumers of the group that hold no pending delivery and
    /// have not read for `idle` (daemons that stopped or died, each with its
    /// own name); returns their names. A live daemon reads every few seconds,
    /// and one removed by mistake is recreated by its next read.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn forget_idle_consumers(
        &self,
        me: &str,
        idle: Duration,
    ) -> Result<Vec<String>, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.keys.jobs)
            .arg(GROUP)
            .query_async(&mut con)
            .await?;
        let Value::Array(consumers) = reply else {
            return Ok(Vec::new());
        };
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let mut gone = Vec::new();
        for c in consumers {
            let fields: Vec<(String, Value)> = match c {
                Value::Array(flat) => flat
                    .chunks(2)
                    .filter_map(|kv| match kv {
                        [Value::BulkString(k), v] => {
                            Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                        }
                        [Value::SimpleString(k), v] => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect(),
                Value::Map(pairs) => pairs
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        Value::BulkString(k) => Some((String::from_utf8_lossy(&k).into_owned(), v)),
                        Value::SimpleString(k) => Some((k, v)),
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let name = match get("name") {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => continue,
            };
            let pending = matches!(get("pending"), Some(Value::Int(n)) if *n > 0);
            let idle_for = match get("idle") {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            if name != me && !pending && idle_for >= idle_ms {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.keys.jobs)
                    .arg(GROUP)
                    .arg(&name)
                    .query_async(&mut con)
                    .await?;
                gone.push(name);
            }
        }
        Ok(gone)
    }

    /// Checks the idempotency keys of a batch: `(job id, key, ttl)` each.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn check_keys(
        &self,
        items: &[(&str, &str, Duration)],
    ) -> Result<Vec<KeyCheck>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = CHECK_KEYS_SCRIPT.key(&self.keys.jobs);
        for (id, key, ttl) in items {
            inv.arg(*id)
                .arg(*key)
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        }
        let mut con = self.con.clone();
        let out: Vec<String> = inv.invoke_async(&mut con).await?;
        if out.len() != items.len() {
            return Err(QueueError::Protocol {
                what: "idempotency check",
                detail: format!("{} answers for {} keys", out.len(), items.len()),
            });
        }
        Ok(out
            .into_iter()
            .map(|s| match s.strip_prefix("dup ") {
                Some(owner) => KeyCheck::DuplicateOf(owner.to_string()),
                None if s == "done" => KeyCheck::Completed,
                None => KeyCheck::Run,
            })
            .collect())
    }

    /// Looks a job up: its record if it has one, else its stream entry.
    /// Returns `None` when Redis knows nothing of `id` in this queue.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn job_status(&self, id: &str) -> Result<Option<JobStatus>, QueueError> {
        let mut con = self.con.clone();
        let mut record: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.keys.record(id))
            .query_async(&mut con)
            .await?;
        if record.is_empty() && !self.entry_exists(id).await? {
            // The attempt may have been recorded (entry deleted, record
            // written, in one script) between the two reads: look again.
            record = redis::cmd("HGETALL")
                .arg(self.keys.record(id))
                .query_async(&mut con)
                .await?;
        }
        let text = |name: &str| {
            record
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());

        if record.is_empty() {
            // No record yet: the job has not finished an attempt. It is either
            // waiting in the stream or being run by a worker right now.
            let Some(entry) = self.entry(id).await? else {
                return Ok(None);
            };
            let pending = self.is_pending(id).await?;
            let job = entry.clone().parse().ok();
            return Ok(Some(JobStatus {
                id: id.to_string(),
                queue: self.keys.queue.clone(),
                due_at_ms: None,
                history: Vec::new(),
                state: if pending {
                    JobState::Running
                } else {
                    JobState::Queued
                }
                .to_string(),
                job: job.as_ref().map(|j| j.job.clone()),
                attempts: if pending {
                    job.map_or(1, |j| j.attempt)
                } else {
                    0
                },
                last_error: None,
                first_attempt_at_ms: None,
                last_attempt_at_ms: None,
                plugin_digest: None,
                dead_reason: None,
                result: None,
            }));
        }

        let mut state = text("state").unwrap_or_else(|| "unknown".into());
        let mut attempts = number("attempts").map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        if state == JobState::Queued.as_str()
            && let Some(entry) = text("entry")
            && self.is_pending(&entry).await?
        {
            state = JobState::Running.to_string();
            attempts += 1;
        }
        let last_error = text("last_class").map(|class| LastError {
            class,
            code: text("last_code"),
            message: text("last_message").unwrap_or_default(),
            upstream: text("last_upstream"),
        });
        let history: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(format!("{}:history", self.keys.record(id)))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await?;
        let history = history
            .iter()
            .filter_map(|h| serde_json::from_slice(h).ok())
            .collect();
        Ok(Some(JobStatus {
            id: id.to_string(),
            queue: self.keys.queue.clone(),
            state,
            due_at_ms: number("due_at"),
            history,
            job: text("job"),
            attempts,
            last_error,
            first_attempt_at_ms: number("first_at"),
            last_attempt_at_ms: number("last_at"),
            plugin_digest: text("plugin"),
            dead_reason: text("dead_reason"),
            result: text("result"),
        }))
    }

    async fn entry_exists(&self, entry_id: &str) -> Result<bool, QueueError> {
        Ok(self.entry(entry_id).await?.is_some())
    }

    /// The stream entry with id `entry_id`, if it is still in the stream.
    async fn entry(&self, entry_id: &str) -> Result<Option<Delivery>, QueueError> {
        if !looks_like_entry_id(entry_id) {
            return Ok(None);
        }
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.keys.jobs)
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut con)
            .await?;
        Ok(parse_entries(reply, "XRANGE")?.into_iter().next())
    }

    /// Whether entry `entry_id` is delivered and not yet acknowledged.
    async fn is_pending(&self, entry_id: &str) -> Result<bool, QueueError> {
        if !looks_like_entry_id(entry_id) {
            return Ok(false);
        }
        let mut con = self.con.clone();
        let reply: Result<Value, RedisError> = redis::cmd("XPENDING")
            .arg(&self.keys.jobs)
            .arg(GROUP)
            .arg(entry_id)
            .arg(entry_id)
            .arg(1)
            .query_async(&mut con)
            .await;
        match reply {
            Ok(Value::Array(items)) => Ok(!items.is_empty()),
            Ok(_) => Ok(false),
            // No daemon has created the group yet, so nothing is delivered.
            Err(e) if e.code() == Some("NOGROUP") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the newest `count` dead-letter entries (for tests and tools).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.keys.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        parse_entries(reply, "XREVRANGE")
    }
}

/// The dead-letter stream: reading, requeuing, discarding, retention.
impl Queue {
    /// Whether Redis knows this queue at all (its jobs stream or its
    /// dead-letter stream exists).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn exists(&self) -> Result<bool, QueueError> {
        let mut con = self.con.clone();
        let n: usize = redis::cmd("EXISTS")
            .arg(&self.keys.jobs)
            .arg(&self.keys.dead)
            .query_async(&mut con)
            .await?;
        Ok(n > 0)
    }

    /// Up to `count` dead-letter entries, newest first: those older than
    /// entry `before` (exclusive; `None`: from the newest) and dead-lettered
    /// at or after `since_ms` (Unix ms, `None`: no bound).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dead_page(
        &self,
        before: Option<&str>,
        since_ms: Option<u64>,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.keys.dead)
            .arg(before.map_or_else(|| "+".to_string(), |b| format!("({b}")))
            .arg(since_ms.map_or_else(|| "-".to_string(), |s| format!("{s}-0")))
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        parse_entries(reply, "XREVRANGE")
    }

    /// The dead-letter entry with stream id `dead_id`, if it is still there.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dead_entry(&self, dead_id: &str) -> Result<Option<Delivery>, QueueError> {
        if !looks_like_entry_id(dead_id) {
            return Ok(None);
        }
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.keys.dead)
            .arg(dead_id)
            .arg(dead_id)
            .query_async(&mut con)
            .await?;
        Ok(parse_entries(reply, "XRANGE")?.into_iter().next())
    }

    /// Fields of job `id`'s record (`None` for each one missing).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn record_fields(
        &self,
        id: &str,
        fields: &[&str],
    ) -> Result<Vec<Option<String>>, QueueError> {
        let mut con = self.con.clone();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.record(id))
            .arg(fields)
            .query_async(&mut con)
            .await?;
        Ok(values)
    }

    /// The job's history lines (JSON), oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn history(&self, id: &str) -> Result<Vec<serde_json::Value>, QueueError> {
        let mut con = self.con.clone();
        let lines: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(format!("{}:history", self.keys.record(id)))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await?;
        Ok(lines
            .iter()
            .filter_map(|h| serde_json::from_slice(h).ok())
            .collect())
    }

    /// Puts dead job `job_id` (dead-letter entry `dead_id`) back as a fresh
    /// job: one script that removes the dead letter, adds an entry at
    /// attempt 1 with the original payload, resets the record and appends
    /// `{"event":"requeued","by":..,"note":..,"at":..}` to the history.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn requeue_dead(
        &self,
        dead_id: &str,
        job_id: &str,
        by: &str,
        note: &str,
    ) -> Result<Resolution, QueueError> {
        let record = self.keys.record(job_id);
        let mut con = self.con.clone();
        let (status, detail): (String, String) = REQUEUE_SCRIPT
            .key(&self.keys.jobs)
            .key(&self.keys.dead)
            .key(&record)
            .key(format!("{record}:history"))
            .arg(dead_id)
            .arg(job_id)
            .arg(by)
            .arg(note)
            .arg(MAX_HISTORY)
            .invoke_async(&mut con)
            .await?;
        resolution("REQUEUE", status, detail)
    }

    /// Marks dead job `job_id` (dead-letter entry `dead_id`) `discarded`:
    /// one script that removes the dead letter, records who, when and why,
    /// and lets the record expire after [`RETIRED_TTL`].
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn discard_dead(
        &self,
        dead_id: &str,
        job_id: &str,
        by: &str,
        note: &str,
    ) -> Result<Resolution, QueueError> {
        let record = self.keys.record(job_id);
        let mut con = self.con.clone();
        let (status, detail): (String, String) = DISCARD_SCRIPT
            .key(&self.keys.dead)
            .key(&record)
            .key(format!("{record}:history"))
            .arg(dead_id)
            .arg(job_id)
            .arg(by)
            .arg(note)
            .arg(MAX_HISTORY)
            .arg(RETIRED_TTL.as_secs())
            .invoke_async(&mut con)
            .await?;
        resolution("DISCARD", status, detail)
    }

    /// Removes dead letters past `max_len` (oldest first) or older than
    /// `max_age`, at most `limit` per limit and call; their records expire
    /// after [`RETIRED_TTL`].
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn trim_dead(
        &self,
        max_len: Option<u64>,
        max_age: Option<Duration>,
        limit: usize,
    ) -> Result<Trimmed, QueueError> {
        let mut con = self.con.clone();
        let (by_age, by_len, more): (usize, usize, u8) = TRIM_DEAD_SCRIPT
            .key(&self.keys.dead)
            .arg(max_len.map(|n| n.to_string()).unwrap_or_default())
            .arg(
                max_age
                    .map(|a| a.as_millis().to_string())
                    .unwrap_or_default(),
            )
            .arg(&self.keys.record_prefix)
            .arg(RETIRED_TTL.as_secs())
            .arg(limit.max(1))
            .arg(MAX_HISTORY)
            .invoke_async(&mut con)
            .await?;
        Ok(Trimmed {
            by_age,
            by_len,
            more: more == 1,
        })
    }
}

fn resolution(
    what: &'static str,
    status: String,
    detail: String,
) -> Result<Resolution, QueueError> {
    match status.as_str() {
        "ok" => Ok(Resolution::Done(Some(detail).filter(|d| !d.is_empty()))),
        "gone" => Ok(Resolution::Gone),
        "refused" => Ok(Resolution::Refused(detail)),
        _ => Err(QueueError::Protocol {
            what,
            detail: format!("{status} {detail}"),
        }),
    }
}

/// sha256 of a success's result bytes, hex; empty for a failure.
fn result_digest(outcome: &Outcome) -> String {
    use sha2::Digest as _;
    match outcome {
        Outcome::Success(out) => hex::encode(sha2::Sha256::digest(out)),
        Outcome::Failure(_) => String::new(),
    }
}

/// One line of a job's history, as JSON.
fn history_entry(c: &Completion) -> String {
    let mut v = serde_json::json!({
        "attempt": c.attempt,
        "finished_at": c.finished_ms,
    });
    if c.started_ms > 0 {
        v["started_at"] = c.started_ms.into();
    }
    match &c.outcome {
        Outcome::Success(_) => v["class"] = "success".into(),
        Outcome::Failure(f) => {
            let mut message = f.message.clone();
            crate::runtime::truncate(&mut message, MAX_HISTORY_MESSAGE);
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
    match c.action {
        Action::Ack => v["then"] = "succeeded".into(),
        Action::Retry => {
            v["then"] = "retry".into();
            v["delay_ms"] = c.delay_ms.into();
        }
        Action::Dead(reason) => {
            v["then"] = "dead".into();
            v["reason"] = reason.as_str().into();
        }
        Action::Duplicate => {
            v["event"] = "duplicate".into();
            v["class"] = "duplicate".into();
            v["of"] = c.duplicate_of.as_deref().unwrap_or(&c.job_id).into();
            v["then"] = "acknowledged without running".into();
        }
    }
    if !c.plugin_digest.is_empty() {
        v["plugin"] = c.plugin_digest.get(..12).unwrap_or(&c.plugin_digest).into();
    }
    v.to_string()
}

fn is_missing_function(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}

fn looks_like_entry_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let seq = parts.next().unwrap_or("0");
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// `XREADGROUP` replies `nil` on timeout, else `[[stream, [entry...]]]`.
fn parse_xread(reply: Value) -> Result<Vec<Delivery>, QueueError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        // RESP3 servers answer with a map of stream name to entries.
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        other => return Err(protocol("XREADGROUP", &other)),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            return Err(protocol("XREADGROUP", &stream));
        };
        if parts.len() != 2 {
            return Err(protocol("XREADGROUP", &Value::Array(parts)));
        }
        let entries = parts.pop().unwrap_or(Value::Nil);
        out.extend(parse_entries(entries, "XREADGROUP")?);
    }
    Ok(out)
}

/// Parses `[[id, [field, value, ...]], ...]`.
fn parse_entries(reply: Value, what: &'static str) -> Result<Vec<Delivery>, QueueError> {
    let Value::Array(entries) = reply else {
        return Err(protocol(what, &reply));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(protocol(what, &entry));
        };
        if parts.len() != 2 {
            return Err(protocol(what, &Value::Array(parts)));
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let id = parts.pop().unwrap_or(Value::Nil);
        let entry_id = match id {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::SimpleString(s) => s,
            other => return Err(protocol(what, &other)),
        };
        let flat = match fields {
            Value::Array(items) => items,
            // A deleted entry still in a pending list comes back with nil fields.
            Value::Nil => Vec::new(),
            other => return Err(protocol(what, &other)),
        };
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((bytes_of(k), bytes_of(v)));
        }
        out.push(Delivery {
            entry_id,
            fields: pairs,
        });
    }
    Ok(out)
}

fn bytes_of(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn protocol(what: &'static str, got: &Value) -> QueueError {
    let mut detail = format!("{got:?}");
    crate::runtime::truncate(&mut detail, 200);
    QueueError::Protocol { what, detail }
}

/// Whether a Redis error means the connection is gone (worth a reconnect and
/// retry) rather than a command that Redis refused.
#[must_use]
pub fn is_connection_error(e: &QueueError) -> bool {
    match e {
        QueueError::Redis(e) => {
            e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_io_error()
                || matches!(e.kind(), ErrorKind::Io)
        }
        QueueError::Protocol { .. } => false,
    }
}

/// One queue's depth and lag, read in one script call (observability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// Whether the consumer group `ward` exists on the stream.
    pub group_exists: bool,
    /// Entries not yet delivered to the group.
    pub ready: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// Jobs in the delayed set (retries and scheduled jobs).
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub dead: u64,
    /// The Redis server's time, Unix ms.
    pub now_ms: u64,
    /// Enqueue time (entry id ms) of the oldest entry not yet delivered.
    pub oldest_ready_ms: Option<u64>,
}

const BREAKER_RECORD: &str = include_str!("store/lua/breaker_record.lua");

const BREAKERS: &str = include_str!("store/lua/breakers.lua");

static BREAKER_RECORD_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(BREAKER_RECORD));
static BREAKERS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(BREAKERS));

/// One upstream's circuit breaker as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerState {
    /// The upstream.
    pub upstream: String,
    /// Failures counted in the current window.
    pub failures: u32,
    /// Open until this Redis time, Unix ms (0 if it never opened).
    pub open_until_ms: u64,
    /// How many times it has opened (while its hash lives).
    pub openings: u32,
}

/// What reporting to a breaker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerUpdate {
    /// Open until this Redis time, Unix ms, if it is open.
    pub open_until_ms: Option<u64>,
    /// This report opened it (so this daemon raises the alert).
    pub opened_now: bool,
}

impl Queue {
    /// Reports `failures` failures blamed on `upstream` (0: a success) to its
    /// circuit breaker, shared by every daemon of the queue.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn breaker_report(
        &self,
        upstream: &str,
        failures: u32,
        policy: &crate::config::BreakerPolicy,
    ) -> Result<BreakerUpdate, QueueError> {
        let mut con = self.con.clone();
        let (state, until, opened, _failures): (String, u64, u8, u32) = BREAKER_RECORD_SCRIPT
            .key(&self.keys.breakers)
            .arg(&self.keys.breaker_prefix)
            .arg(upstream)
            .arg(failures)
            .arg(policy.failures)
            .arg(u64::try_from(policy.window.as_millis()).unwrap_or(u64::MAX))
            .arg(u64::try_from(policy.open_for.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut con)
            .await?;
        Ok(BreakerUpdate {
            open_until_ms: (state == "open").then_some(until),
            opened_now: opened == 1,
        })
    }

    /// Every breaker of the queue, and the Redis server's time (Unix ms).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn breakers(&self) -> Result<(u64, Vec<BreakerState>), QueueError> {
        let mut con = self.con.clone();
        let reply: Vec<Value> = BREAKERS_SCRIPT
            .key(&self.keys.breakers)
            .arg(&self.keys.breaker_prefix)
            .invoke_async(&mut con)
            .await?;
        let int = |v: &Value| match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        };
        let Some(now) = reply.first().and_then(int) else {
            return Err(protocol("breakers", &Value::Array(reply)));
        };
        let mut out = Vec::new();
        for chunk in reply[1..].chunks(4) {
            let [u, f, o, n] = chunk else {
                return Err(protocol("breakers", &Value::Array(chunk.to_vec())));
            };
            out.push(BreakerState {
                upstream: String::from_utf8_lossy(&bytes_of(u.clone())).into_owned(),
                failures: int(f).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
                open_until_ms: int(o).unwrap_or(0),
                openings: int(n).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
            });
        }
        out.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        Ok((now, out))
    }
}

const SAMPLE: &str = include_str!("store/lua/sample.lua");

static SAMPLE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SAMPLE));

impl Queue {
    /// Reads the queue's depth by state and the age of its oldest ready
    /// entry in one round trip (read-only).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn sample(&self) -> Result<QueueSample, QueueError> {
        let mut con = self.con.clone();
        let v: Vec<i64> = SAMPLE_SCRIPT
            .key(&self.keys.jobs)
            .key(&self.keys.delayed)
            .key(&self.keys.dead)
            .key(&self.keys.acked)
            .arg(GROUP)
            .invoke_async(&mut con)
            .await?;
        let [found, ready, pending, delayed, dead, now, oldest] = v[..] else {
            return Err(QueueError::Protocol {
                what: "queue sample",
                detail: format!("{v:?}"),
            });
        };
        let n = |x: i64| u64::try_from(x).unwrap_or(0);
        Ok(QueueSample {
            group_exists: found == 1,
            ready: n(ready),
            pending: n(pending),
            delayed: n(delayed),
            dead: n(dead),
            now_ms: n(now),
            oldest_ready_ms: u64::try_from(oldest).ok(),
        })
    }

    /// `PING`: whether Redis answers on this queue's connection.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        let _: String = redis::cmd("PING").query_async(&mut con).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(fields: &[(&[u8], &[u8])]) -> Delivery {
        Delivery {
            entry_id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_plain_xadd_entry_is_a_first_attempt_with_the_entry_id_as_job_id() {
        let j = delivery(&[
            (b"job", b"send"),
            (b"payload", b"\xff\x00"),
            (b"user_id", b"7"),
        ])
        .parse()
        .unwrap();
        assert_eq!(j.id, "1-0");
        assert_eq!(j.attempt, 1);
        assert_eq!(j.payload, b"\xff\x00");
        assert_eq!(j.extra, vec![("user_id".to_string(), b"7".to_vec())]);
    }

    #[test]
    fn a_retry_entry_keeps_its_job_id_and_attempt() {
        let j = delivery(&[
            (b"id", b"5-1"),
            (b"job", b"send"),
            (b"attempt", b"3"),
            (b"checkpoint", b"c"),
        ])
        .parse()
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("5-1", 3));
        assert_eq!(j.checkpoint.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn entries_without_a_job_are_malformed_and_keep_their_fields() {
        let m = delivery(&[(b"payload", b"p"), (b"order_id", b"9")])
            .parse()
            .unwrap_err();
        assert!(m.why.contains("no `job` field"), "{}", m.why);
        assert_eq!(m.payload, b"p");
        assert_eq!(m.extra, vec![("order_id".to_string(), b"9".to_vec())]);
    }

    #[test]
    fn a_bad_attempt_number_is_malformed() {
        let m = delivery(&[(b"job", b"a"), (b"attempt", b"zero")])
            .parse()
            .unwrap_err();
        assert!(m.why.contains("`attempt`"), "{}", m.why);
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redacted_url("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(redacted_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn the_function_library_reports_its_own_version() {
        assert!(FUNCTIONS.contains(&format!("return '{FUNCTIONS_VERSION}'")));
    }

    #[test]
    fn keys_share_the_queue_hash_tag() {
        let k = Keys::new("emails");
        assert_eq!(k.jobs, "ward:{emails}:jobs");
        assert_eq!(k.record("1-0"), "ward:{emails}:job:1-0");
        assert_eq!(k.dead, "ward:{emails}:dead");
    }
}
