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

const APPLY: &str = r#"
-- KEYS[1] jobs stream, KEYS[2] dead stream, KEYS[3] delayed set, KEYS[4] the
-- count of acknowledged entries still in the stream.
-- ARGV[1] group, [2] record prefix, [3] succeeded ttl (s; 0: keep no record
-- of a succeeded job), [4] queue,
-- [5] history length, [6] wake channel, [7] most acknowledged entries left
-- in the stream before they are deleted one by one, [8] nd, then nd plugin
-- digests; then the completions, each starting with its kind.
--
-- kind 'f' (a first delivery that succeeded at once, the common case, kept
-- short): entry, job, first_at, finished, digest index (1-based), result,
-- idempotency key; when the key is not '': idempotency ttl (ms), result
-- digest, history line.
--
-- kinds ok|retry|dead|dup: 25 fixed fields and n extra name/value pairs.
-- The fixed fields, from 0: entry, id, job, attempt, started, finished,
-- payload, result, class, code, message, upstream, reason, plugin digest,
-- has checkpoint, checkpoint, first_at, delay, history line, idempotency
-- key, idempotency ttl (ms), result digest, lease expiries, dead payload, n.
-- For dup, `reason` holds the id of the job that owns the idempotency key.
-- The dead payload (field 23) is what the dead-letter entry shows of the
-- payload (redacted in Rust; '' unless kind is dead); the record keeps the
-- original payload (field 6). A dead letter's entry id is stored in the
-- record as `dead_entry`.
local group, prefix, ttl, queue = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local hist_max, wake, acked_max = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local nd = tonumber(ARGV[8])
local digests = {}
for k = 1, nd do digests[k] = ARGV[8 + k] end
-- 'ward:{Q}:' — every key of the queue starts with it.
local prefix_q = string.sub(prefix, 1, -5)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead_fields = {id=1, job=1, queue=1, reason=1, class=1, code=1, message=1,
  upstream=1, attempts=1, first_at=1, last_at=1, plugin=1, payload=1, entry=1}
