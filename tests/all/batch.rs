//! Batches (issue 18): members join through `ward enqueue --batch`,
//! `ward_enqueue` and a plain XADD's `batch` field; the ledger counts them
//! once and moves each once on its outcome, in the same step that records
//! it; `ward batch show` groups the failures; a sealed batch takes no more.

use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// `{"times":0}`: flaky never fails, so it succeeds at once.
const OK: &str = r#"{"times":0}"#;

/// `ward batch <sub> --redis URL q <args>`.
fn batch(redis: &Redis, sub: &str, args: &[&str]) -> std::process::Output {
    let url = redis.url();
    let mut all = vec!["batch", sub, "--redis", url.as_str(), "q"];
    all.extend_from_slice(args);
    ward(&all)
}

/// Like [`batch`], asserting success; returns stdout.
fn batch_ok(redis: &Redis, sub: &str, args: &[&str]) -> String {
    let out = batch(redis, sub, args);
    assert!(
        out.status.success(),
        "ward batch {sub} {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// `ward batch show q ID --json`.
fn show_batch(redis: &Redis, id: &str) -> Value {
    serde_json::from_str(&batch_ok(redis, "show", &[id, "--json"])).unwrap()
}

/// Waits until batch `id` is finished (sealed, nothing pending); returns it.
fn wait_finished(redis: &Redis, id: &str) -> Value {
    let mut last = Value::Null;
    try_wait_for(WAIT, "the batch to finish", || {
        last = show_batch(redis, id);
        last["status"] == "finished"
    })
    .unwrap_or_else(|e| panic!("{e}: {last:#}"));
    last
}

/// `FCALL ward_enqueue` into queue `q` with `args` after the stream key.
fn fcall(redis: &Redis, args: &[&str]) -> redis::RedisResult<(String, String, u64)> {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("ward_enqueue").arg(1).arg(queue_stream("q"));
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(&mut redis.con())
}

fn count(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` in {v:#}"))
}

#[test]
fn a_batch_with_one_percent_permanent_failures_ends_with_exact_counts_grouped_by_code() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config_top(
        &redis,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        "concurrency = 32",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    assert_eq!(
        batch_ok(&redis, "create", &["--id", "import-17"]),
        "import-17"
    );

    // 2,000 members: half through ward_enqueue (counted as they are added),
    // half by plain XADD with a `batch` field (counted as first read); 1%
    // fail permanently, and 1% fail once (transient) before they succeed.
    let n = 2000;
    let mut pipe = redis::pipe();
    let mut plain = Vec::new();
    for i in 0..n {
        let payload = match i % 100 {
            0 => format!(
                r#"{{"fail":"permanent","code":"invalid-row","message":"row {i}: no email"}}"#
            ),
            1 => r#"{"times":1}"#.to_string(),
            _ => OK.to_string(),
        };
        if i % 2 == 0 {
            pipe.cmd("FCALL")
                .arg("ward_enqueue")
                .arg(1)
                .arg(queue_stream("q"))
                .arg("row")
                .arg(&payload)
                .arg("")
                .arg("")
                .arg("")
                .arg("")
                .arg("")
                .arg("import-17");
        } else {
            plain.push(payload);
        }
    }
    let _: Vec<(String, String, u64)> = pipe.query(&mut redis.con()).unwrap();
    let entries: Vec<Vec<(&str, &str)>> = plain
        .iter()
        .map(|p| {
            vec![
                ("job", "row"),
                ("payload", p.as_str()),
                ("batch", "import-17"),
            ]
        })
        .collect();
    xadd_entries(&redis, &entries);
    // Every plain member is counted once a daemon has read it; seal then,
    // so none of them joins late.
    try_wait_for(WAIT, "every member to be counted", || {
        count(&show_batch(&redis, "import-17"), "total") == n
    })
    .unwrap();
    assert!(batch_ok(&redis, "seal", &["import-17"]).contains("sealed batch"));

    let v = wait_finished(&redis, "import-17");
    assert_eq!(count(&v, "total"), n, "{v:#}");
    assert_eq!(count(&v, "succeeded"), n - 20, "{v:#}");
    assert_eq!(count(&v, "dead"), 20, "{v:#}");
    assert_eq!(count(&v, "pending"), 0, "{v:#}");
    assert_eq!(count(&v, "cancelled"), 0, "{v:#}");
    assert_eq!(count(&v, "late"), 0, "{v:#}");
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{v:#}");
    assert_eq!(failures[0]["class"], "permanent");
    assert_eq!(failures[0]["code"], "invalid-row");
    assert_eq!(failures[0]["count"], 20);
    assert!(
        failures[0]["sample_message"]
            .as_str()
            .unwrap()
            .ends_with(": no email"),
        "{v:#}"
    );
    assert_eq!(
        v["summary"],
        "20 of 2000 failed: 20 permanent [invalid-row]"
    );
    assert!(v["finished_at_ms"].as_u64().is_some(), "{v:#}");
    // The ledger agrees with the jobs: 20 dead letters.
    assert_eq!(dead_letters(&redis).len(), 20);

    // The metrics: members by outcome, and no batch left unfinished.
    let metric = |name: &str| -> Option<f64> {
        let (_, body) = crate::observability::get(port, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    try_wait_for(WAIT, "the sampled gauge to reach 0", || {
        metric(r#"ward_batches_unfinished{queue="q"}"#) == Some(0.0)
    })
    .unwrap();
    assert_eq!(
        metric(r#"ward_batch_members_total{queue="q",outcome="dead"}"#),
        Some(20.0)
    );
    assert_eq!(
        metric(r#"ward_batch_members_total{queue="q",outcome="succeeded"}"#),
        Some(1980.0)
    );

    let text = batch_ok(&redis, "show", &["import-17"]);
    assert!(text.contains("finished"), "{text}");
    assert!(text.contains("20 permanent [invalid-row]"), "{text}");
    let list: Value = serde_json::from_str(&batch_ok(&redis, "list", &["--json"])).unwrap();
    assert_eq!(list[0]["id"], "import-17", "{list:#}");
    assert_eq!(list[0]["status"], "finished", "{list:#}");
}

#[test]
fn a_retried_member_is_counted_once_and_a_requeued_dead_member_moves_back() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    let id = batch_ok(&redis, "create", &[]);
    let on = ["--batch", id.as_str()];
    // Fails twice (transient), then succeeds on the third of three attempts.
    enqueue_with(&redis, &on, "row", r#"{"times":2}"#);
    enqueue_with(&redis, &on, "row", OK);
    let dead = enqueue_with(
        &redis,
        &on,
        "row",
        r#"{"fail":"permanent","code":"bad-row","message":"row 3 is bad"}"#,
    );
    batch_ok(&redis, "seal", &[&id]);
    let v = wait_finished(&redis, &id);
    assert_eq!(
        (
            count(&v, "total"),
            count(&v, "succeeded"),
            count(&v, "dead"),
            count(&v, "pending")
        ),
        (3, 2, 1, 0),
        "{v:#}"
    );
    assert_eq!(v["failures"][0]["sample_job_id"], dead.as_str(), "{v:#}");
    let finished = v["finished_at_ms"].as_u64().unwrap();

    // "Fix" the row and requeue it: it goes back to pending, then succeeds.
    let fixed = std::env::temp_dir().join(format!("ward-batch-fixed-{}", std::process::id()));
    std::fs::write(&fixed, OK).unwrap();
    let url = redis.url();
    let out = ward(&[
        "dlq",
        "requeue",
        "--redis",
        &url,
        "q",
        &dead,
        "--payload",
        fixed.to_str().unwrap(),
        "--note",
        "fixed row 3",
    ]);
    std::fs::remove_file(&fixed).ok();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut last = Value::Null;
    try_wait_for(WAIT, "the requeued member to succeed", || {
        last = show_batch(&redis, &id);
        count(&last, "succeeded") == 3
    })
    .unwrap_or_else(|e| panic!("{e}: {last:#}"));
    assert_eq!(
        (
            count(&last, "total"),
            count(&last, "dead"),
            count(&last, "pending")
        ),
        (3, 0, 0),
        "{last:#}"
    );
    assert_eq!(last["failures"], serde_json::json!([]), "{last:#}");
    // The first finish stays the batch's finish.
    assert_eq!(last["finished_at_ms"].as_u64(), Some(finished));
}

#[test]
fn a_sealed_batch_refuses_members_and_a_plain_xadd_is_counted_anyway() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "b1"]);
    let again = batch(&redis, "create", &["q", "--id", "b1"]);
    assert!(!again.status.success());
    enqueue_with(&redis, &["--batch", "b1"], "row", OK);
    batch_ok(&redis, "seal", &["b1"]);
    assert!(batch_ok(&redis, "seal", &["b1"]).contains("sealed already"));

    // ward enqueue and ward_enqueue refuse, and add nothing.
    let url = redis.url();
    let out = ward(&["enqueue", "--redis", &url, "q", "row", OK, "--batch", "b1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("batch b1 is sealed and takes no more members"),
        "{}",
        stderr(&out)
    );
    let e = fcall(&redis, &["row", OK, "", "", "", "", "", "b1"]).unwrap_err();
    assert_eq!(e.code(), Some("BATCH_SEALED"), "{e}");
    let e = fcall(&redis, &["row", OK, "", "", "", "", "", "nope"]).unwrap_err();
    assert!(e.to_string().contains("batch nope does not exist"), "{e}");
    let out = ward(&[
        "enqueue", "--redis", &url, "q", "row", OK, "--batch", "nope",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // The old calling forms still work.
    let (_, status, _) = fcall(&redis, &["row", OK]).unwrap();
    assert_eq!(status, "created");
    let (_, status, _) = fcall(&redis, &["row", OK, "", "", "", "", "high"]).unwrap();
    assert_eq!(status, "created");

    // A plain XADD cannot be refused: the job runs, and is counted, as late.
    xadd(&redis, "row", OK, &[("batch", "b1")]);
    // One naming a batch nobody created makes it, open; a malformed one
    // (no job type) ends there as dead like any other member.
    xadd(&redis, "row", OK, &[("batch", "made-by-xadd")]);
    xadd_entries(&redis, &[vec![("payload", OK), ("batch", "made-by-xadd")]]);
    let mut last = Value::Null;
    try_wait_for(WAIT, "the late member to succeed", || {
        last = show_batch(&redis, "b1");
        count(&last, "succeeded") == 2
    })
    .unwrap_or_else(|e| panic!("{e}: {last:#}"));
    assert_eq!(
        (count(&last, "total"), count(&last, "late")),
        (2, 1),
        "{last:#}"
    );
    assert_eq!(last["status"], "finished");
    try_wait_for(WAIT, "the implicit batch's members to end", || {
        last = show_batch(&redis, "made-by-xadd");
        count(&last, "pending") == 0 && count(&last, "total") == 2
    })
    .unwrap_or_else(|e| panic!("{e}: {last:#}"));
    assert_eq!(
        (count(&last, "succeeded"), count(&last, "dead")),
        (1, 1),
        "{last:#}"
    );
    assert_eq!(last["failures"][0]["code"], "malformed-entry", "{last:#}");
    assert_eq!(last["status"], "open", "{last:#}");
    assert_eq!(last["implicit"], true, "{last:#}");
    // Of the two, only the open one is unfinished (ward_batches_unfinished).
    let unfinished: Vec<String> = redis::cmd("ZRANGE")
        .arg("ward:{q}:batches:unfinished")
        .arg(0)
        .arg(-1)
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(unfinished, ["made-by-xadd"]);
    let missing = batch(&redis, "show", &["no-such"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("has no batch `no-such`"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_cancelled_member_is_counted_cancelled() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "c1"]);
    let later = enqueue_with(&redis, &["--batch", "c1", "--delay", "1h"], "row", OK);
    enqueue_with(&redis, &["--batch", "c1"], "row", OK);
    batch_ok(&redis, "seal", &["c1"]);
    let url = redis.url();
    let out = ward(&[
        "job",
        "cancel",
        "--redis",
        &url,
        "q",
        &later,
        "--note",
        "not needed",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = wait_finished(&redis, "c1");
    assert_eq!(
        (
            count(&v, "total"),
            count(&v, "succeeded"),
            count(&v, "cancelled"),
            count(&v, "pending")
        ),
        (2, 1, 1, 0),
        "{v:#}"
    );
}

#[test]
fn the_admin_api_lists_shows_creates_and_seals_batches() {
    use crate::admin::client::{OPERATOR, VIEWER, admin_table, get_ok, request, token_env};
    let redis = Redis::start();
    let port = free_port();
    let top = format!("{METRICS_ANY_PORT}\n{}", admin_table(port));
    let cfg = ward_testkit::Config::new(&redis.url())
        .top(&top)
        .jobs(&job("row", "flaky", ""))
        .render();
    let _ward = Ward::start_with_env(&cfg, &token_env()).ready();
    crate::admin::client::wait_serving(port);

    // A viewer may look, not act.
    let a = request(
        port,
        "POST",
        "/v1/queues/q/batches",
        Some(VIEWER.2),
        r#"{"id":"api-1"}"#,
    );
    assert_eq!(a.status, 403, "{}", a.text);
    let a = request(
        port,
        "POST",
        "/v1/queues/q/batches",
        Some(OPERATOR.2),
        r#"{"id":"api-1"}"#,
    );
    assert_eq!(
        (a.status, &a.body["id"]),
        (200, &Value::from("api-1")),
        "{}",
        a.text
    );
    let a = request(
        port,
        "POST",
        "/v1/queues/q/batches",
        Some(OPERATOR.2),
        r#"{"id":"api-1"}"#,
    );
    assert_eq!(a.status, 409, "{}", a.text);
    enqueue_with(&redis, &["--batch", "api-1"], "row", OK);
    let a = request(
        port,
        "POST",
        "/v1/queues/q/batches/api-1/seal",
        Some(OPERATOR.2),
        "",
    );
    assert_eq!(
        (a.status, &a.body["sealed"]),
        (200, &Value::from(true)),
        "{}",
        a.text
    );

    let mut one = Value::Null;
    try_wait_for(WAIT, "the batch to finish", || {
        one = get_ok(port, "/v1/queues/q/batches/api-1", VIEWER.2);
        one["status"] == "finished"
    })
    .unwrap_or_else(|e| panic!("{e}: {one:#}"));
    assert_eq!(
        (count(&one, "total"), count(&one, "succeeded")),
        (1, 1),
        "{one:#}"
    );
    // Finished, so its elapsed time is fixed: the same view as the CLI's.
    assert_eq!(one, show_batch(&redis, "api-1"));
    let list = get_ok(port, "/v1/queues/q/batches", VIEWER.2);
    assert_eq!(list[0]["id"], "api-1", "{list:#}");
    let a = request(port, "GET", "/v1/queues/q/batches/nope", Some(VIEWER.2), "");
    assert_eq!(a.status, 404, "{}", a.text);
    let audit: Vec<String> = audit(&redis)
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        audit.contains(&"batch-create".to_string()) && audit.contains(&"batch-seal".to_string()),
        "{audit:?}"
    );
}

/// The jobs of type `job` queue `q` holds a record of, by id.
fn jobs_of_type(redis: &Redis, job: &str) -> Vec<String> {
    records_by_id(redis, job)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn on_complete_fires_once_when_all_ended_and_on_success_once_after_the_dead_are_requeued() {
    let redis = Redis::start();
    let jobs = format!("{}{}", job("row", "flaky", ""), job("done", "echo", ""));
    let cfg = config_full(&redis, "concurrency = 8", FAST_RETRY, &jobs);
    let _ward = Ward::start(&cfg).ready();
    let id = batch_ok(
        &redis,
        "create",
        &[
            "--id",
            "cb-1",
            "--on-complete",
            "done",
            "--on-success",
            "done",
        ],
    );
    for _ in 0..20 {
        enqueue_with(&redis, &["--batch", &id], "row", r#"{"times":1}"#);
    }
    let dead = enqueue_with(
        &redis,
        &["--batch", &id],
        "row",
        r#"{"fail":"permanent","code":"bad-row"}"#,
    );
    batch_ok(&redis, "seal", &[&id]);
    let v = wait_finished(&redis, &id);
    assert_eq!(
        (count(&v, "succeeded"), count(&v, "dead")),
        (20, 1),
        "{v:#}"
    );
    let complete = v["on_complete_job"].as_str().unwrap().to_string();
    assert_eq!(v["on_success_job"], Value::Null, "{v:#}");
    let c = wait_final(&redis, &complete, WAIT);
    assert_eq!(c["state"], "succeeded", "{c:#}");
    // echo's result is its payload: the batch's summary.
    let summary: Value = serde_json::from_str(c["result"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            &summary["batch"],
            &summary["event"],
            &summary["total"],
            &summary["dead"]
        ),
        (
            &Value::from("cb-1"),
            &Value::from("complete"),
            &Value::from(21),
            &Value::from(1)
        ),
        "{summary:#}"
    );
    // The callback is not a member: the batch stays finished.
    assert_eq!(count(&show_batch(&redis, &id), "total"), 21);

    let fixed = std::env::temp_dir().join(format!("ward-batch-cb-{}", std::process::id()));
    std::fs::write(&fixed, OK).unwrap();
    let url = redis.url();
    let out = ward(&[
        "dlq",
        "requeue",
        "--redis",
        &url,
        "q",
        &dead,
        "--payload",
        fixed.to_str().unwrap(),
    ]);
    std::fs::remove_file(&fixed).ok();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut last = Value::Null;
    try_wait_for(WAIT, "on_success to be enqueued", || {
        last = show_batch(&redis, &id);
        last["on_success_job"].is_string()
    })
    .unwrap_or_else(|e| panic!("{e}: {last:#}"));
    let success = last["on_success_job"].as_str().unwrap().to_string();
    let s = wait_final(&redis, &success, WAIT);
    let summary: Value = serde_json::from_str(s["result"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&summary["event"], &summary["succeeded"], &summary["dead"]),
        (&Value::from("success"), &Value::from(21), &Value::from(0)),
        "{summary:#}"
    );
    // Each fired once, and only those two `done` jobs exist.
    let mut done = jobs_of_type(&redis, "done");
    done.sort();
    let mut want = vec![complete, success];
    want.sort();
    assert_eq!(done, want);
    assert_eq!(last["on_complete_job"], v["on_complete_job"]);
}

#[test]
fn a_daemon_killed_mid_batch_leaves_exact_counts_and_one_on_complete() {
    let redis = Redis::start();
    let jobs = format!("{}{}", job("row", "flaky", ""), job("done", "echo", ""));
    let cfg = config_full(
        &redis,
        "concurrency = 16\nlease = \"1s\"",
        FAST_RETRY,
        &jobs,
    );
    let mut a = Ward::start(&cfg).ready();
    let _b = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "k1", "--on-complete", "done"]);
    let n = 10_000;
    let slow = r#"{"times":0,"sleep_ms":10}"#;
    let bad = r#"{"fail":"permanent","code":"invalid-row"}"#;
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("FCALL")
            .arg("ward_enqueue")
            .arg(1)
            .arg(queue_stream("q"))
            .arg("row")
            .arg(if i % 100 == 0 { bad } else { slow })
            .arg("")
            .arg("")
            .arg("")
            .arg("")
            .arg("")
            .arg("k1");
    }
    let _: Vec<(String, String, u64)> = pipe.query(&mut redis.con()).unwrap();
    batch_ok(&redis, "seal", &["k1"]);
    try_wait_for(WAIT, "a quarter of the batch to end", || {
        count(&show_batch(&redis, "k1"), "succeeded") >= n / 4
    })
    .unwrap();
    a.kill();
    // Killed mid-run: its running attempts are lost with it and run again
    // on the other daemon once their lease expires.
    let mid = show_batch(&redis, "k1");
    assert!(count(&mid, "pending") > 0, "{mid:#}");
    let v = wait_finished(&redis, "k1");
    assert_eq!(
        (
            count(&v, "total"),
            count(&v, "succeeded"),
            count(&v, "dead"),
            count(&v, "pending")
        ),
        (n, n - n / 100, n / 100, 0),
        "{v:#}"
    );
    assert_eq!(dead_letters(&redis).len() as u64, n / 100);
    let complete = v["on_complete_job"].as_str().unwrap().to_string();
    assert_eq!(wait_final(&redis, &complete, WAIT)["state"], "succeeded");
    assert_eq!(jobs_of_type(&redis, "done"), [complete]);
}

/// A producer's member (a plain XADD naming a batch) is counted by the
/// script call that follows the daemon's plain read. A daemon can die
/// between the two, or just after the second: whichever daemon takes the
/// delivery over counts it then, and only if nobody did.
#[test]
fn a_plain_xadd_member_whose_daemon_died_around_counting_it_is_counted_once() {
    let redis = Redis::start();
    let mut con = redis.con();
    let stream = queue_stream("q");
    create_group(&mut con, &stream);
    // Read, and never counted: its daemon died right after the read.
    let uncounted = xadd(&redis, "row", OK, &[("batch", "p1")]);
    lease_to(&mut con, &stream, "died-after-the-read", 1);
    // Read and counted by the daemon's own lease, which then died.
    let counted = xadd(&redis, "row", OK, &[("batch", "p1")]);
    let leased = crate::support::with_queue(&redis, async |queue| {
        let ask = ward::store::LeaseAsk {
            count: 1,
            order: ward::priority::Priority::ALL,
            block: None,
            key_ttls: &[],
            plain: true,
        };
        queue
            .lease_levels("died-after-counting", ask)
            .await
            .unwrap()
    });
    assert_eq!(leased.deliveries.len(), 1);
    assert_eq!(leased.deliveries[0].0.entry_id, counted);
    let ledger = show_batch(&redis, "p1");
    assert_eq!(count(&ledger, "total"), 1, "{ledger:#}");
    // And one read the usual way.
    let usual = xadd(&redis, "row", OK, &[("batch", "p1")]);
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"1s\"",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    for id in [&uncounted, &counted, &usual] {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    let v = show_batch(&redis, "p1");
    assert_eq!(
        (
            count(&v, "total"),
            count(&v, "succeeded"),
            count(&v, "pending")
        ),
        (3, 3, 0),
        "{v:#}"
    );
}

/// A producer's entry may name a batch whose key holds something else
/// (another application's string, a damaged ledger): the job still runs,
/// uncounted, and so do the jobs read with it.
#[test]
fn a_member_naming_a_batch_whose_key_holds_another_type_runs_and_so_do_its_neighbours() {
    let redis = Redis::start();
    let _: () = redis::cmd("SET")
        .arg("ward:{q}:batch:broken")
        .arg("not a ledger")
        .query(&mut redis.con())
        .unwrap();
    let mut ids = vec![xadd(&redis, "row", OK, &[])];
    ids.push(xadd(&redis, "row", OK, &[("batch", "broken")]));
    ids.push(xadd(&redis, "row", OK, &[]));
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"1s\"",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    for id in &ids {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        // On the first read, not after a lost lease.
        assert_eq!(s["attempts"], 1, "{s}");
    }
    let kept: String = redis::cmd("GET")
        .arg("ward:{q}:batch:broken")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(kept, "not a ledger", "the key is left as it was");
}

#[test]
fn a_batch_over_its_failure_ratio_raises_a_batch_failures_alert() {
    let redis = Redis::start();
    let hook = HttpStub::statuses(&[]);
    let top = format!(
        "{METRICS_ANY_PORT}\n[alerts]\nthreshold = 1\ngroup_wait = \"200ms\"\ncooldown = \"1h\"\ngrowth_factor = 100.0\nbatch_failure_ratio = 0.2\nbatch_failure_min = 10\n\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:{}/hook\"\n",
        hook.port
    );
    let cfg = config_top(
        &redis,
        &top,
        "concurrency = 8",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "bad-import"]);
    // 30 rows, 10 of them bad: a third of the batch is dead.
    for i in 0..30 {
        let payload = if i % 3 == 0 {
            r#"{"fail":"permanent","code":"invalid-row"}"#
        } else {
            OK
        };
        enqueue_with(&redis, &["--batch", "bad-import"], "row", payload);
    }
    batch_ok(&redis, "seal", &["bad-import"]);
    wait_finished(&redis, "bad-import");
    let batch_alerts = || -> Vec<Value> {
        hook.received()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .filter(|a| a["kind"] == "batch_failures")
            .collect()
    };
    let mut got = Vec::new();
    try_wait_for(WAIT, "the batch_failures alert", || {
        got = batch_alerts();
        !got.is_empty()
    })
    .unwrap();
    let a = &got[0];
    assert_eq!(
        (&a["queue"], &a["job"]),
        (&Value::from("q"), &Value::from("row")),
        "{a:#}"
    );
    let reason = a["latest"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("batch `bad-import`: "), "{a:#}");
    assert!(reason.contains("ended members dead"), "{a:#}");
    assert!(
        a["summary"].as_str().unwrap().contains("bad-import"),
        "{a:#}"
    );
    assert_eq!(a["latest"]["code"], "invalid-row", "{a:#}");
    // Grouped and cooled down (no growth factor to speak of here): one
    // alert for the whole batch.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(batch_alerts().len(), 1, "{:#?}", batch_alerts());
}

#[test]
fn members_on_every_path_are_counted_once_priorities_delays_and_holds() {
    let redis = Redis::start();
    // A second job type keeps the queue read while `row` is paused.
    let jobs = format!("{}{}", job("row", "flaky", ""), job("other", "noop", ""));
    let cfg = config_full(&redis, "concurrency = 4", FAST_RETRY, &jobs);
    let _ward = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "paths"]);
    let url = redis.url();
    // Held while its job type is paused, released on resume: one member.
    let out = ward(&[
        "pause", "--redis", &url, "q", "--job", "row", "--note", "hold",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every daemon honours a pause within a second.
    std::thread::sleep(Duration::from_millis(1500));
    enqueue_with(&redis, &["--batch", "paths"], "row", OK);
    try_wait_for(WAIT, "the member to be held", || {
        let held: u64 = redis::cmd("ZCARD")
            .arg("ward:{q}:held")
            .query(&mut redis.con())
            .unwrap();
        held == 1
    })
    .unwrap();
    let out = ward(&["resume", "--redis", &url, "q", "--job", "row"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A high one through ward_enqueue, a low one by plain XADD (moved to
    // its level's stream as it is read), a delayed one (promoted later).
    fcall(&redis, &["row", OK, "", "", "", "", "high", "paths"]).unwrap();
    xadd(
        &redis,
        "row",
        OK,
        &[("priority", "low"), ("batch", "paths")],
    );
    enqueue_with(&redis, &["--batch", "paths", "--delay", "300ms"], "row", OK);
    try_wait_for(WAIT, "every member counted", || {
        count(&show_batch(&redis, "paths"), "total") == 4
    })
    .unwrap();
    batch_ok(&redis, "seal", &["paths"]);
    let v = wait_finished(&redis, "paths");
    assert_eq!(
        (
            count(&v, "total"),
            count(&v, "succeeded"),
            count(&v, "late")
        ),
        (4, 4, 0),
        "{v:#}"
    );
}

#[test]
fn requeuing_dead_letters_by_their_batch_field_retries_exactly_the_batchs_failed_part() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "rf"]);
    let bad = r#"{"fail":"permanent","code":"bad-row"}"#;
    let members: Vec<String> = (0..2)
        .map(|_| enqueue_with(&redis, &["--batch", "rf"], "row", bad))
        .collect();
    enqueue_with(&redis, &["--batch", "rf"], "row", OK);
    let outsider = enqueue(&redis, "row", bad);
    batch_ok(&redis, "seal", &["rf"]);
    wait_finished(&redis, "rf");
    assert_eq!(wait_final(&redis, &outsider, WAIT)["state"], "dead");

    // The dead letters carry the batch as a field: a filter takes exactly them.
    let url = redis.url();
    let out = ward(&[
        "dlq",
        "requeue",
        "--redis",
        &url,
        "q",
        "--all",
        "--field",
        "batch=rf",
        "--note",
        "retry the failed part",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // They run again (and fail again, the rows being still bad): counted
    // once more as dead, never twice.
    let mut last = Value::Null;
    try_wait_for(WAIT, "the requeued members to end again", || {
        last = show_batch(&redis, "rf");
        dead_letters(&redis).len() == 3 && count(&last, "pending") == 0
    })
    .unwrap_or_else(|e| panic!("{e}: {last:#}"));
    assert_eq!(
        (
            count(&last, "total"),
            count(&last, "succeeded"),
            count(&last, "dead")
        ),
        (3, 1, 2),
        "{last:#}"
    );
    // Exactly the batch's dead members were requeued, once each.
    let requeued = |id: &str| {
        history(&show(&redis, id))
            .iter()
            .filter(|h| h["event"] == "requeued")
            .count()
    };
    for m in &members {
        assert_eq!(requeued(m), 1, "member {m}");
    }
    assert_eq!(requeued(&outsider), 0, "the job outside the batch");
    assert_eq!(last["failures"][0]["count"], 2, "{last:#}");
}

#[test]
fn ward_batch_retry_failed_requeues_only_the_dead_members_and_cancel_stops_the_rest() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4",
        FAST_RETRY,
        &job("row", "flaky", ""),
    );
    let ward_proc = Ward::start(&cfg).ready();
    batch_ok(&redis, "create", &["--id", "b1"]);
    let bad = r#"{"fail":"permanent","code":"bad-row"}"#;
    for _ in 0..3 {
        enqueue_with(&redis, &["--batch", "b1"], "row", bad);
    }
    enqueue_with(&redis, &["--batch", "b1"], "row", OK);
    let outsider = enqueue(&redis, "row", bad);
    batch_ok(&redis, "seal", &["b1"]);
    wait_finished(&redis, "b1");
    assert_eq!(wait_final(&redis, &outsider, WAIT)["state"], "dead");

    let dry: Value = serde_json::from_str(&batch_ok(
        &redis,
        "retry-failed",
        &["b1", "--dry-run", "--json"],
    ))
    .unwrap();
    assert_eq!(
        (dry["matched"].as_u64(), dry["dry_run"].as_bool()),
        (Some(3), Some(true)),
        "{dry}"
    );
    assert_eq!(dead_letters(&redis).len(), 4, "a dry run changes nothing");

    // Stop the daemon so the requeued members wait: then cancel them.
    drop(ward_proc);
    let done: Value = serde_json::from_str(&batch_ok(
        &redis,
        "retry-failed",
        &["b1", "--note", "rows fixed", "--json"],
    ))
    .unwrap();
    assert_eq!(done["acted"].as_u64(), Some(3), "{done}");
    assert_eq!(
        dead_letters(&redis).len(),
        1,
        "only the outsider is left dead"
    );
    let pending = show_batch(&redis, "b1");
    assert_eq!(
        (count(&pending, "pending"), count(&pending, "dead")),
        (3, 0),
        "{pending:#}"
    );

    let cancelled: Value = serde_json::from_str(&batch_ok(
        &redis,
        "cancel",
        &["b1", "--note", "import abandoned", "--json"],
    ))
    .unwrap();
    assert_eq!(cancelled["cancelled"].as_u64(), Some(3), "{cancelled}");
    let ended = show_batch(&redis, "b1");
    assert_eq!(
        (
            count(&ended, "pending"),
            count(&ended, "cancelled"),
            count(&ended, "succeeded")
        ),
        (0, 3, 1),
        "{ended:#}"
    );
    let trail = audit(&redis);
    assert!(
        trail
            .iter()
            .any(|e| e["action"] == "requeue" && e["note"] == "rows fixed"),
        "{trail:?}"
    );
    assert!(
        trail
            .iter()
            .any(|e| e["action"] == "cancel" && e["note"] == "import abandoned"),
        "{trail:?}"
    );

    let missing = batch(&redis, "retry-failed", &["nope", "--note", "x"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no batch `nope`"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn the_admin_api_retries_a_batchs_failed_part_and_cancels_the_rest() {
    use crate::admin::client::{OPERATOR, VIEWER, admin_table, request, token_env};
    let redis = Redis::start();
    let port = free_port();
    let top = format!("{METRICS_ANY_PORT}\n{}", admin_table(port));
    let cfg = ward_testkit::Config::new(&redis.url())
        .top(&top)
        .retry(FAST_RETRY)
        .jobs(&job("row", "flaky", ""))
        .render();
    let daemon = Ward::start_with_env(&cfg, &token_env()).ready();
    crate::admin::client::wait_serving(port);
    batch_ok(&redis, "create", &["--id", "api-rf"]);
    for _ in 0..2 {
        enqueue_with(
            &redis,
            &["--batch", "api-rf"],
            "row",
            r#"{"fail":"permanent"}"#,
        );
    }
    batch_ok(&redis, "seal", &["api-rf"]);
    wait_finished(&redis, "api-rf");
    drop(daemon);
    // The API alone, so the requeued members wait to be cancelled.
    let _api = crate::admin::client::AdminProc::start(&cfg, port);
    let path = "/v1/queues/q/batches/api-rf/retry-failed";

    let viewer = request(port, "POST", path, Some(VIEWER.2), r#"{"note":"x"}"#);
    assert_eq!(viewer.status, 403, "{}", viewer.text);
    let no_note = request(port, "POST", path, Some(OPERATOR.2), "{}");
    assert_eq!(no_note.status, 400, "{}", no_note.text);
    let dry = request(port, "POST", path, Some(OPERATOR.2), r#"{"dry_run":true}"#);
    assert_eq!(
        (dry.status, dry.body["matched"].as_u64()),
        (200, Some(2)),
        "{}",
        dry.text
    );
    let done = request(port, "POST", path, Some(OPERATOR.2), r#"{"note":"fixed"}"#);
    assert_eq!(
        (done.status, done.body["acted"].as_u64()),
        (200, Some(2)),
        "{}",
        done.text
    );
    assert_eq!(count(&show_batch(&redis, "api-rf"), "pending"), 2);

    let cancel = request(
        port,
        "POST",
        "/v1/queues/q/batches/api-rf/cancel",
        Some(OPERATOR.2),
        r#"{"note":"abandoned"}"#,
    );
    assert_eq!(
        (cancel.status, cancel.body["cancelled"].as_u64()),
        (200, Some(2)),
        "{}",
        cancel.text
    );
    let ended = show_batch(&redis, "api-rf");
    assert_eq!(
        (count(&ended, "pending"), count(&ended, "cancelled")),
        (0, 2),
        "{ended:#}"
    );
    let missing = request(
        port,
        "POST",
        "/v1/queues/q/batches/nope/cancel",
        Some(OPERATOR.2),
        r#"{"note":"x"}"#,
    );
    assert_eq!(missing.status, 404, "{}", missing.text);
}

#[test]
fn retry_failed_after_the_plugin_is_fixed_makes_the_batch_succeed_and_fires_on_success_once() {
    let redis = Redis::start();
    let broken = format!("{}{}", job("row", "flaky", ""), job("done", "echo", ""));
    let cfg = config_full(&redis, "concurrency = 8", FAST_RETRY, &broken);
    let w = Ward::start(&cfg).ready();
    batch_ok(
        &redis,
        "create",
        &[
            "--id",
            "fix-1",
            "--on-complete",
            "done",
            "--on-success",
            "done",
        ],
    );
    // The flaky plugin refuses these rows; the fixed one (echo) takes them.
    let bad = r#"{"fail":"permanent","code":"bad-row"}"#;
    for i in 0..30 {
        let payload = if i % 10 == 0 { bad } else { OK };
        enqueue_with(&redis, &["--batch", "fix-1"], "row", payload);
    }
    batch_ok(&redis, "seal", &["fix-1"]);
    let v = wait_finished(&redis, "fix-1");
    assert_eq!(
        (count(&v, "succeeded"), count(&v, "dead")),
        (27, 3),
        "{v:#}"
    );
    assert_eq!(v["on_success_job"], Value::Null, "{v:#}");

    // The fix: the job type's plugin is replaced and the daemon reloaded.
    let fixed = format!("{}{}", job("row", "echo", ""), job("done", "echo", ""));
    std::fs::write(
        w.dir.path().join("ward.toml"),
        config_full(&redis, "concurrency = 8", FAST_RETRY, &fixed),
    )
    .unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &w.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for(WAIT, "the reload", || {
        w.log_lines()
            .iter()
            .any(|l| l["message"] == "config reloaded")
    });
    let done: Value = serde_json::from_str(&batch_ok(
        &redis,
        "retry-failed",
        &["fix-1", "--note", "plugin fixed", "--json"],
    ))
    .unwrap();
    assert_eq!(done["acted"].as_u64(), Some(3), "{done}");
    try_wait_for(WAIT, "the batch to succeed", || {
        show_batch(&redis, "fix-1")["on_success_job"].is_string()
    })
    .unwrap();
    let v = show_batch(&redis, "fix-1");
    assert_eq!(
        (
            count(&v, "succeeded"),
            count(&v, "dead"),
            count(&v, "pending")
        ),
        (30, 0, 0),
        "{v:#}"
    );
    let success = v["on_success_job"].as_str().unwrap().to_string();
    assert_eq!(wait_final(&redis, &success, WAIT)["state"], "succeeded");
    // One on_complete (when every member first ended) and one on_success.
    let callbacks = jobs_of_type(&redis, "done");
    assert_eq!(callbacks.len(), 2, "{callbacks:?}");
    assert!(callbacks.contains(&success));
    assert!(dead_letters(&redis).is_empty());
}
