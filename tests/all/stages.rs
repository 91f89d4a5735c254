//! Follow-on jobs and stages (issue 18, items 5 and 7): a success enqueues
//! its follow-ons in the same APPLY that acknowledges it, once, however
//! often it is applied, retried or redelivered; a job type's `then` makes a
//! pipeline whose stages pass their results along; results are kept with
//! the record for `result_ttl`, bounded by `result_max_bytes`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use ward::job::{FailureClass, JobEntry, Outcome};
use ward::store::{Keys, Queue};
use ward::transition::{Completion, FollowOn, Ran, Transition};
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

type Entry = (String, HashMap<String, String>);

/// Every entry of `stream`.
fn entries(con: &mut redis::Connection, stream: &str) -> Vec<Entry> {
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap()
}

/// The entries of `stream` whose job type is `job`.
fn of_type(con: &mut redis::Connection, stream: &str, job: &str) -> Vec<Entry> {
    entries(con, stream)
        .into_iter()
        .filter(|(_, f)| f.get("job").map(String::as_str) == Some(job))
        .collect()
}

/// A success of job `id`, delivered as `entry_id`, asking for `follow_ons`.
fn success(entry_id: &str, id: &str, attempt: u32, follow_ons: Vec<FollowOn>) -> Completion {
    let entry = JobEntry {
        entry_id: entry_id.into(),
        id: id.into(),
        job: "first".into(),
        payload: b"in".to_vec(),
        attempt,
        idempotency_key: None,
        checkpoint: None,
        first_at: None,
        last_delay_ms: None,
        lease_expiries: 0,
        key_claimed: false,
        extra: vec![
            ("order_id".into(), b"7".to_vec()),
            ("batch".into(), b"b1".to_vec()),
        ],
    };
    let ran = Ran {
        idempotency_ttl: Duration::from_secs(600),
        finished_ms: 1,
        ..Ran::default()
    };
    let mut c = Completion::new(
        entry,
        Outcome::Success(b"out".to_vec()),
        Transition::Succeed,
        ran,
    );
    c.follow_ons = follow_ons;
    c
}

fn follow_ons() -> Vec<FollowOn> {
    vec![
        FollowOn {
            job_type: "next".into(),
            payload: b"out".to_vec(),
            key: None,
            batch: Some("b1".into()),
        },
        FollowOn {
            job_type: "child".into(),
            payload: b"c".to_vec(),
            key: Some("child-key".into()),
            batch: None,
        },
    ]
}

/// Adds one entry of job `first` (with `fields`) to `keys`' stream and
/// leases it: a pending delivery. Returns its entry id.
fn leased(con: &mut redis::Connection, keys: &Keys, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&keys.jobs).arg("*").arg("job").arg("first");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    let id: String = cmd.query(con).unwrap();
    // Everything new, the follow-ons added before it included.
    lease_to(con, &keys.jobs, "c", 100);
    id
}

