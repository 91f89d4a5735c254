//! Plugin interface `ward:plugin@0.2.0`: child jobs enqueued from inside a
//! plugin (only when its attempt succeeds, once however often it runs) and
//! progress reports shown by `ward job show`; and the first version, 0.1.0,
//! still served. Real redis-server, real `ward` daemon, real components:
//! `noop` is built against 0.1.0, `flaky` and `echo` against 0.2.0.

use std::time::{Duration, Instant};

use serde_json::Value;
use ward_testkit::*;

use crate::admin::client::{AdminProc, VIEWER, admin_table, get_ok};

const WAIT: Duration = Duration::from_secs(60);

/// `ward plugin check --json` of the example plugin `name`.
fn check(name: &str) -> Value {
    let path = plugin(name);
    let out = ward(&["plugin", "check", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "plugin check {name}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_component_built_against_0_1_0_still_runs() {
    let old = check("noop");
    assert_eq!(old["world"], "0.1.0", "{old}");
    assert!(
        old["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "ward:plugin/types@0.1.0"),
        "noop is built against the 0.1.0 WIT: {old}"
    );
    assert_eq!(check("flaky")["world"], "0.2.0");

    let redis = Redis::start();
    let jobs = job("old", "noop", "") + &job("new", "echo", "");
    let _ward = Ward::start(&config(&redis, 4, &jobs)).ready();
    let old = enqueue(&redis, "old", "{}");
    let new = enqueue(&redis, "new", "made by 0.2.0");
    let s = wait_final(&redis, &old, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    let s = wait_final(&redis, &new, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["result"], "made by 0.2.0", "{s}");
}

#[test]
fn progress_a_plugin_reports_is_shown_by_job_show() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("slow", "flaky", ""))).ready();
    // Reports 0, then 50 after 1.5 s, then 80 after 3 s, and succeeds.
    let id = enqueue(
        &redis,
        "slow",
        r#"{"times":0,"progress":80,"sleep_ms":3000}"#,
    );

    // While it runs: the half-way report shows, with its message.
    let deadline = Instant::now() + WAIT;
    let running = loop {
        let s = show(&redis, &id);
        if s["progress"]["percent"] == 50 {
            break s;
        }
        assert!(Instant::now() < deadline, "no half-way progress shown: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(running["progress"]["message"], "half way", "{running}");

    // The last report wins, and stays after the job ended.
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let last = loop {
        let s = show(&redis, &id);
        if s["progress"]["percent"] == 80 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(last["progress"]["percent"], 80, "{last}");
    assert_eq!(last["progress"]["message"], "reached 80", "{last}");
    assert!(last["progress"]["at_ms"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(last["progress"]["attempt"], 1, "{last}");

    // The text form says it too.
    let out = ward(&["job", "show", "--redis", &redis.url(), "q", &id]);
    assert!(
        stdout(&out).contains("progress  80% reached 80 (attempt 1, at "),
        "{}",
        stdout(&out)
    );

    // And the admin API's job endpoint.
    let port = free_port();
    let top = format!("{METRICS_ANY_PORT}\n{}", admin_table(port));
    let cfg = ward_testkit::Config::new(&redis.url())
        .top(&top)
        .jobs(&job("slow", "flaky", ""))
        .render();
    let _api = AdminProc::start(&cfg, port);
    let viewed = get_ok(port, &format!("/v1/queues/q/jobs/{id}"), VIEWER.2);
    assert_eq!(viewed["progress"], last["progress"], "{viewed}");
}

#[test]
fn a_retrys_progress_says_which_attempt_reported_it() {
    let redis = Redis::start();
    let fast = "retry = { initial_delay = \"50ms\", max_delay = \"50ms\", jitter = \"none\" }";
    let _ward = Ward::start(&config(&redis, 4, &job("slow", "flaky", fast))).ready();
    // Fails attempt 1 after reporting, then reports again and succeeds.
    let id = enqueue(&redis, "slow", r#"{"times":1,"progress":60}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 2, "{s}");
    wait_for(Duration::from_secs(5), "attempt 2's report", || {
        show(&redis, &id)["progress"]["attempt"] == 2
    });
    let s = show(&redis, &id);
    assert_eq!(s["progress"]["percent"], 60, "{s}");
}

#[test]
fn a_plugin_reporting_in_a_loop_is_written_a_few_times_a_second() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("busy", "flaky", ""))).ready();
    let warm = enqueue(&redis, "busy", r#"{"times":0}"#);
    wait_final(&redis, &warm, WAIT);
    let before = redis.calls("hset");
    assert!(
        before > 0,
        "Redis counts HSET calls (recording the warm-up job made some)"
    );
    // Reports as fast as it can for 1.5 s: hundreds of thousands of calls.
    let id = enqueue(&redis, "busy", r#"{"times":0,"progress_for_ms":1500}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    std::thread::sleep(Duration::from_millis(600));
    let writes = redis.calls("hset") - before;
    // At most one write per 250 ms (7 in 1.5 s, one more for the last
    // report), plus the few of recording the job and the heartbeats.
    assert!(writes >= 2, "{writes} HSETs: the reports were written");
    assert!(
        writes <= 20,
        "{writes} HSETs for 1.5 s of reports in a loop: not throttled"
    );
    let last = show(&redis, &id);
    assert_eq!(
        last["progress"]["percent"], 100,
        "the last report wins: {last}"
    );
    assert_eq!(last["progress"]["message"], "looped", "{last}");
}

/// The results of the `kid` jobs that ran and succeeded (not the ones
/// acknowledged as duplicates), sorted.
fn kids(redis: &Redis) -> Vec<String> {
    let mut out: Vec<String> = records_of(redis, "kid")
        .into_iter()
        .filter(|rec| {
            rec.get("state").map(String::as_str) == Some("succeeded")
                && !rec.contains_key("duplicate_of")
        })
        .map(|rec| rec.get("result").cloned().unwrap_or_default())
        .collect();
    out.sort();
    out
}

/// `child 0` .. `child n-1`, sorted as [`kids`] sorts.
fn expected_kids(n: u32) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("child {i}")).collect();
    v.sort();
    v
}

/// Waits until `n` kids succeeded, then a little longer, and returns them
/// all (a duplicate would show up in that time).
fn wait_kids(redis: &Redis, n: usize) -> Vec<String> {
    wait_for(WAIT, "the children to run", || kids(redis).len() >= n);
    std::thread::sleep(Duration::from_secs(1));
    kids(redis)
}

/// A parent `flaky` job type and the `kid` (echo) its children run as.
fn family(redis: &Redis) -> String {
    config(
        redis,
        8,
        &(job("parent", "flaky", "") + &job("kid", "echo", "")),
    )
}

#[test]
fn a_plugin_fans_out_children_that_run() {
    let redis = Redis::start();
    let _ward = Ward::start(&family(&redis)).ready();
    let id = enqueue(
        &redis,
        "parent",
        r#"{"times":0,"children":5,"child_job":"kid"}"#,
    );
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(wait_kids(&redis, 5), expected_kids(5));
}

#[test]
fn a_failed_attempts_children_are_never_enqueued() {
    let redis = Redis::start();
    let _ward = Ward::start(&family(&redis)).ready();
    let id = enqueue(
        &redis,
        "parent",
        r#"{"fail":"permanent","children":3,"child_job":"kid"}"#,
    );
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    // A sibling that succeeds after it: its children show the queue works.
    let ok = enqueue(
        &redis,
        "parent",
        r#"{"times":0,"children":1,"child_job":"kid"}"#,
    );
    wait_final(&redis, &ok, WAIT);
    assert_eq!(wait_kids(&redis, 1), expected_kids(1));
    let entries: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg("ward:{q}:jobs")
        .arg("-")
        .arg("+")
        .query(&mut redis.con())
        .unwrap();
    let kid_entries = format!("{entries:?}").matches("child ").count();
    assert!(
        kid_entries <= 1,
        "only the sibling's child was enqueued: {entries:?}"
    );
}

#[test]
fn children_enqueued_by_a_failed_attempt_come_once_from_the_retry_that_succeeds() {
    let redis = Redis::start();
    let _ward = Ward::start(&family(&redis)).ready();
    // Attempt 1 enqueues 100 children, then fails; attempt 2 enqueues them
    // again and succeeds.
    let id = enqueue(
        &redis,
        "parent",
        r#"{"times":1,"children":100,"child_job":"kid"}"#,
    );
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 2, "{s}");
    assert_eq!(wait_kids(&redis, 100), expected_kids(100));
}

#[test]
fn a_parent_run_again_after_its_success_enqueues_no_child_twice() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&family(&redis)).ready();
    let payload = r#"{"times":0,"children":10,"child_job":"kid"}"#;
    let id = enqueue(&redis, "parent", payload);
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    assert_eq!(wait_kids(&redis, 10), expected_kids(10));

    // The same job delivered again, as after a lost acknowledgement: it has
    // no idempotency key, so it runs again, and succeeds again.
    let _: String = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("id")
        .arg(&id)
        .arg("job")
        .arg("parent")
        .arg("payload")
        .arg(payload)
        .arg("attempt")
        .arg("1")
        .query(&mut redis.con())
        .unwrap();
    wait_for(WAIT, "the parent to run again", || {
        runs_per_job(&[&ward_proc]).get(&id) == Some(&2)
    });
    assert_eq!(wait_kids(&redis, 10), expected_kids(10), "no child twice");
}

#[test]
fn children_join_their_parents_batch_and_keep_it_open_until_they_end() {
    let redis = Redis::start();
    let _ward = Ward::start(&family(&redis)).ready();
    let url = redis.url();
    let created = ward(&["batch", "create", "--redis", &url, "q", "--id", "fan"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = enqueue_with(
        &redis,
        &["--batch", "fan"],
        "parent",
        r#"{"times":0,"children":4,"child_job":"kid"}"#,
    );
    let sealed = ward(&["batch", "seal", "--redis", &url, "q", "fan"]);
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    assert_eq!(wait_kids(&redis, 4), expected_kids(4));
    let mut last = Value::Null;
    wait_for(WAIT, "the batch to finish", || {
        let out = ward(&["batch", "show", "--redis", &url, "q", "fan", "--json"]);
        last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        last["status"] == "finished"
    });
    // The parent and its four children, all succeeded.
    assert_eq!(last["total"], 5, "{last:#}");
    assert_eq!(last["succeeded"], 5, "{last:#}");
}

#[test]
fn a_child_the_host_refuses_is_a_clear_error_in_the_plugin() {
    let redis = Redis::start();
    let _ward = Ward::start(&family(&redis)).ready();
    // flaky turns a refusal into a permanent failure (the SDK's `?`).
    for (payload, says) in [
        (
            r#"{"times":0,"children":1,"child_job":"nope"}"#,
            "no job type `nope` in this job's queue",
        ),
        (
            r#"{"times":0,"children":1001,"child_job":"kid"}"#,
            "an attempt may enqueue at most 1000 child jobs",
        ),
    ] {
        let id = enqueue(&redis, "parent", payload);
        let s = wait_final(&redis, &id, WAIT);
        assert_eq!(s["state"], "dead", "{s}");
        assert_eq!(s["last_error"]["code"], "child-refused", "{s}");
        let message = s["last_error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        kids(&redis),
        Vec::<String>::new(),
        "a failed parent has none"
    );
}
