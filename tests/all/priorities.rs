//! Priorities: `high` jobs overtake a `low` backlog within a
//! few batches, the starvation guard keeps `low` moving under sustained
//! `high` load, a job keeps its level across retries, and every way in
//! (plain `XADD` with the `priority` field, `ward enqueue --priority`,
//! `ward_enqueue`) names a level.

use std::time::{Duration, Instant};

use ward_testkit::{
    Redis, Ward, config, config_queue, enqueue_with, job, job_fields, queue_stream, wait_final,
    wait_for, xadd_entries, xadd_pipe,
};

const WAIT: Duration = Duration::from_secs(60);
/// Succeeds after sleeping 10 ms: long enough that start times order jobs.
const SLOW_OK: &str = r#"{"times":0,"sleep_ms":10}"#;

/// `n` plain `XADD`s of job `a` with `payload` and `priority level` into
/// queue `q`, pipelined in chunks; returns the job ids.
fn xadd_level(redis: &Redis, n: usize, payload: &str, level: &str) -> Vec<String> {
    let stream = queue_stream("q");
    let mut ids = Vec::with_capacity(n);
    let mut con = redis.con();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            xadd_pipe(
                &mut pipe,
                &stream,
                &[("job", "a"), ("payload", payload), ("priority", level)],
            );
        }
        let got: Vec<String> = pipe.query(&mut con).unwrap();
        ids.extend(got);
    }
    ids
}

/// When each of `ids` started its (first) attempt, Unix ms; `None` for jobs
/// that have not run.
fn started(redis: &Redis, ids: &[String]) -> Vec<Option<u64>> {
    job_fields(redis, ids, "first_at")
        .into_iter()
        .map(|v| v.and_then(|s| s.parse().ok()))
        .collect()
}

/// How many entries the group `ward` has read from stream `stream`.
fn entries_read(redis: &Redis, stream: &str) -> i64 {
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query(&mut redis.con())
        .unwrap();
    for g in groups {
        let redis::Value::Array(kv) = g else { continue };
        for pair in kv.chunks(2) {
            if let [redis::Value::BulkString(k), redis::Value::Int(n)] = pair
                && k.as_slice() == b"entries-read"
            {
                return *n;
            }
        }
    }
    -1
}

#[test]
fn high_jobs_start_within_a_few_batches_behind_fifty_thousand_low_ones() {
    let redis = Redis::start();
    const CONCURRENCY: usize = 4;
    let low = xadd_level(&redis, 50_000, SLOW_OK, "low");
    let high = xadd_level(&redis, 20, SLOW_OK, "high");
    let w = Ward::start(&config(&redis, CONCURRENCY as u32, &job("a", "flaky", ""))).ready();
    for id in &high {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    let first_high = started(&redis, &high).into_iter().flatten().min().unwrap();
    let low_before = started(&redis, &low)
        .into_iter()
        .flatten()
        .filter(|t| *t < first_high)
        .count();
    // A batch is at most the free slots (10 ms attempts lease no more);
    // every 12th read starts at `low`, the rest move the backlog
    // (1024 entries a call, ~49 calls) before the first high job is seen.
    let bound = 10 * CONCURRENCY;
    eprintln!("{low_before} low jobs started before the first high one");
    assert!(
        low_before <= bound,
        "{low_before} low jobs started before the first high one (bound {bound})"
    );
    drop(w);
}

#[test]
fn low_jobs_progress_under_sustained_high_load() {
    let redis = Redis::start();
    let high = xadd_level(&redis, 3_000, r#"{"times":0,"sleep_ms":2}"#, "high");
    let low = xadd_level(&redis, 50, r#"{"times":0,"sleep_ms":2}"#, "low");
    let w = Ward::start(&config(&redis, 4, &job("a", "flaky", ""))).ready();
    wait_for(WAIT, "five low jobs ran", || {
        started(&redis, &low).iter().flatten().count() >= 5
    });
    let high_done = started(&redis, &high).iter().flatten().count();
    assert!(
        high_done < high.len() / 2,
        "low jobs waited until {high_done} of {} high ones had run",
        high.len()
    );
    drop(w);
}

#[test]
fn a_retried_job_keeps_its_level_and_every_way_in_names_one() {
    let redis = Redis::start();
    let w = Ward::start(&config(&redis, 2, &job("a", "flaky", ""))).ready();
    let high = queue_stream("q") + ":high";
    let low = queue_stream("q") + ":low";
    // Fails its first attempt, succeeds on the retry.
    let once = r#"{"times":1}"#;
    let plain = xadd_entries(
        &redis,
        &[vec![("job", "a"), ("payload", once), ("priority", "high")]],
    );
    let done = wait_final(&redis, &plain[0], WAIT);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["attempts"], 2);
    assert_eq!(
        entries_read(&redis, &high),
        2,
        "both attempts ran from the high stream"
    );
    // `ward enqueue --priority` (plain path, and the function's).
    let cli = enqueue_with(&redis, &["--priority", "low"], "a", r#"{"times":0}"#);
    let keyed = enqueue_with(
        &redis,
        &["--priority", "low", "--idempotency-key", "k1"],
        "a",
        r#"{"times":0}"#,
    );
    for id in [cli.trim(), keyed.trim()] {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    assert_eq!(entries_read(&redis, &low), 2);
    // ward_enqueue refuses an unknown level and adds nothing.
    let before: i64 = redis::cmd("XLEN")
        .arg(queue_stream("q"))
        .query(&mut redis.con())
        .unwrap();
    let bad: redis::RedisResult<redis::Value> = redis::cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg(queue_stream("q"))
        .arg("a")
        .arg("{}")
        .arg("")
        .arg("")
        .arg("")
        .arg("")
        .arg("urgent")
        .query(&mut redis.con());
    let err = bad.unwrap_err().to_string();
    assert!(
        err.contains("priority must be high, normal or low"),
        "{err}"
    );
    let after: i64 = redis::cmd("XLEN")
        .arg(queue_stream("q"))
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(before, after);
    drop(w);
}

#[test]
fn a_delayed_job_keeps_its_level_when_promoted() {
    let redis = Redis::start();
    let w = Ward::start(&config(&redis, 2, &job("a", "flaky", ""))).ready();
    let t0 = Instant::now();
    let id = enqueue_with(
        &redis,
        &["--priority", "high", "--delay", "1s"],
        "a",
        r#"{"times":0}"#,
    );
    assert_eq!(wait_final(&redis, id.trim(), WAIT)["state"], "succeeded");
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert_eq!(entries_read(&redis, &(queue_stream("q") + ":high")), 1);
    drop(w);
}

#[test]
fn priority_weights_are_checked() {
    let redis = Redis::start();
    let cfg = config_queue(
        &redis,
        2,
        ward_testkit::FAST_RETRY,
        "priority_weights = [8, 0, 1]",
        &job("a", "flaky", ""),
    );
    let path = std::env::temp_dir().join(format!("ward-prio-{}.toml", std::process::id()));
    std::fs::write(&path, cfg).unwrap();
    let out = ward_testkit::ward(&["config", "check", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    assert!(
        ward_testkit::stderr(&out).contains("priority_weights"),
        "{}",
        ward_testkit::stderr(&out)
    );
}
