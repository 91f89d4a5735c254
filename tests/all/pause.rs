//! Pause and resume (`ward pause`, `ward resume`): a paused job type's jobs
//! are held without running or spending an attempt while other types flow,
//! on every daemon, across restarts; a resume (or an `--until`) runs each
//! held job exactly once, as the attempt it was held at.

use std::collections::HashMap;
use std::time::Duration;

use ward::store::{Pause, Queue};
use ward::transition::{Completion, Deferral, Ran, Transition};
use ward_testkit::{
    Redis, Ward, audit, config, create_group, job, job_fields, queue_stream, runs_per_job, show,
    stderr, stdout, wait_for, ward, xadd_entries, xadd_many,
};

use crate::support::with_queue;

const WAIT: Duration = Duration::from_secs(30);
/// The promise under test: every daemon honours a pause within a second.
/// Jobs enqueued after this long must be held, whichever daemon leases them.
const HONOURED_WITHIN: Duration = Duration::from_secs(1);
/// Succeeds at once (the flaky plugin, asked to fail no attempt).
const OK: &str = r#"{"times":0}"#;

/// Two job types, `a` and `b`, both the flaky plugin.
fn two_types(redis: &Redis) -> String {
    config(
        redis,
        4,
        &format!("{}{}", job("a", "flaky", ""), job("b", "flaky", "")),
    )
}

/// Two daemons running [`two_types`].
fn two_daemons(redis: &Redis) -> (Ward, Ward) {
    let cfg = two_types(redis);
    (Ward::start(&cfg).ready(), Ward::start(&cfg).ready())
}

