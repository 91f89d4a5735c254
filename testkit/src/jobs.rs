//! Putting jobs into a queue the way clients do (plain `XADD`s and `ward
//! enqueue`) and reading back what became of them. The helpers taking a
//! [`Redis`] speak of queue `q`, the one the config builders write.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{Redis, Ward, stderr, stdout, ward};

/// The stream of `queue`: where clients `XADD` its jobs.
pub fn queue_stream(queue: &str) -> String {
    format!("ward:{{{queue}}}:jobs")
}

/// Adds one `XADD <stream> * <fields>` to `pipe`.
pub fn xadd_pipe(pipe: &mut redis::Pipeline, stream: &str, fields: &[(&str, &str)]) {
    pipe.cmd("XADD").arg(stream).arg("*");
    for (k, v) in fields {
        pipe.arg(*k).arg(*v);
    }
}

/// Adds entries to queue `q` with one pipelined round trip; returns their
/// ids (= job ids).
pub fn xadd_entries(redis: &Redis, entries: &[Vec<(&str, &str)>]) -> Vec<String> {
    let stream = queue_stream("q");
    let mut pipe = redis::pipe();
    for fields in entries {
        xadd_pipe(&mut pipe, &stream, fields);
    }
    pipe.query(&mut redis.con()).unwrap()
}

/// `n` plain `XADD`s of job type `job` with `payload` into queue `q`, in one
/// pipeline, the way any client enqueues; returns the entry (= job) ids.
pub fn xadd_many(redis: &Redis, n: usize, job: &str, payload: &str) -> Vec<String> {
    let entry = vec![("job", job), ("payload", payload)];
    xadd_entries(redis, &vec![entry; n])
}

/// A plain `XADD` to queue `q` with extra fields; returns the job id.
pub fn xadd(redis: &Redis, job: &str, payload: &str, extra: &[(&str, &str)]) -> String {
    let mut fields = vec![("job", job), ("payload", payload)];
    fields.extend_from_slice(extra);
    xadd_entries(redis, &[fields]).remove(0)
}

/// The key of job `id`'s record in queue `q`.
fn record_key(id: &str) -> String {
    format!("ward:{{q}}:job:{id}")
}

/// The field `field` of the records of jobs `ids` in queue `q` (`None` where
/// a record or its field is missing), in one pipelined round trip.
pub fn job_fields(redis: &Redis, ids: &[String], field: &str) -> Vec<Option<String>> {
    let mut p = redis::pipe();
    for id in ids {
        p.cmd("HGET").arg(record_key(id)).arg(field);
    }
    p.query(&mut redis.con()).unwrap()
}

/// Every record of a job of type `job` in queue `q`, as field -> value
/// (found with `KEYS`: for tests only).
pub fn records_of(redis: &Redis, job: &str) -> Vec<HashMap<String, String>> {
    records_by_id(redis, job)
        .into_iter()
        .map(|(_, rec)| rec)
        .collect()
}

/// Like [`records_of`], each with its job id.
pub fn records_by_id(redis: &Redis, job: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut con = redis.con();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("ward:{q}:job:*")
        .query(&mut con)
        .unwrap();
    // `ward:{q}:job:<id>` only, not the hashes beside a record (`:progress`).
    keys.iter()
        .filter(|k| k.matches(':').count() == 3)
        .map(|k| {
            let rec: HashMap<String, String> =
                redis::cmd("HGETALL").arg(k).query(&mut con).unwrap();
            (k.trim_start_matches("ward:{q}:job:").to_string(), rec)
        })
        .filter(|(_, rec)| rec.get("job").map(String::as_str) == Some(job))
        .collect()
}

/// `ward enqueue` into queue `q`; returns the job id.
pub fn enqueue(redis: &Redis, job: &str, payload: &str) -> String {
    enqueue_with(redis, &[], job, payload)
}

/// `ward enqueue` with extra options (such as `--delay 1s`).
pub fn enqueue_with(redis: &Redis, options: &[&str], job: &str, payload: &str) -> String {
    let url = redis.url();
    let mut args = vec!["enqueue", "--redis", url.as_str()];
    args.extend_from_slice(options);
    args.extend_from_slice(&["q", job, payload]);
    let out = ward(&args);
    assert!(out.status.success(), "enqueue failed: {}", stderr(&out));
    stdout(&out)
}