#[test]
fn follow_ons_are_enqueued_once_with_the_success_however_often_it_is_applied_or_rerun() {
    let redis = Redis::start();
    let keys = Keys::new("q");
    let mut con = redis.con();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queue = rt.block_on(async {
        let con = ward::store::connect(&redis.url(), Duration::from_secs(1))
            .await
            .unwrap();
        Queue::new(keys.clone(), con)
    });
    // A member of sealed batch b1 with one member: its next stage must
    // join the batch before the member leaves it.
    let created: i64 = redis::cmd("HSET")
        .arg(keys.batch("b1").0)
        .arg(&[
            ("id", "b1"),
            ("state", "sealed"),
            ("total", "1"),
            ("pending", "1"),
            ("succeeded", "0"),
            ("dead", "0"),
            ("cancelled", "0"),
        ])
        .query(&mut con)
        .unwrap();
    assert_eq!(created, 7);
    create_group(&mut con, &keys.jobs);
    let first = leased(&mut con, &keys, &[]);
    let c = success(&first, &first, 1, follow_ons());
    let (once, again) = rt.block_on(async {
        let once = queue.apply(std::slice::from_ref(&c)).await.unwrap().took;
        // A batch re-sent after a lost reply: not pending, nothing added.
        let again = queue.apply(std::slice::from_ref(&c)).await.unwrap().took;
        (once, again)
    });
    assert_eq!((once, again), (vec![true], vec![false]));

    let next = of_type(&mut con, &keys.jobs, "next");
    assert_eq!(next.len(), 1, "{next:?}");
    let f = &next[0].1;
    assert_eq!(f["payload"], "out");
    assert_eq!(f["parent"], first);
    assert_eq!(f["order_id"], "7", "the parent's correlation fields");
    assert_eq!(f["batch"], "b1");
    assert_eq!(f["ward:batch"], "b1", "counted in its ledger already");
    assert_eq!(f["idempotency_key"], format!("{first}/0"));
    assert_eq!(f["ward:key_claimed"], "1", "its key is set to it below");
    let child = of_type(&mut con, &keys.jobs, "child");
    assert_eq!(child.len(), 1, "{child:?}");
    assert_eq!(child[0].1["idempotency_key"], "child-key");
    assert!(!child[0].1.contains_key("batch"), "{child:?}");
    let mark: String = redis::cmd("GET")
        .arg(keys.idempotency(&format!("{first}/0")))
        .query(&mut con)
        .unwrap();
    assert_eq!(mark, next[0].0, "the key names the job it enqueued");

    // The ledger counted the stage before the parent left: still open.
    let ledger: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.batch("b1").0)
        .query(&mut con)
        .unwrap();
    assert_eq!(ledger["total"], "2", "{ledger:?}");
    assert_eq!(ledger["pending"], "1", "{ledger:?}");
    assert_eq!(ledger["succeeded"], "1", "{ledger:?}");
    assert!(!ledger.contains_key("finished_at"), "{ledger:?}");
    assert!(!ledger.contains_key("late"), "a stage is no late member");

    // The same job delivered again (an operator's requeue, a second
    // success): its follow-ons' keys are taken, so none is added.
    let rerun = leased(
        &mut con,
        &keys,
        &[("ward:id", &first), ("ward:attempt", "2")],
    );
    let c = success(&rerun, &first, 2, follow_ons());
    let took = rt
        .block_on(queue.apply(std::slice::from_ref(&c)))
        .unwrap()
        .took;
    assert_eq!(took, vec![true]);
    assert_eq!(of_type(&mut con, &keys.jobs, "next").len(), 1);
    assert_eq!(of_type(&mut con, &keys.jobs, "child").len(), 1);

    // A failure enqueues nothing, whatever it carries.
    let failing = leased(&mut con, &keys, &[]);
    let entry = JobEntry {
        entry_id: failing.clone(),
        id: failing.clone(),
        job: "first".into(),
        payload: b"in".to_vec(),
        attempt: 1,
        idempotency_key: None,
        checkpoint: None,
        first_at: None,
        last_delay_ms: None,
        lease_expiries: 0,
        key_claimed: false,
        extra: Vec::new(),
    };
    let mut dead = Completion::new(
        entry,
        Outcome::failure(FailureClass::Permanent, "no"),
        Transition::DeadLetter(ward::job::DeadReason::Permanent),
        Ran::default(),
    );
    dead.follow_ons = vec![FollowOn {
        job_type: "never".into(),
        payload: Vec::new(),
        key: None,
        batch: None,
    }];
    let took = rt.block_on(queue.apply(&[dead])).unwrap().took;
    assert_eq!(took, vec![true]);
    assert!(of_type(&mut con, &keys.jobs, "never").is_empty());
}

/// The id of the job enqueued as follow-on `index` of job `parent`, once
/// it is there (read from its derived idempotency key).
fn follow_on_of(redis: &Redis, parent: &str, index: usize) -> String {
    let key = Keys::new("q").idempotency(&format!("{parent}/{index}"));
    let mut id = None;
    wait_for(WAIT, "the next stage to be enqueued", || {
        let v: Option<String> = redis::cmd("GET").arg(&key).query(&mut redis.con()).unwrap();
        id = v.map(|v| v.split(' ').next().unwrap_or_default().to_string());
        id.is_some()
    });
    id.unwrap()
}

fn three_stages(redis: &Redis, queue: &str) -> String {
    let jobs = [
        job("first", "flaky", "then = \"second\""),
        job("second", "echo", "then = \"third\""),
        job("third", "echo", ""),
    ]
    .concat();
    config_full(redis, queue, FAST_RETRY, &jobs)
}

