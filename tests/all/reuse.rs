//! Opt-in instance reuse (`[[job]] reuse_instance = N`), with the real
//! `flaky` plugin: its `count` answer is a global counter, so it tells
//! whether an attempt ran in a fresh instance (`count 1`) or a kept one.
//! Concurrency 1 keeps the order of attempts, and so the counts, fixed.

use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
/// `times: 0`: the flaky plugin fails no attempt.
const COUNT: &str = r#"{"count":true,"times":0}"#;

/// Runs `payload` as a job of type `job` and waits for its end.
fn run(redis: &Redis, job: &str, payload: &str) -> serde_json::Value {
    wait_final(redis, &enqueue(redis, job, payload), WAIT)
}

/// The result of a job that must succeed.
fn result(redis: &Redis, job: &str, payload: &str) -> String {
    let s = run(redis, job, payload);
    assert_eq!(s["state"], "succeeded", "{s}");
    s["result"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_fresh_instance_per_attempt_is_the_default() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 1, &job("t", "flaky", ""))).ready();
    for _ in 0..3 {
        assert_eq!(result(&redis, "t", COUNT), "count 1");
    }
}

#[test]
fn a_reused_instance_serves_up_to_n_attempts_then_a_fresh_one_follows() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 1, &job("t", "flaky", "reuse_instance = 3"))).ready();
    let counts: Vec<String> = (0..7).map(|_| result(&redis, "t", COUNT)).collect();
    assert_eq!(
        counts,
        [
            "count 1", "count 2", "count 3", "count 1", "count 2", "count 3", "count 1"
        ]
    );
}

