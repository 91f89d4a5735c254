//! The retry policy engine end to end: backoff timing read back from the
//! recorded history, Retry-After, budgets, class treatment, delayed delivery.

use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn ms(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn backoff_without_jitter_spaces_attempts_100_200_400_ms_apart() {
    let redis = Redis::start();
    let retry = "max_attempts = 6\ninitial_delay = \"100ms\"\nmultiplier = 2.0\nmax_delay = \"10s\"\njitter = \"none\"";
    let ward_proc = Ward::start(&config_with(&redis, 4, retry, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(&redis, "flaky", r#"{"fail":"transient","times":3}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 4, "{s}");
    let h = history(&s);
    assert_eq!(h.len(), 4, "one history entry per attempt: {s}");
    for (i, want) in [100u64, 200, 400].into_iter().enumerate() {
        assert_eq!(
            ms(&h[i], "delay_ms"),
            want,
            "delay chosen after attempt {}",
            i + 1
        );
        let gap = ms(&h[i + 1], "started_at") - ms(&h[i], "finished_at");
        assert!(
            gap + 2 >= want && gap <= want + 250,
            "attempt {} started {gap} ms after attempt {} ended; wanted ~{want} ms",
            i + 2,
            i + 1
        );
    }
    assert_eq!(h[3]["class"], "success");
    // One log line per failed attempt, with the chosen delay.
    let delays: Vec<u64> = ward_proc
        .log_lines()
        .iter()
        .filter(|l| l["message"] == "attempt failed; retrying" && l["job_id"] == id.as_str())
        .map(|l| l["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, vec![100, 200, 400]);
}

#[test]
fn a_plugins_retry_after_is_honoured_and_the_job_shows_retrying_meanwhile() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(
        &redis,
        "flaky",
        r#"{"fail":"recoverable","times":1,"retry_after_ms":1500,"code":"http-429"}"#,
    );
    wait_for(Duration::from_secs(10), "the job to be retrying", || {
        show(&redis, &id)["state"] == "retrying"
    });
    let waiting = show(&redis, &id);
    assert!(waiting["due_at_ms"].as_u64().is_some(), "{waiting}");
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    let h = history(&s);
    assert_eq!(ms(&h[0], "delay_ms"), 1500);
    assert_eq!(h[0]["code"], "http-429");
    let gap = ms(&h[1], "started_at") - ms(&h[0], "finished_at");
    assert!(
        gap >= 1500,
        "attempt 2 came {gap} ms after attempt 1, before its Retry-After"
    );
}

#[test]
fn max_elapsed_ends_a_job_before_max_attempts() {
    let redis = Redis::start();
    let retry = "max_attempts = 10\nmax_elapsed = \"1500ms\"\ninitial_delay = \"1s\"\nmax_delay = \"1m\"\njitter = \"none\"";
    let _ward = Ward::start(&config_with(&redis, 4, retry, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(&redis, "flaky", r#"{"fail":"transient"}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["dead_reason"], "budget exhausted: elapsed", "{s}");
    // Attempt 1 at 0 s, attempt 2 at ~1 s; a 2 s delay would pass 1.5 s.
    assert_eq!(s["attempts"], 2, "{s}");
    let dead = dead_letters(&redis);
    assert_eq!(text(&dead[0], "reason"), "budget exhausted: elapsed");
}

#[test]
fn timeouts_and_crashes_follow_their_configured_classes() {
    let redis = Redis::start();
    let jobs = job(
        "hang",
        "flaky",
        "timeout = \"200ms\"\nretry = { on_timeout = \"permanent\" }",
    ) + &job(
        "crash",
        "flaky",
        "retry = { on_crash = \"transient\", max_attempts = 2 }",
    ) + &job("hang-default", "flaky", "timeout = \"200ms\"");
    let _ward = Ward::start(&config(&redis, 4, &jobs)).ready();

    let hang = enqueue(&redis, "hang", r#"{"hang_ms":60000}"#);
    let s = wait_final(&redis, &hang, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("dead"), Some(1)),
        "{s}"
    );
    assert_eq!(s["dead_reason"], "permanent", "{s}");
    assert_eq!(s["last_error"]["class"], "timeout", "{s}");

    let crash = enqueue(&redis, "crash", r#"{"trap":true}"#);
    let s = wait_final(&redis, &crash, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("dead"), Some(2)),
        "{s}"
    );
    assert_eq!(s["dead_reason"], "budget exhausted: attempts", "{s}");
    assert_eq!(s["last_error"]["class"], "crash", "{s}");

    // The defaults: a timeout is transient (retried), a crash permanent.
    let s = wait_final(
        &redis,
        &enqueue(&redis, "hang-default", r#"{"hang_ms":60000}"#),
        WAIT,
    );
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("dead"), Some(3)),
        "{s}"
    );
}

#[test]
fn delayed_enqueue_starts_on_time_not_before() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = enqueue_with(&redis, &["--delay", "1s"], "flaky", r#"{"times":0}"#);
    let queued = show(&redis, &id);
    assert_eq!(queued["state"], "queued", "{queued}");
    let due = ms(&queued, "due_at_ms");
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    let started = ms(&history(&s)[0], "started_at");
    assert!(started >= due, "started {} ms early", due - started);
    assert!(
        started - due < 300,
        "started {} ms after it was due",
        started - due
    );

    let at =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() + Duration::from_millis(800))
            .to_string();
    let id = enqueue_with(&redis, &["--at", &at], "flaky", r#"{"times":0}"#);
    let due = ms(&show(&redis, &id), "due_at_ms");
    let s = wait_final(&redis, &id, WAIT);
    let started = ms(&history(&s)[0], "started_at");
    assert!(
        started >= due && started - due < 300,
        "due {due}, started {started}"
    );

    let bad = ward(&[
        "enqueue",
        "--redis",
        &redis.url(),
        "--at",
        "tomorrow",
        "q",
        "flaky",
        "{}",
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("RFC 3339"), "{}", stderr(&bad));
}

#[test]
fn two_daemons_promoting_at_once_run_each_retry_once() {
    let redis = Redis::start();
    let retry = "max_attempts = 3\ninitial_delay = \"300ms\"\njitter = \"none\"";
    let cfg = config_with(&redis, 16, retry, &job("flaky", "flaky", ""));
    let a = Ward::start(&cfg).ready();
    let b = Ward::start(&cfg).ready();
    let ids = xadd_many(&redis, 300, "flaky", r#"{"fail":"transient","times":1}"#);
    // Every job fails once, waits in the delayed set, and both daemons race
    // to promote the retries.
    wait_for(WAIT, "all 300 jobs to succeed", || {
        let states = job_fields(&redis, &ids, "state");
        states.iter().all(|s| s.as_deref() == Some("succeeded"))
    });
    wait_for(Duration::from_secs(5), "the logs to be flushed", || {
        runs_per_job(&[&a, &b]).values().sum::<usize>() >= 600
    });
    let runs = runs_per_job(&[&a, &b]);
    for id in &ids {
        assert_eq!(
            runs.get(id),
            Some(&2),
            "job {id}: one failing attempt and one retry, no more"
        );
    }
    let delayed: usize = redis::cmd("ZCARD")
        .arg("ward:{q}:delayed")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(delayed, 0);
}