/// Executions of the plugin per job id, counted from the log lines plugins
/// write through the host (one per attempt for `flaky`), across daemons.
pub fn runs_per_job(daemons: &[&Ward]) -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for w in daemons {
        for line in w.log_lines() {
            if line["target"] == "ward::plugin" {
                *runs
                    .entry(line["job_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    runs
}

/// The history of each of jobs `ids` of queue `q`, as `ward job show`
/// tells it, read straight from Redis in pipelines (thousands of jobs
/// at a time): the lines of its history list, and for a job that
/// succeeded on its first delivery at once, which writes none, first the
/// line its record tells (`first_at`..`last_at`).
pub fn histories(redis: &Redis, ids: &[String]) -> Vec<Vec<serde_json::Value>> {
    let mut con = redis.con();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1_000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("LRANGE")
                .arg(format!("{}:history", record_key(id)))
                .arg(0)
                .arg(-1);
            pipe.cmd("HMGET").arg(record_key(id)).arg(&[
                "state",
                "attempts",
                "first_at",
                "last_at",
                "duplicate_of",
            ]);
        }
        let got: Vec<redis::Value> = pipe.query(&mut con).unwrap();
        for pair in got.chunks(2) {
            let lines: Vec<String> = redis::from_redis_value(pair[0].clone()).unwrap();
            let rec: Vec<Option<String>> = redis::from_redis_value(pair[1].clone()).unwrap();
            let mut lines: Vec<serde_json::Value> = lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let num = |k: usize| rec[k].as_deref().and_then(|v| v.parse::<u64>().ok());
            let fresh = rec[0].as_deref() == Some("succeeded")
                && num(1) == Some(1)
                && rec[4].is_none()
                && !lines.iter().any(|v| v["then"] == "succeeded");
            if let (true, Some(start), Some(end)) = (fresh, num(2), num(3)) {
                let line = serde_json::json!({
                    "attempt": 1, "started_at": start, "finished_at": end,
                    "class": "success", "then": "succeeded",
                });
                lines.insert(0, line);
            }
            out.push(lines);
        }
    }
    out
}

/// `ward job show --json` for job `id` in queue `q`.
pub fn show(redis: &Redis, id: &str) -> serde_json::Value {
    let out = ward(&["job", "show", "--redis", &redis.url(), "q", id, "--json"]);
    assert!(
        out.status.success(),
        "job show {id} failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ward audit --json`: the audit trail, oldest first.
pub fn audit(redis: &Redis) -> Vec<serde_json::Value> {
    let out = ward(&["audit", "--redis", &redis.url(), "--json"]);
    assert!(out.status.success(), "ward audit failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until job `id` reaches a final state and returns its JSON.
pub fn wait_final(redis: &Redis, id: &str, timeout: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let deadline = Instant::now() + timeout;
    let record = record_key(id);
    let mut con = None;
    loop {
        // A look at the record's state is one round trip, `ward job show`
        // a process start: show only once the record says final, or when
        // it cannot be read (the command may know more than the record).
        if con.is_none() {
            con = crate::connect(&redis.url()).ok();
        }
        let state = con.as_mut().map(|c| {
            redis::cmd("HGET")
                .arg(&record)
                .arg("state")
                .query::<Option<String>>(c)
        });
        let settled = match state {
            Some(Ok(Some(s))) => matches!(s.as_str(), "succeeded" | "dead"),
            Some(Err(_)) => {
                con = None;
                true
            }
            _ => true,
        };
        let late = Instant::now() >= deadline;
        if settled || late {
            let out = ward(&["job", "show", "--redis", &redis.url(), "q", id, "--json"]);
            if out.status.success() {
                last = serde_json::from_slice(&out.stdout).unwrap();
                if matches!(last["state"].as_str(), Some("succeeded" | "dead")) {
                    return last;
                }
            }
        }
        assert!(
            !late,
            "job {id} did not finish within {timeout:?}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The attempt history of a job as [`show`] and [`wait_final`] return it.
pub fn history(job: &serde_json::Value) -> Vec<serde_json::Value> {
    job["history"].as_array().cloned().unwrap_or_default()
}

/// A stream entry's field/value pairs.
pub type Fields = Vec<(String, Vec<u8>)>;

/// The dead-letter entries of queue `q`, newest first, as field maps.
pub fn dead_letters(redis: &Redis) -> Vec<HashMap<String, Vec<u8>>> {
    let mut con = redis.con();
    let entries: Vec<(String, Fields)> = redis::cmd("XREVRANGE")
        .arg("ward:{q}:dead")
        .arg("+")
        .arg("-")
        .query(&mut con)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect()
}

/// Field `key` of a stream entry as text (empty when missing).
pub fn text(map: &HashMap<String, Vec<u8>>, key: &str) -> String {
    String::from_utf8_lossy(map.get(key).map(Vec::as_slice).unwrap_or(b"")).into_owned()
}

/// Creates the consumer group `ward` on `stream` (and the stream), as a
/// daemon would, so a test can lease entries before any daemon runs.
pub fn create_group(con: &mut redis::Connection, stream: &str) {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("ward")
        .arg("0")
        .arg("MKSTREAM")
        .query(con)
        .unwrap();
}

/// Leases up to `count` new entries of `stream` to `consumer` (as a daemon
/// that then dies would): they stay pending under its name.
pub fn lease_to(con: &mut redis::Connection, stream: &str, consumer: &str, count: usize) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("ward")
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query(con)
        .unwrap();
}