/// Runs `ward` with `args`, then `--redis <url>`, and expects success;
/// returns its standard output.
fn ward_ok(redis: &Redis, args: &[&str]) -> String {
    let url = redis.url();
    let mut all = args.to_vec();
    all.extend(["--redis", url.as_str()]);
    let out = ward(&all);
    assert!(
        out.status.success(),
        "ward {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// `ward stats q --json`, the row of queue `q`.
fn stats(redis: &Redis) -> serde_json::Value {
    let out = ward_ok(redis, &["stats", "q", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// Whether every job of `ids` has record field `state` = `state`.
fn all_in(redis: &Redis, ids: &[String], state: &str) -> bool {
    job_fields(redis, ids, "state")
        .iter()
        .all(|s| s.as_deref() == Some(state))
}

/// How many of `ids` ran, by the plugin's own log lines, across `daemons`.
fn ran<'a>(runs: &HashMap<String, usize>, ids: impl IntoIterator<Item = &'a String>) -> usize {
    ids.into_iter().filter(|id| runs.contains_key(*id)).count()
}

/// The audit entries of `action` on `target`.
fn audited(redis: &Redis, action: &str, target: &str) -> Vec<serde_json::Value> {
    audit(redis)
        .into_iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .collect()
}

#[test]
fn a_paused_job_type_is_held_on_every_daemon_while_others_flow_and_resume_runs_each_once() {
    let redis = Redis::start();
    let (w1, w2) = two_daemons(&redis);
    ward_ok(
        &redis,
        &[
            "pause",
            "q",
            "--job",
            "a",
            "--note",
            "bad deploy",
            "--by",
            "ana",
        ],
    );
    std::thread::sleep(HONOURED_WITHIN);
    let a = xadd_many(&redis, 20, "a", OK);
    let b = xadd_many(&redis, 20, "b", OK);

    wait_for(WAIT, "type b to run", || all_in(&redis, &b, "succeeded"));
    wait_for(WAIT, "type a to be held", || all_in(&redis, &a, "paused"));
    let runs = runs_per_job(&[&w1, &w2]);
    assert_eq!(ran(&runs, &a), 0, "a paused type ran: {runs:?}");
    let held = show(&redis, &a[0]);
    assert_eq!(held["state"], "paused", "{held}");
    assert_eq!(held["attempts"], 0, "no attempt is spent: {held}");

    let s = stats(&redis);
    assert_eq!(s["held"], 20, "{s}");
    let pauses = s["paused"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{s}");
    assert_eq!(pauses[0]["target"], "a", "{s}");
    assert_eq!(pauses[0]["by"], "ana", "{s}");
    assert_eq!(pauses[0]["note"], "bad deploy", "{s}");
    assert_eq!(pauses[0]["held"], 20, "{s}");
    let table = ward_ok(&redis, &["stats", "q"]);
    assert!(table.contains("paused job type `a` by ana"), "{table}");

    let out = ward_ok(
        &redis,
        &["resume", "q", "--job", "a", "--note", "fixed", "--json"],
    );
    let resumed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(resumed["released"], 20, "{resumed}");
    wait_for(WAIT, "the held jobs to run", || {
        all_in(&redis, &a, "succeeded")
    });

    // Each ran once, and as attempt 1: holding spent no attempt.
    let runs = runs_per_job(&[&w1, &w2]);
    for id in &a {
        assert_eq!(runs.get(id), Some(&1), "job {id}: {runs:?}");
    }
    let results = job_fields(&redis, &a, "result");
    assert!(
        results.iter().all(|r| r.as_deref() == Some("ok attempt 1")),
        "{results:?}"
    );
    assert_eq!(stats(&redis)["held"], 0);
    assert_eq!(stats(&redis)["paused"], serde_json::json!([]));
    let pause = audited(&redis, "pause", "a");
    assert_eq!(pause.len(), 1, "{pause:?}");
    assert_eq!(pause[0]["by"], "ana");
    assert_eq!(pause[0]["note"], "bad deploy");
    let resume = audited(&redis, "resume", "a");
    assert_eq!(resume.len(), 1, "{resume:?}");
    assert_eq!(resume[0]["count"], 20, "{resume:?}");
}

#[test]
fn a_paused_queue_runs_nothing_even_after_a_restart_and_resume_drains_it() {
    let redis = Redis::start();
    let cfg = two_types(&redis);
    let w1 = Ward::start(&cfg).ready();
    ward_ok(&redis, &["pause", "q", "--note", "maintenance"]);
    std::thread::sleep(HONOURED_WITHIN);
    let mut ids = xadd_many(&redis, 10, "a", OK);
    ids.extend(xadd_many(&redis, 10, "b", OK));

    // The pause lives in Redis: a daemon started afresh honours it too.
    w1.stop();
    let w2 = Ward::start(&cfg).ready();
    std::thread::sleep(HONOURED_WITHIN);
    let s = stats(&redis);
    // Not read from (a read under way when the pause came holds what it got).
    let waiting = s["ready"].as_u64().unwrap() + s["held"].as_u64().unwrap();
    assert_eq!(waiting, 20, "{s}");
    assert_eq!(s["leased"], 0, "{s}");
    assert_eq!(s["paused"][0]["target"], "*", "{s}");
    assert_eq!(ran(&runs_per_job(&[&w2]), &ids), 0);

    ward_ok(&redis, &["resume", "q", "--note", "done"]);
    wait_for(WAIT, "the queue to drain", || {
        all_in(&redis, &ids, "succeeded")
    });
    let runs = runs_per_job(&[&w2]);
    assert!(ids.iter().all(|id| runs.get(id) == Some(&1)), "{runs:?}");
    assert_eq!(audited(&redis, "pause", "*").len(), 1);
    assert_eq!(audited(&redis, "resume", "*").len(), 1);
}

#[test]
fn a_pause_with_until_ends_by_itself_and_releases_its_jobs_once() {
    let redis = Redis::start();
    let (w1, w2) = two_daemons(&redis);
    ward_ok(
        &redis,
        &[
            "pause", "q", "--job", "a", "--note", "short", "--until", "3s",
        ],
    );
    std::thread::sleep(HONOURED_WITHIN);
    let a = xadd_many(&redis, 10, "a", OK);
    wait_for(WAIT, "type a to be held", || all_in(&redis, &a, "paused"));

    wait_for(WAIT, "the pause to end and its jobs to run", || {
        all_in(&redis, &a, "succeeded")
    });
    let runs = runs_per_job(&[&w1, &w2]);
    assert!(a.iter().all(|id| runs.get(id) == Some(&1)), "{runs:?}");
    let history = show(&redis, &a[0])["history"].clone();
    assert_eq!(history[0]["event"], "held", "{history}");
    assert_eq!(history[1]["event"], "released", "{history}");
    assert_eq!(stats(&redis)["paused"], serde_json::json!([]));
    // One daemon ended it, and said so once.
    let resume = audited(&redis, "resume", "a");
    assert_eq!(resume.len(), 1, "{resume:?}");
    assert_eq!(resume[0]["via"], "daemon", "{resume:?}");
}

/// Pauses type `a` (note `why`) and enqueues `n` jobs of it; returns their
/// ids once all are held.
fn hold_a(redis: &Redis, n: usize, why: &str) -> Vec<String> {
    ward_ok(redis, &["pause", "q", "--job", "a", "--note", why]);
    std::thread::sleep(HONOURED_WITHIN);
    let a = xadd_many(redis, n, "a", OK);
    wait_for(WAIT, "type a to be held", || all_in(redis, &a, "paused"));
    a
}

/// Removes the pause of type `a` as a resume's first step does, without
/// its release.
fn remove_pause_of_a(redis: &Redis) {
    let _: () = redis::cmd("HDEL")
        .arg("ward:{q}:paused")
        .arg("a")
        .query(&mut redis.con())
        .unwrap();
}

#[test]
fn a_resume_the_daemons_saw_first_reports_all_it_released_and_one_cut_short_is_finished() {
    let redis = Redis::start();
    let (w1, w2) = two_daemons(&redis);
    let a = hold_a(&redis, 10, "first");

    // A resume slow between its removal and its release: both daemons see
    // the pause end first, and leave the release (and its count) to it.
    remove_pause_of_a(&redis);
    std::thread::sleep(HONOURED_WITHIN);
    let out = ward_ok(
        &redis,
        &["resume", "q", "--job", "a", "--note", "x", "--json"],
    );
    let resumed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(resumed["released"], 10, "{resumed}");
    assert_eq!(audited(&redis, "resume", "a")[0]["count"], 10);
    wait_for(WAIT, "the released jobs to run", || {
        all_in(&redis, &a, "succeeded")
    });

    // A resume cut short after its removal: the daemons finish it.
    let cut = hold_a(&redis, 10, "second");
    remove_pause_of_a(&redis);
    wait_for(WAIT, "the daemons to release the jobs", || {
        all_in(&redis, &cut, "succeeded")
    });
    let runs = runs_per_job(&[&w1, &w2]);
    assert!(
        a.iter().chain(&cut).all(|id| runs.get(id) == Some(&1)),
        "{runs:?}"
    );
    assert_eq!(stats(&redis)["held"], 0);
}

#[test]
fn an_attempt_running_when_its_type_is_paused_finishes_normally() {
    let redis = Redis::start();
    let w = Ward::start(&two_types(&redis)).ready();
    let id = xadd_many(&redis, 1, "a", r#"{"times":0,"sleep_ms":1500}"#).remove(0);
    wait_for(WAIT, "the attempt to start", || {
        runs_per_job(&[&w]).contains_key(&id)
    });
    ward_ok(&redis, &["pause", "q", "--job", "a", "--note", "stop a"]);
    wait_for(WAIT, "the running attempt to finish", || {
        all_in(&redis, std::slice::from_ref(&id), "succeeded")
    });
    assert_eq!(runs_per_job(&[&w]).get(&id), Some(&1));
    let done = show(&redis, &id);
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(stats(&redis)["held"], 0);
}

#[test]
fn pause_refuses_a_missing_note_and_a_time_that_has_passed() {
    let redis = Redis::start();
    let url = redis.url();
    let none = ward(&["pause", "q", "--note", " ", "--redis", &url]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("note"), "{}", stderr(&none));
    let past = ward(&[
        "pause",
        "q",
        "--note",
        "x",
        "--until",
        "2001-01-01T00:00:00Z",
        "--redis",
        &url,
    ]);
    assert!(!past.status.success());
    assert!(
        stderr(&past).contains("already passed"),
        "{}",
        stderr(&past)
    );
    assert_eq!(stats(&redis)["paused"], serde_json::json!([]));
    assert!(audit(&redis).is_empty());
}

/// Leases every ready entry of queue `q` and records each as held by a
/// pause (what triage does for a paused type), in one APPLY.
async fn hold_all(q: &Queue) -> Vec<bool> {
    let deliveries = q.lease_batch("test", 100, None).await.unwrap();
    let batch: Vec<Completion> = deliveries
        .into_iter()
        .map(|d| {
            let why = Deferral::Paused { queue: false };
            let outcome = why.recorded(Duration::ZERO);
            let t = Transition::Defer {
                delay: Duration::ZERO,
                why,
            };
            Completion::new(d.parse().unwrap(), outcome, t, Ran::default())
        })
        .collect();
    q.apply(&batch).await.unwrap().took
}

fn pause_value() -> Pause {
    Pause {
        by: "t".into(),
        at_ms: 1,
        note: "n".into(),
        until_ms: None,
    }
}

#[test]
fn a_hold_after_the_resume_goes_to_the_stream_and_release_skips_types_still_paused() {
    let redis = Redis::start();
    let mut con = redis.con();
    create_group(&mut con, &queue_stream("q"));
    // Attempt 2 of a job of type a (a retry), and a first attempt of type b.
    let retried = xadd_entries(
        &redis,
        &[vec![
            ("job", "a"),
            ("payload", "p"),
            ("ward:id", "j1"),
            ("ward:attempt", "2"),
        ]],
    );
    let b = xadd_many(&redis, 1, "b", "p");
    with_queue(&redis, async |q| {
        q.set_pause("*", &pause_value()).await.unwrap();
        q.set_pause("a", &pause_value()).await.unwrap();
        assert_eq!(hold_all(&q).await, [true, true]);
        assert_eq!(q.held_counts(10).await.unwrap().total, 2);

        // The queue resumes; type a is still paused on its own.
        q.remove_pause("*").await.unwrap();
        assert_eq!(q.release_held("*").await.unwrap().released, 1);
        q.remove_pause("a").await.unwrap();
        assert_eq!(q.release_held("a").await.unwrap().released, 1);
        assert_eq!(
            q.release_held("*").await.unwrap().released,
            0,
            "rerun: nothing twice"
        );

        // Released as the attempts they were held at: 2 and 1.
        let back = q.lease_batch("test", 100, None).await.unwrap();
        let mut attempts: Vec<(String, u32)> = back
            .into_iter()
            .map(|d| {
                let e = d.parse().unwrap();
                (e.id, e.attempt)
            })
            .collect();
        attempts.sort();
        let want = vec![(b[0].clone(), 1), ("j1".to_string(), 2)];
        assert_eq!(attempts, want, "{retried:?}");

        // Nothing is paused now: a hold decided on a stale view goes back to
        // the stream instead of into the held set, where nothing would release it.
        xadd_many(&redis, 1, "a", "p");
        assert_eq!(hold_all(&q).await, [true]);
        assert_eq!(q.held_counts(10).await.unwrap().total, 0);
        assert_eq!(q.lease_batch("test", 100, None).await.unwrap().len(), 1);
    });
}