#[test]
fn a_three_stage_chain_passes_each_result_along_and_a_retried_stage_enqueues_the_next_once() {
    let redis = Redis::start();
    let _ward = Ward::start(&three_stages(&redis, "concurrency = 4")).ready();
    let url = redis.url();
    let b = stdout(&ward(&["batch", "create", "--redis", &url, "q"]));
    let b = b.trim();
    // Fails once, then succeeds with `ok attempt 2`: the result, not the
    // payload, travels to the next stage.
    let first = enqueue_with(&redis, &["--batch", b], "first", r#"{"times":1}"#);
    let first = first.trim();
    assert!(
        ward(&["batch", "seal", "--redis", &url, "q", b])
            .status
            .success()
    );
    let done = wait_final(&redis, first, WAIT);
    assert_eq!(done["attempts"], 2, "{done}");
    let second = follow_on_of(&redis, first, 0);
    let second_done = wait_final(&redis, &second, WAIT);
    assert_eq!(second_done["job"], "second");
    assert_eq!(second_done["result"], "ok attempt 2", "{second_done}");
    let third = follow_on_of(&redis, &second, 0);
    let third_done = wait_final(&redis, &third, WAIT);
    assert_eq!(third_done["job"], "third");
    assert_eq!(third_done["result"], "ok attempt 2", "{third_done}");

    // Each stage once: one record per type, and the batch counted all three
    // and finished only after the last.
    let batch: Value =
        serde_json::from_slice(&ward(&["batch", "show", "--redis", &url, "q", b, "--json"]).stdout)
            .unwrap();
    assert_eq!(batch["status"], "finished", "{batch:#}");
    assert_eq!(batch["total"], 3, "{batch:#}");
    assert_eq!(batch["succeeded"], 3, "{batch:#}");
    std::thread::sleep(Duration::from_millis(500));
    for t in ["first", "second", "third"] {
        assert_eq!(records_of(&redis, t).len(), 1, "records of {t}");
    }
}

#[test]
fn a_first_stage_redelivered_after_its_daemon_was_killed_enqueues_the_next_stage_once() {
    let redis = Redis::start();
    let cfg = three_stages(&redis, "concurrency = 4\nlease = \"1s\"");
    let mut a = Ward::start(&cfg).ready();
    // Long enough to be killed in the middle of it.
    let first = enqueue(&redis, "first", r#"{"times":0,"sleep_ms":1500}"#);
    let first = first.trim();
    wait_for(WAIT, "the first attempt to start", || {
        show(&redis, first)["state"] == "running"
    });
    a.kill();
    let _b = Ward::start(&cfg).ready();
    let done = wait_final(&redis, first, WAIT);
    assert_eq!(done["state"], "succeeded", "{done}");
    let second = follow_on_of(&redis, first, 0);
    let third = follow_on_of(&redis, &second, 0);
    wait_final(&redis, &third, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(records_of(&redis, "second").len(), 1);
    assert_eq!(records_of(&redis, "third").len(), 1);
    let again = Keys::new("q").idempotency(&format!("{first}/1"));
    let none: Option<String> = redis::cmd("GET")
        .arg(again)
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(none, None, "one follow-on only");
}

#[test]
fn a_result_is_kept_for_its_result_ttl_and_one_over_result_max_bytes_leaves_a_note() {
    let redis = Redis::start();
    // The queue keeps no record of successes; these job types keep theirs.
    let jobs = [
        job("kept", "echo", "result_ttl = \"2s\""),
        job(
            "big",
            "echo",
            "result_ttl = \"1h\"\nresult_max_bytes = \"8\"",
        ),
    ]
    .concat();
    let cfg = config_queue(&redis, 4, FAST_RETRY, "succeeded_ttl = \"0s\"", &jobs);
    let _ward = Ward::start(&cfg).ready();
    let kept = enqueue(&redis, "kept", "the result");
    let kept = wait_final(&redis, kept.trim(), WAIT);
    assert_eq!(kept["result"], "the result", "{kept}");
    assert_eq!(kept["result_note"], Value::Null);
    let big = enqueue(&redis, "big", "more than eight bytes");
    let big_id = big.trim();
    let big = wait_final(&redis, big_id, WAIT);
    assert_eq!(big["result"], Value::Null, "{big}");
    assert_eq!(
        big["result_note"],
        "result not kept: 21 bytes, over this job type's result_max_bytes of 8"
    );
    let text = stdout(&ward(&[
        "job",
        "show",
        "--redis",
        &redis.url(),
        "q",
        big_id,
    ]));
    assert!(
        text.contains("result    (result not kept: 21 bytes"),
        "{text}"
    );
    // Gone with its record once its result_ttl is over.
    let id = kept["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(10), "the record to expire", || {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(Keys::new("q").record(&id))
            .query(&mut redis.con())
            .unwrap();
        exists == 0
    });
}