-- took[k] is '1' when the k-th completion took effect, '0' when its delivery
-- was no longer pending (another daemon recorded it, or a re-sent batch).
local applied, earliest, kept, took = 0, nil, 0, {}
-- Acknowledged entries are normally left for the XTRIM below, which removes
-- them for a fraction of XDEL's cost (XDEL seeks through the entry's node
-- for every id). Behind an attempt that runs for a long time they cannot be
-- trimmed; once too many wait there, they are deleted one by one again.
local acked_left = tonumber(redis.call('GET', KEYS[4]) or '0')
local delete_each = acked_left >= acked_max
local function ack(entry)
  if redis.call('XACK', KEYS[1], group, entry) ~= 1 then
    took[#took+1] = '0'
    return false
  end
  applied = applied + 1
  took[#took+1] = '1'
  if delete_each then
    redis.call('XDEL', KEYS[1], entry)
  else
    kept = kept + 1
  end
  return true
end
-- Completion is recorded with the acknowledgement, in one step: a
-- redelivery after this point is acked as a duplicate, never re-run.
local function mark_done(key, id, digest, key_ttl)
  local ikey = prefix_q .. 'idem:' .. key
  local v = id .. ' done ' .. digest
  -- The claim (at enqueue or lease) set the key with its TTL: keep it. A
  -- key that has gone meanwhile is set again with the job type's TTL.
  if not redis.call('SET', ikey, v, 'XX', 'KEEPTTL') then
    redis.call('SET', ikey, v, 'PX', key_ttl)
  end
end
local i = 9 + nd
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'f' then
    local entry, job, first_at, finished = ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
    local digest, result, idem = digests[tonumber(ARGV[i+5])], ARGV[i+6], ARGV[i+7]
    local x = i + 8
    if idem ~= '' then i = x + 3 else i = x end
    -- Only a delivery that is still pending may change its job, so a batch
    -- re-sent after a lost reply changes nothing twice.
    if ack(entry) then
      -- A first delivery that succeeded at once has no record, history or
      -- retry state to tidy: its id is its entry id.
      local rec = prefix .. entry
      if ttl > 0 then
        redis.call('HSET', rec, 'state', 'succeeded', 'job', job, 'attempts', '1',
          'first_at', first_at, 'last_at', finished, 'plugin', digest)
        if result ~= '' then redis.call('HSET', rec, 'result', result) end
        redis.call('EXPIRE', rec, ttl)
      end
      if idem ~= '' then
        mark_done(idem, entry, ARGV[x+1], ARGV[x])
        if ttl > 0 then
          local hkey = rec .. ':history'
          redis.call('RPUSH', hkey, ARGV[x+2])
          redis.call('EXPIRE', hkey, ttl)
        end
      end
    end
  else
    local entry, id, job = ARGV[i+1], ARGV[i+2], ARGV[i+3]
    local attempt, started, finished = ARGV[i+4], ARGV[i+5], ARGV[i+6]
    local payload, result, class, code = ARGV[i+7], ARGV[i+8], ARGV[i+9], ARGV[i+10]
    local message, upstream, reason, digest = ARGV[i+11], ARGV[i+12], ARGV[i+13], ARGV[i+14]
    local has_ckpt, ckpt, first_at = ARGV[i+15], ARGV[i+16], ARGV[i+17]
    local delay, hist = tonumber(ARGV[i+18]), ARGV[i+19]
    local idem, idem_ttl, digest_out, expiries = ARGV[i+20], ARGV[i+21], ARGV[i+22], ARGV[i+23]
    local dead_payload = ARGV[i+24]
    local n = tonumber(ARGV[i+25])
    local x = i + 26
    i = x + 2 * n
    if ack(entry) then
      local rec = prefix .. id
      local hkey = rec .. ':history'
      if kind == 'dup' then
        -- Nothing ran. A redelivery of a completed job leaves its record as it
        -- is; a second enqueue of the same key ends as a duplicate of the first.
        -- A queue that keeps no records of succeeded jobs keeps none of these.
        if ttl > 0 then
          redis.call('RPUSH', hkey, hist)
          redis.call('LTRIM', hkey, -hist_max, -1)
        end
        if reason ~= id and ttl > 0 then
          redis.call('HSET', rec, 'state', 'succeeded', 'job', job, 'duplicate_of', reason,
            'attempts', '0', 'last_at', finished)
          redis.call('EXPIRE', rec, ttl)
          redis.call('EXPIRE', hkey, ttl)
        end
      elseif kind == 'ok' and ttl == 0 then
        -- The queue keeps no record of succeeded jobs: the one this job had
        -- while it was retried goes, its idempotency key stays.
        if idem ~= '' then mark_done(idem, id, digest_out, idem_ttl) end
        redis.call('DEL', rec, hkey)
      else
        if first_at ~= '0' then redis.call('HSETNX', rec, 'first_at', first_at) end
        redis.call('HSET', rec, 'job', job, 'attempts', attempt, 'last_at', finished)
        if digest ~= '' then redis.call('HSET', rec, 'plugin', digest) end
        redis.call('RPUSH', hkey, hist)
        redis.call('LTRIM', hkey, -hist_max, -1)
        if kind == 'ok' then
          redis.call('HSET', rec, 'state', 'succeeded')
          redis.call('HDEL', rec, 'checkpoint', 'entry', 'payload', 'due_at', 'next_attempt')
          if result ~= '' then redis.call('HSET', rec, 'result', result) end
          if idem ~= '' then mark_done(idem, id, digest_out, idem_ttl) end
          redis.call('EXPIRE', rec, ttl)
          redis.call('EXPIRE', hkey, ttl)
        else
          redis.call('HSET', rec, 'payload', payload, 'last_class', class, 'last_code', code,
            'last_message', message, 'last_upstream', upstream)
          if kind == 'retry' then
            local next_attempt = tostring(tonumber(attempt) + 1)
            redis.call('HSET', rec, 'next_attempt', next_attempt, 'last_delay_ms', tostring(delay),
              'lease_expiries', expiries)
            if has_ckpt == '1' then redis.call('HSET', rec, 'checkpoint', ckpt) end
            for k = 0, n - 1 do
              redis.call('HSET', rec, 'x:' .. ARGV[x + 2*k], ARGV[x + 2*k + 1])
            end
            if delay <= 0 then
              local f = {'id', id, 'job', job, 'payload', payload, 'attempt', next_attempt,
                'first_at', first_at, 'last_delay_ms', '0', 'lease_expiries', expiries}
              if has_ckpt == '1' then f[#f+1] = 'checkpoint'; f[#f+1] = ckpt end
              for k = 0, n - 1 do
                f[#f+1] = ARGV[x + 2*k]; f[#f+1] = ARGV[x + 2*k + 1]
              end
              local e = redis.call('XADD', KEYS[1], '*', unpack(f))
              redis.call('HSET', rec, 'state', 'queued', 'entry', e)
              redis.call('HDEL', rec, 'due_at')
            else
              -- Due times come from the Redis clock, so daemons with skewed
              -- clocks still agree on when a retry is due.
              local due = now + delay
              redis.call('ZADD', KEYS[3], due, id)
              redis.call('HSET', rec, 'state', 'retrying', 'due_at', tostring(due))
              redis.call('HDEL', rec, 'entry')
              if earliest == nil or due < earliest then earliest = due end
            end
          else
            local first = redis.call('HGET', rec, 'first_at') or ''
            local f = {'id', id, 'job', job, 'queue', queue, 'reason', reason, 'class', class,
              'code', code, 'message', message, 'upstream', upstream, 'attempts', attempt,
              'first_at', first, 'last_at', finished, 'plugin', digest, 'entry', entry,
              'payload', dead_payload}
            for k = 0, n - 1 do
              local name = ARGV[x + 2*k]
              if not dead_fields[name] then
                f[#f+1] = name; f[#f+1] = ARGV[x + 2*k + 1]
              end
            end
            local d = redis.call('XADD', KEYS[2], '*', unpack(f))
            redis.call('HSET', rec, 'state', 'dead', 'dead_reason', reason, 'dead_entry', d)
            redis.call('HDEL', rec, 'entry', 'due_at', 'next_attempt')
          end
        end
      end
    end
  end
end
if applied > 0 then
  -- Entries are delivered in id order, so every entry before the oldest
  -- pending one was delivered and has been acknowledged; with nothing
  -- pending, that holds for every entry up to the group's last delivered
  -- one. Entries after it (not yet delivered, or just added as retries)
  -- are never touched.
  local minid = nil
  local p = redis.pcall('XPENDING', KEYS[1], group)
  if type(p) == 'table' and p.err == nil then
    if tonumber(p[1]) > 0 then
      minid = p[2]
    else
      for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
        local name, last = nil, nil
        for k = 1, #g, 2 do
          if g[k] == 'name' then name = g[k + 1] end
          if g[k] == 'last-delivered-id' then last = g[k + 1] end
        end
        if name == group and last then
          local ms, seq = string.match(last, '^(%d+)-(%d+)$')
          -- Sequence numbers past 2^53 lose precision in Lua; keep that entry.
          if ms and #seq < 15 then minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end
        end
      end
    end
  end
  -- While entries are pending, an approximate trim frees whole nodes only
  -- and costs next to nothing; once nothing is pending, an exact one
  -- leaves the stream holding only what is still to be delivered.
  local trimmed = 0
  if minid and tonumber(p[1]) > 0 then
    trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
  elseif minid then
    trimmed = redis.call('XTRIM', KEYS[1], 'MINID', minid)
  end
  acked_left = acked_left + kept - trimmed
  if minid and tonumber(p[1]) == 0 then acked_left = 0 end
  if acked_left < 0 then acked_left = 0 end
  redis.call('SET', KEYS[4], tostring(acked_left))
end
if earliest ~= nil then redis.call('PUBLISH', wake, tostring(earliest)) end
return table.concat(took)
"#;

const PROMOTE: &str = r#"
-- KEYS[1] delayed set, KEYS[2] jobs stream; ARGV[1] record prefix, ARGV[2] limit.
-- Moves due jobs back to the stream. ZREM and XADD happen in one script, so
-- two daemons promoting at once cannot both deliver the same job.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved, missing = 0, {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local rec = ARGV[1] .. id
  local h = redis.call('HGETALL', rec)
  local r = {}
  for k = 1, #h, 2 do r[h[k]] = h[k+1] end
  if r['job'] == nil then
    missing[#missing+1] = id
  else
    local f = {'id', id, 'job', r['job'], 'payload', r['payload'] or '',
      'attempt', r['next_attempt'] or '1'}
    for _, name in ipairs({'first_at', 'last_delay_ms', 'checkpoint', 'lease_expiries'}) do
      if r[name] then f[#f+1] = name; f[#f+1] = r[name] end
    end
    for k = 1, #h, 2 do
      if string.sub(h[k], 1, 2) == 'x:' then
        f[#f+1] = string.sub(h[k], 3); f[#f+1] = h[k+1]
      end
    end
    local e = redis.call('XADD', KEYS[2], '*', unpack(f))
    redis.call('HSET', rec, 'state', 'queued', 'entry', e)
    redis.call('HDEL', rec, 'due_at')
    moved = moved + 1
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if nxt[2] then next_due = tonumber(nxt[2]) end
return {moved, now, next_due, missing}
"#;

const RENEW: &str = r#"
-- KEYS[1] jobs stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids.
-- The heartbeat: resets the idle time of deliveries this consumer still
-- owns, so a long attempt is never reclaimed from a live worker. A delivery
-- another daemon has reclaimed is left alone and reported back.
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] ~= nil and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost+1] = ARGV[i]
  end
end
return lost
"#;

const CHECK_KEYS: &str = r#"
-- KEYS[1] jobs stream; ARGV: triples of job id, idempotency key, ttl (ms).
-- Claims each key for its job, or says why the job must not run:
-- 'run', 'dup <owner job id>' (a second enqueue), or 'done' (a redelivery of
-- a job that already succeeded).
local q = string.sub(KEYS[1], 1, -5)
local out = {}
for i = 1, #ARGV, 3 do
  local id, key, ttl = ARGV[i], ARGV[i+1], ARGV[i+2]
  local k = q .. 'idem:' .. key
  local v = redis.call('GET', k)
  if not v then
    redis.call('SET', k, id, 'PX', ttl)
    out[#out+1] = 'run'
  else
    local owner, state = string.match(v, '^(%S+)%s*(%S*)')
    if owner ~= id then
      out[#out+1] = 'dup ' .. owner
    elseif state == 'done' then
      out[#out+1] = 'done'
    else
      out[#out+1] = 'run'
    end
  end
end
return out
"#;

/// Version of the Redis Function library; bump it with every change.
pub const FUNCTIONS_VERSION: &str = "1";

/// The Redis Function library every client can call to enqueue atomically.
///
/// `FCALL ward_enqueue 1 ward:{Q}:jobs <job> <payload> [idempotency_key] [delay_ms] [ttl_ms] [at_ms]`
/// (empty strings for the optional arguments you skip) returns
/// `[job_id, "created" | "duplicate", due_ms]` (`due_ms` is 0 when the job is
/// ready now). `ttl_ms` is how long the key is remembered (default 24 h).
pub const FUNCTIONS: &str = r#"#!lua name=ward
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function enqueue(keys, args)
  local stream = keys[1]
  if stream == nil or string.sub(stream, -5) ~= ':jobs' or string.sub(stream, 1, 5) ~= 'ward:' then
    return redis.error_reply('ERR ward_enqueue: the one key must be ward:{QUEUE}:jobs')
  end
  local q = string.sub(stream, 1, -5)
  local job, payload = args[1], args[2] or ''
  if job == nil or job == '' then
    return redis.error_reply('ERR ward_enqueue: the first argument must be the job type')
  end
  local key = args[3] or ''
  local delay = tonumber(args[4] or '')
  local ttl = tonumber(args[5] or '') or 86400000
  local at = tonumber(args[6] or '')
  if key ~= '' then
    local v = redis.call('GET', q .. 'idem:' .. key)
    if v then
      return {string.match(v, '^(%S+)'), 'duplicate', 0}
    end
  end
  local now = now_ms()
  local due = at
  if due == nil and delay ~= nil and delay > 0 then due = now + delay end
  local id
  if due == nil then
    local f = {'job', job, 'payload', payload}
    if key ~= '' then f[#f+1] = 'idempotency_key'; f[#f+1] = key end
    id = redis.call('XADD', stream, '*', unpack(f))
  else
    id = 'd' .. now .. '-' .. redis.call('INCR', q .. 'seq')
    local rec = q .. 'job:' .. id
    redis.call('HSET', rec, 'state', 'queued', 'job', job, 'payload', payload,
      'next_attempt', '1', 'due_at', tostring(due), 'enqueued_at', tostring(now))
    if key ~= '' then redis.call('HSET', rec, 'x:idempotency_key', key) end
    redis.call('ZADD', q .. 'delayed', due, id)
    redis.call('PUBLISH', q .. 'wake', tostring(due))
  end
  if key ~= '' then redis.call('SET', q .. 'idem:' .. key, id, 'PX', ttl) end
  return {id, 'created', due or 0}
end

redis.register_function('ward_enqueue', enqueue)
redis.register_function{function_name = 'ward_version', flags = {'no-writes'},
  callback = function() return '1' end}
"#;

/// The fields of a dead-letter entry that describe the failure; every other
/// field is a correlation field carried from the job's entry (`user_id`,
/// `idempotency_key`, ...). Kept in step with `dead_fields` in [`APPLY`].
pub const DEAD_ENTRY_FIELDS: [&str; 14] = [
    "id", "job", "queue", "reason", "class", "code", "message", "upstream", "attempts", "first_at",
    "last_at", "plugin", "payload", "entry",
];

const REQUEUE: &str = r#"
-- Puts one dead job back as a fresh job, atomically.
-- KEYS[1] jobs stream, KEYS[2] dead stream, KEYS[3] job record, KEYS[4] its history
-- ARGV[1] dead entry id, [2] job id, [3] by, [4] note ('' for none), [5] history length
-- Returns {'ok', new entry id} | {'gone', ''} | {'refused', why}.
-- The XDEL of the dead entry is the guard: only the call that removes it
-- (XDEL returns 1) requeues, so two operators requeuing the same dead
-- letter at once run the job once. The job restarts at attempt 1 with its
-- budget reset and the ORIGINAL payload from the record (the dead entry's
-- may be redacted); correlation fields come from the dead entry.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead_fields = {id=1, job=1, queue=1, reason=1, class=1, code=1, message=1,
  upstream=1, attempts=1, first_at=1, last_at=1, plugin=1, payload=1, entry=1}
local found = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #found == 0 then return {'gone', ''} end
local df = found[1][2]
local d = {}
for k = 1, #df, 2 do d[df[k]] = df[k+1] end
if d['id'] ~= ARGV[2] then
  return {'refused', 'dead letter ' .. ARGV[1] .. ' is of job ' .. tostring(d['id']) .. ', not ' .. ARGV[2]}
end
local job = redis.call('HGET', KEYS[3], 'job')
if not job then
  return {'refused', 'the job record ' .. KEYS[3] .. ' is gone, and the original payload with it; enqueue the job anew'}
end
if job == '' then
  return {'refused', 'it is a malformed entry that names no job type; discard it, or enqueue a corrected job'}
end
if redis.call('XDEL', KEYS[2], ARGV[1]) ~= 1 then return {'gone', ''} end
local f = {'id', ARGV[2], 'job', job, 'payload', redis.call('HGET', KEYS[3], 'payload') or '',
  'attempt', '1'}
for k = 1, #df, 2 do
  if not dead_fields[df[k]] then f[#f+1] = df[k]; f[#f+1] = df[k+1] end
end
local e = redis.call('XADD', KEYS[1], '*', unpack(f))
redis.call('HDEL', KEYS[3], 'first_at', 'last_at', 'last_class', 'last_code', 'last_message',
  'last_upstream', 'dead_reason', 'dead_entry', 'checkpoint', 'next_attempt', 'last_delay_ms',
  'due_at', 'result')
redis.call('HSET', KEYS[3], 'state', 'queued', 'attempts', '0', 'entry', e)
redis.call('PERSIST', KEYS[3])
redis.call('PERSIST', KEYS[4])
local ev = {event='requeued', by=ARGV[3], at=now, dead_entry=ARGV[1], entry=e}
if ARGV[4] ~= '' then ev['note'] = ARGV[4] end
redis.call('RPUSH', KEYS[4], cjson.encode(ev))
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[5]), -1)
return {'ok', e}
"#;

const DISCARD: &str = r#"
-- Marks one dead job "won't retry", atomically.
-- KEYS[1] dead stream, KEYS[2] job record, KEYS[3] its history
-- ARGV[1] dead entry id, [2] job id, [3] by, [4] note ('' for none),
-- [5] history length, [6] record ttl (s)
-- Returns {'ok', ''} | {'gone', ''} | {'refused', why}; XDEL == 1 is the
-- guard, as in REQUEUE.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {'gone', ''} end
local df = found[1][2]
local d = {}
for k = 1, #df, 2 do d[df[k]] = df[k+1] end
if d['id'] ~= ARGV[2] then
  return {'refused', 'dead letter ' .. ARGV[1] .. ' is of job ' .. tostring(d['id']) .. ', not ' .. ARGV[2]}
end
if redis.call('XDEL', KEYS[1], ARGV[1]) ~= 1 then return {'gone', ''} end
redis.call('HSETNX', KEYS[2], 'job', d['job'] or '')
redis.call('HSET', KEYS[2], 'state', 'discarded', 'discarded_by', ARGV[3],
  'discarded_at', tostring(now), 'discard_note', ARGV[4])
redis.call('HDEL', KEYS[2], 'dead_entry', 'entry', 'due_at', 'next_attempt', 'checkpoint')
local ev = {event='discarded', by=ARGV[3], at=now, dead_entry=ARGV[1]}
if ARGV[4] ~= '' then ev['note'] = ARGV[4] end
redis.call('RPUSH', KEYS[3], cjson.encode(ev))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
return {'ok', ''}
"#;

const TRIM_DEAD: &str = r#"
-- Applies a queue's dead-letter retention.
-- KEYS[1] dead stream; ARGV[1] max length or '', [2] max age (ms) or '',
-- [3] record prefix, [4] record ttl (s), [5] most entries removed per
-- limit and call, [6] history length.
-- Returns {removed by age, removed by length, more}: more is 1 when a limit
-- was hit and another call should follow. Age is measured in the Redis
-- clock against the entry id (the time of dead-lettering). The record of
-- each removed dead letter (if it still points at it) gets a TTL and a
-- history line, so memory stays bounded and `ward job show` can say why.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, ttl, hist_max = tonumber(ARGV[5]), tonumber(ARGV[4]), tonumber(ARGV[6])
local function retire(victims, why)
  for _, v in ipairs(victims) do
    local f = v[2]
    local id = nil
    for k = 1, #f, 2 do if f[k] == 'id' then id = f[k+1] end end
    if id then
      local rec = ARGV[3] .. id
      local de = redis.call('HGET', rec, 'dead_entry')
      -- Records written before `dead_entry` existed are matched by state.
      if de == v[1] or (not de and redis.call('HGET', rec, 'state') == 'dead') then
        redis.call('HDEL', rec, 'dead_entry')
        redis.call('HSET', rec, 'dead_trimmed', why)
        local h = rec .. ':history'
        redis.call('RPUSH', h, cjson.encode({event='trimmed', by='retention', why=why, at=now, dead_entry=v[1]}))
        redis.call('LTRIM', h, -hist_max, -1)
        redis.call('EXPIRE', rec, ttl)
        redis.call('EXPIRE', h, ttl)
      end
    end
    redis.call('XDEL', KEYS[1], v[1])
  end
  return #victims
end
local by_age, by_len, more = 0, 0, 0
if ARGV[2] ~= '' then
  local minid = string.format('%d', now - tonumber(ARGV[2]))
  local old = redis.call('XRANGE', KEYS[1], '-', '(' .. minid .. '-0', 'COUNT', limit)
  by_age = retire(old, 'dead_max_age')
  if by_age >= limit then more = 1 end
end
if ARGV[1] ~= '' then
  local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
  if excess > 0 then
    if excess > limit then more = 1; excess = limit end
    by_len = retire(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess), 'dead_max_len')
  end
end
return {by_age, by_len, more}
"#;

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

const BREAKER_RECORD: &str = r#"
-- KEYS[1] the set of upstreams with a breaker; ARGV[1] breaker key prefix
-- ('ward:{Q}:breaker:'), [2] upstream, [3] failures to add (0: a success),
-- [4] failures that open it, [5] window (ms), [6] open for (ms).
-- Returns {state, open_until_ms, opened_now (1 if this call opened it), failures}.
-- An open breaker ignores what is reported while it is open. Once its time
-- is up it is half open: one more failure opens it again at once, a success
-- closes it (forgets every failure). Successes do not touch a closed one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = ARGV[1] .. ARGV[2]
local add, threshold = tonumber(ARGV[3]), tonumber(ARGV[4])
local window, open_for = tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', key, 'failures', 'window_until', 'open_until')
local failures, wu, ou = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
if now < ou then return {'open', ou, 0, failures} end
if add == 0 then
  -- A success closes a half-open breaker; a closed one keeps counting.
  if ou > 0 then redis.call('DEL', key) end
  return {'closed', 0, 0, failures}
end
redis.call('SADD', KEYS[1], ARGV[2])
if ou > 0 then
  -- Half open: the first failure after an opening re-opens it.
  failures = threshold
elseif now >= wu then
  failures = add
  wu = now + window
else
  failures = failures + add
end
if failures >= threshold then
  ou = now + open_for
  redis.call('HSET', key, 'failures', threshold, 'window_until', ou, 'open_until', ou,
    'opened_at', now)
  redis.call('HINCRBY', key, 'openings', 1)
  redis.call('PEXPIRE', key, open_for + window * 2)
  return {'open', ou, 1, threshold}
end
redis.call('HSET', key, 'failures', failures, 'window_until', wu)
redis.call('PEXPIRE', key, window * 2 + open_for)
return {'closed', 0, 0, failures}
"#;

const BREAKERS: &str = r#"
-- KEYS[1] the set of upstreams with a breaker; ARGV[1] breaker key prefix.
-- Read-only: {now_ms, upstream, failures, open_until, openings, ...}.
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. u, 'failures', 'open_until', 'openings')
  out[#out+1] = u
  out[#out+1] = tonumber(h[1] or '0')
  out[#out+1] = tonumber(h[2] or '0')
  out[#out+1] = tonumber(h[3] or '0')
end
return out
"#;

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

const SAMPLE: &str = r#"
-- KEYS[1] jobs stream, KEYS[2] delayed set, KEYS[3] dead stream, KEYS[4]
-- count of acknowledged entries not yet trimmed; ARGV[1] group.
-- Read-only. Ready = the group's lag when Redis knows it, else stream length
-- minus pending minus acknowledged entries not yet trimmed. The oldest ready entry
-- is the first one after the group's last-delivered id.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local xlen = redis.call('XLEN', KEYS[1])
local delayed = redis.call('ZCARD', KEYS[2])
local dead = redis.call('XLEN', KEYS[3])
local found, pending, lag, last = 0, 0, -1, nil
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local f = {}
    for k = 1, #g, 2 do f[g[k]] = g[k + 1] end
    if f['name'] == ARGV[1] then
      found = 1
      pending = tonumber(f['pending']) or 0
      last = f['last-delivered-id']
      if type(f['lag']) == 'number' then lag = f['lag'] end
    end
  end
end
local oldest = -1
if found == 1 and last then
  local nxt = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
  if nxt[1] then oldest = tonumber(string.match(nxt[1][1], '^(%d+)')) end
end
local ready = lag
if ready < 0 then
  ready = math.max(xlen - pending - tonumber(redis.call('GET', KEYS[4]) or '0'), 0)
end
return {found, ready, pending, delayed, dead, now, oldest}
"#;

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
