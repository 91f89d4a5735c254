//! Quarantining a batch (issue 18, item 4): `ward batch pause` holds its
//! members back without spending an attempt, as a paused job type's jobs
//! are held, while other jobs run; an attempt under way finishes; `ward
//! batch resume` lets them run; `batch show` says paused and counts the
//! members running. And ledger retention: a finished batch's ledger goes
//! once it finished longer ago than `batch_retention`, an unfinished one
//! stays.

use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// `ward batch <sub> --redis URL q <args>`, asserting success; stdout.
fn batch_ok(redis: &Redis, sub: &str, args: &[&str]) -> String {
    let url = redis.url();
    let mut all = vec!["batch", sub, "--redis", url.as_str(), "q"];
    all.extend_from_slice(args);
    let out = ward(&all);
    assert!(
        out.status.success(),
        "ward batch {sub} {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn show_batch(redis: &Redis, id: &str) -> Value {
    serde_json::from_str(&batch_ok(redis, "show", &[id, "--json"])).unwrap()
}

#[test]
fn a_paused_batch_holds_its_members_without_an_attempt_until_it_is_resumed() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 8, &job("row", "flaky", ""))).ready();
    batch_ok(&redis, "create", &["--id", "b1"]);
    let on = ["--batch", "b1"];

    // A member under way when the pause comes finishes as usual, and
    // `show` counts it as running meanwhile.
    let slow = enqueue_with(&redis, &on, "row", r#"{"times":0,"sleep_ms":2500}"#);
    let slow = slow.trim();
    wait_for(WAIT, "the slow member to run", || {
        show(&redis, slow)["state"] == "running"
    });
    let b = show_batch(&redis, "b1");
    assert_eq!(b["running"], 1, "{b:#}");
    assert_eq!(b["paused"], Value::Null, "{b:#}");

    let out = batch_ok(&redis, "pause", &["b1", "--note", "bad rows"]);
    assert!(out.contains("paused batch `b1`"), "{out}");
    // Daemons read pauses every 250 ms: the promise is within a second.
    std::thread::sleep(Duration::from_secs(1));
    let members: Vec<String> = (0..5)
        .map(|_| {
            enqueue_with(&redis, &on, "row", r#"{"times":0}"#)
                .trim()
                .to_string()
        })
        .collect();
    let other = enqueue(&redis, "row", r#"{"times":0}"#);
    assert_eq!(wait_final(&redis, other.trim(), WAIT)["state"], "succeeded");
    assert_eq!(wait_final(&redis, slow, WAIT)["state"], "succeeded");
    for id in &members {
        let mut last = Value::Null;
        try_wait_for(WAIT, "the member to be held", || {
            last = show(&redis, id);
            last["state"] == "paused"
        })
        .unwrap_or_else(|e| panic!("{e}: {last:#}"));
        let s = show(&redis, id);
        assert_eq!(s["attempts"], 0, "no attempt spent: {s}");
        let held = history(&s);
        assert_eq!(held[0]["event"], "held", "{s}");
        assert_eq!(held[0]["why"], "batch b1 paused", "{s}");
    }
    let b = show_batch(&redis, "b1");
    assert_eq!(b["paused"]["note"], "bad rows", "{b:#}");
    assert_eq!(b["pending"], 5, "{b:#}");
    assert_eq!(b["succeeded"], 1, "{b:#}");
    let text = batch_ok(&redis, "show", &["b1"]);
    assert!(text.contains("paused     by "), "{text}");
    let list = batch_ok(&redis, "list", &[]);
    assert!(list.contains("b1") && list.contains("paused"), "{list}");
    // A job type cannot take the form of a batch's pause.
    let refused = ward(&[
        "pause",
        "--redis",
        &redis.url(),
        "q",
        "--job",
        "batch:b1",
        "--note",
        "x",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("ward batch pause QUEUE b1"),
        "{}",
        stderr(&refused)
    );

    let out = batch_ok(&redis, "resume", &["b1", "--note", "fixed"]);
    assert!(out.contains("5 held member(s) back in the stream"), "{out}");
    batch_ok(&redis, "seal", &["b1"]);
    for id in &members {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
    }
    let b = show_batch(&redis, "b1");
    assert_eq!(b["status"], "finished", "{b:#}");
    assert_eq!(b["succeeded"], 6, "{b:#}");
    assert_eq!(b["paused"], Value::Null, "{b:#}");
    let actions: Vec<String> = audit(&redis)
        .iter()
        .filter_map(|a| a["action"].as_str().map(str::to_string))
        .collect();
    assert!(
        actions.contains(&"batch-pause".to_string())
            && actions.contains(&"batch-resume".to_string()),
        "{actions:?}"
    );
}

#[test]
fn a_batch_paused_until_a_time_resumes_by_itself_then() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 8, &job("row", "flaky", ""))).ready();
    batch_ok(&redis, "create", &["--id", "b2"]);
    // A time already past is refused, and changes nothing.
    let url = redis.url();
    let past = ward(&[
        "batch",
        "pause",
        "--redis",
        &url,
        "q",
        "b2",
        "--note",
        "x",
        "--until",
        "2000-01-01T00:00:00Z",
    ]);
    assert!(!past.status.success());
    assert!(
        stderr(&past).contains("already passed"),
        "{}",
        stderr(&past)
    );
    assert_eq!(show_batch(&redis, "b2")["paused"], Value::Null);
    // A resume has no --until: it takes effect at once.
    let resume = ward(&[
        "batch", "resume", "--redis", &url, "q", "b2", "--until", "1h",
    ]);
    assert!(!resume.status.success());
    assert!(
        stderr(&resume).contains("unexpected argument '--until'"),
        "{}",
        stderr(&resume)
    );

    let out = batch_ok(
        &redis,
        "pause",
        &["b2", "--note", "for a moment", "--until", "5s"],
    );
    assert!(out.contains(" or `ward batch resume q b2`"), "{out}");
    let b = show_batch(&redis, "b2");
    assert!(b["paused"]["until_ms"].as_u64().is_some(), "{b:#}");
    let text = batch_ok(&redis, "show", &["b2"]);
    assert!(text.contains("held until 20"), "{text}");
    std::thread::sleep(Duration::from_secs(1));
    let members: Vec<String> = (0..3)
        .map(|_| {
            enqueue_with(&redis, &["--batch", "b2"], "row", r#"{"times":0}"#)
                .trim()
                .to_string()
        })
        .collect();
    batch_ok(&redis, "seal", &["b2"]);
    // Held while the pause lasts...
    for id in &members {
        wait_for(WAIT, "the member to be held", || {
            show(&redis, id)["state"] == "paused"
        });
    }
    // ...then run without anyone resuming, once each.
    for id in &members {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
    }
    let b = show_batch(&redis, "b2");
    assert_eq!(b["status"], "finished", "{b:#}");
    assert_eq!(b["paused"], Value::Null, "{b:#}");
}

#[test]
fn ledger_retention_removes_only_batches_that_finished_before_the_cut() {
    let redis = Redis::start();
    for id in ["done", "open", "waiting"] {
        batch_ok(&redis, "create", &["--id", id]);
    }
    // Sealed with no members: finished at once. `waiting` has a member
    // that never runs (no daemon), so it stays pending.
    batch_ok(&redis, "seal", &["done"]);
    enqueue_with(&redis, &["--batch", "waiting"], "row", "{}");
    batch_ok(&redis, "seal", &["waiting"]);
    batch_ok(&redis, "pause", &["done", "--note", "x"]);
    assert_eq!(show_batch(&redis, "done")["status"], "finished");
    // As a daemon leaves it after counting a producer's plain-XADD member.
    let _: () = redis::cmd("SADD")
        .arg("ward:{q}:batch:done:joined")
        .arg("1-1")
        .query(&mut redis.con())
        .unwrap();
    let finished_at = show_batch(&redis, "done")["finished_at_ms"]
        .as_u64()
        .unwrap();
    let (before, after) = crate::support::with_queue(&redis, async |q| {
        let before = q.expire_batches(finished_at - 1).await.unwrap();
        let after = q.expire_batches(finished_at + 1).await.unwrap();
        (before, after)
    });
    assert_eq!(
        (before, after),
        (0, 1),
        "only once the cut is past its finish"
    );
    let missing = ward(&["batch", "show", "--redis", &redis.url(), "q", "done"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("has no batch `done`"),
        "{}",
        stderr(&missing)
    );
    let paused: Option<String> = redis::cmd("HGET")
        .arg("ward:{q}:paused")
        .arg("batch:done")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(paused, None, "its pause went with it");
    let joined: bool = redis::cmd("EXISTS")
        .arg("ward:{q}:batch:done:joined")
        .query(&mut redis.con())
        .unwrap();
    assert!(!joined, "its joined members went with it");
    let list = batch_ok(&redis, "list", &[]);
    assert!(!list.contains("done"), "{list}");
    assert!(list.contains("open") && list.contains("waiting"), "{list}");
    assert_eq!(show_batch(&redis, "waiting")["pending"], 1);
}