#[test]
fn a_failure_a_trap_or_a_timeout_discards_the_instance() {
    let redis = Redis::start();
    let cfg = config_with(
        &redis,
        1,
        "max_attempts = 1",
        &job("t", "flaky", "reuse_instance = 100\ntimeout = \"500ms\""),
    );
    let _ward = Ward::start(&cfg).ready();
    let endings = [
        (r#"{"fail":"transient"}"#, "transient"),
        (r#"{"fail":"permanent"}"#, "permanent"),
        (r#"{"trap":true}"#, "crash"),
        (r#"{"hang_ms":5000}"#, "timeout"),
        (r#"{"sleep_ms":5000}"#, "timeout"),
    ];
    for (payload, class) in endings {
        assert_eq!(result(&redis, "t", COUNT), "count 1", "before {payload}");
        assert_eq!(
            result(&redis, "t", COUNT),
            "count 2",
            "kept before {payload}"
        );
        let s = run(&redis, "t", payload);
        assert_eq!(s["state"], "dead", "{s}");
        assert_eq!(s["last_error"]["class"], class, "{s}");
        // The instance the failure ran in is gone: the next one is fresh.
        assert_eq!(result(&redis, "t", COUNT), "count 1", "after {payload}");
        // Start each round from a fresh instance again.
        let s = run(&redis, "t", r#"{"fail":"permanent"}"#);
        assert_eq!(s["state"], "dead", "{s}");
    }
}

#[test]
fn a_cancelled_attempt_discards_the_instance() {
    let redis = Redis::start();
    let cfg = config(
        &redis,
        1,
        &job("t", "flaky", "reuse_instance = 100\ntimeout = \"60s\""),
    );
    let _ward = Ward::start(&cfg).ready();
    assert_eq!(result(&redis, "t", COUNT), "count 1");
    assert_eq!(result(&redis, "t", COUNT), "count 2");
    let id = enqueue(&redis, "t", r#"{"sleep_ms":30000}"#);
    wait_for(WAIT, "the long attempt to run", || {
        show(&redis, &id)["state"] == "running"
    });
    let url = redis.url();
    let out = ward(&[
        "job",
        "cancel",
        "--note",
        "test",
        "--redis",
        url.as_str(),
        "q",
        id.as_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(WAIT, "the attempt to end cancelled", || {
        show(&redis, &id)["state"] == "cancelled"
    });
    assert_eq!(result(&redis, "t", COUNT), "count 1");
}

#[test]
fn a_kept_instance_never_serves_another_job_type_nor_shows_its_secret_or_checkpoint() {
    const VALUE: &str = "tok-reuse-4c3b2a";
    let redis = Redis::start();
    // `t2`'s retry waits a minute, so its failed attempt's record stays to be read.
    let jobs = job(
        "t1",
        "flaky",
        "reuse_instance = 100\nsecrets = [\"WARD_TEST_TOKEN\"]",
    ) + &job(
        "t2",
        "flaky",
        "reuse_instance = 100\nretry = { initial_delay = \"1m\", max_delay = \"1m\", jitter = \"none\" }",
    );
    let cfg = config(&redis, 1, &jobs);
    let _ward = Ward::start_with_env(&cfg, &[("WARD_TEST_TOKEN", VALUE)]).ready();
    let ask = r#"{"secret":"WARD_TEST_TOKEN","times":0}"#;
    assert_eq!(
        result(&redis, "t1", ask),
        "secret WARD_TEST_TOKEN=[redacted]"
    );
    // Saves a checkpoint and succeeds; the instance is kept.
    assert_eq!(result(&redis, "t1", r#"{"checkpoint":true,"times":0}"#), "");
    assert_eq!(
        result(&redis, "t1", COUNT),
        "count 3",
        "t1 reuses its instance"
    );

    // t2 gets its own instances, never t1's (which has served 3 calls).
    assert_eq!(result(&redis, "t2", COUNT), "count 1");
    assert_eq!(result(&redis, "t2", ask), "secret WARD_TEST_TOKEN unset");
    assert_eq!(result(&redis, "t2", COUNT), "count 3", "t2 reuses its own");
    // A checkpoint saved in a kept instance does not reach the next job.
    assert_eq!(result(&redis, "t2", r#"{"checkpoint":true,"times":0}"#), "");
    assert_eq!(result(&redis, "t2", r#"{"checkpoint":true,"times":0}"#), "");
    let id = enqueue(&redis, "t2", r#"{"times":1}"#);
    wait_for(WAIT, "the first attempt to fail", || {
        show(&redis, &id)["attempts"] == 1 && show(&redis, &id)["state"] != "running"
    });
    let mut con = redis.con();
    let left: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg("checkpoint")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        left, None,
        "a kept instance handed an earlier job's checkpoint on"
    );

    // And t1's kept instance is still its own.
    assert_eq!(result(&redis, "t1", COUNT), "count 4");
}

/// The results of the succeeded `kid` jobs, duplicates included, sorted.
fn kid_results(redis: &Redis) -> Vec<String> {
    let mut out: Vec<String> = records_of(redis, "kid")
        .into_iter()
        .filter(|rec| rec.get("state").map(String::as_str) == Some("succeeded"))
        .map(|rec| rec.get("result").cloned().unwrap_or_default())
        .collect();
    out.sort();
    out
}

#[test]
fn a_kept_instance_keeps_no_batch_children_or_progress_of_its_last_job() {
    let redis = Redis::start();
    let jobs = job("parent", "flaky", "reuse_instance = 10") + &job("kid", "echo", "");
    let _ward = Ward::start(&config(&redis, 1, &jobs)).ready();
    let url = redis.url();
    let created = ward(&["batch", "create", "--redis", &url, "q", "--id", "fan"]);
    assert!(created.status.success(), "{}", stderr(&created));
    // The first job is in batch `fan`; its 3 children join it.
    let first = r#"{"times":0,"children":3,"child_job":"kid","progress":80}"#;
    let first_id = enqueue_with(&redis, &["--batch", "fan"], "parent", first);
    let sealed = ward(&["batch", "seal", "--redis", &url, "q", "fan"]);
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    let s = wait_final(&redis, &first_id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    // Progress is written behind the attempt: wait for the last report.
    wait_for(Duration::from_secs(5), "the first job's progress", || {
        show(&redis, &first_id)["progress"]["percent"] == 80
    });

    // The same instance (count 2) runs a job in no batch, whose 2 children
    // therefore join none, and which reports its own progress.
    let second = r#"{"count":true,"times":0,"children":2,"child_job":"kid","progress":30}"#;
    let id = enqueue(&redis, "parent", second);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["result"], "count 2", "{s}");
    wait_for(Duration::from_secs(5), "the second job's progress", || {
        show(&redis, &id)["progress"]["percent"] == 30
    });
    wait_for(WAIT, "the children to run", || {
        kid_results(&redis).len() >= 5
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        kid_results(&redis),
        ["child 0", "child 0", "child 1", "child 1", "child 2"],
        "each job's own children, once"
    );
    let out = ward(&["batch", "show", "--redis", &url, "q", "fan", "--json"]);
    let batch: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        batch["total"], 4,
        "the first job and its 3 children only: {batch:#}"
    );
    let s = show(&redis, &first_id);
    assert_eq!(
        s["progress"]["message"], "reached 80",
        "the next job's progress landed on the first one: {s}"
    );
}
