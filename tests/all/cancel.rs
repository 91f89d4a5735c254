//! Cancel, end to end: `ward job cancel` against real daemons running real
//! plugins. A running attempt (spinning in wasm, or parked in a sleep) is
//! interrupted within 100 ms and its slot freed; a delayed or queued job
//! never runs; a finished job is left as it is; every command leaves one
//! audit entry; the outcome is counted in /metrics. One test drives the
//! runtime directly: an attempt cancelled before it starts never runs.

use std::time::{Duration, Instant};

use ward::job::{DeadReason, FailureClass, Outcome};
use ward::store::{Cancelled, Delivery};
use ward::transition::{Completion, Ran, Transition};
use ward_testkit::*;

use super::observability::get;

const WAIT: Duration = Duration::from_secs(30);

/// `ward job cancel` on queue `q`; returns (success, stdout, stderr).
fn cancel(redis: &Redis, ids: &[&str], note: &str) -> (bool, String, String) {
    let url = redis.url();
    let mut args = vec!["job", "cancel", "--redis", url.as_str(), "q"];
    args.extend_from_slice(ids);
    args.extend_from_slice(&["--note", note, "--by", "ana"]);
    let out = ward(&args);
    (out.status.success(), stdout(&out), stderr(&out))
}

/// A field of job `id`'s record in queue `q`.
fn record(redis: &Redis, id: &str, field: &str) -> Option<String> {
    job_fields(redis, &[id.to_string()], field).remove(0)
}

/// The audit entries of action `cancel`.
fn cancels(redis: &Redis) -> Vec<serde_json::Value> {
    audit(redis)
        .into_iter()
        .filter(|a| a["action"] == "cancel")
        .collect()
}

/// A daemon of concurrency 1 on queue `q` with job types `long` (the given
/// plugin, a 60 s timeout) and `noop`, its metrics on a port of its own.
fn daemon(redis: &Redis, plugin_name: &str) -> (Ward, u16) {
    let port = free_port();
    let jobs = format!(
        "{}\n{}",
        job("long", plugin_name, "timeout = \"60s\""),
        job("noop", "noop", "")
    );
    let top = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let cfg = config_top(redis, &top, "concurrency = 1", FAST_RETRY, &jobs);
    (Ward::start(&cfg).ready(), port)
}

/// Runs `payload` as job `long`, cancels it once it runs, and checks it
/// ends `cancelled` within 100 ms of the command, with its slot free.
fn a_running_attempt_is_interrupted(plugin_name: &str, payload: &str) {
    let redis = Redis::start();
    let (w, port) = daemon(&redis, plugin_name);
    let id = xadd(&redis, "long", payload, &[]);
    wait_for(WAIT, "the long attempt to run", || {
        show(&redis, &id)["state"] == "running"
    });
    // Let the plugin get well into its spin or sleep.
    std::thread::sleep(Duration::from_millis(300));

    let (ok, out, err) = cancel(&redis, &[&id], "runaway");
    let returned = Instant::now();
    assert!(ok, "cancel failed: {err}");
    assert!(out.contains(&format!("{id}: requested")), "{out}");
    let mut con = redis.con();
    let key = format!("ward:{{q}}:job:{id}");
    loop {
        let state: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("state")
            .query(&mut con)
            .unwrap();
        if state.as_deref() == Some("cancelled") {
            break;
        }
        assert!(
            returned.elapsed() < Duration::from_secs(5),
            "still {state:?} 5 s after the cancel; daemon log:\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = returned.elapsed();
    eprintln!("{plugin_name}: cancelled {took:?} after `ward job cancel` returned");
    assert!(
        took < Duration::from_millis(500),
        "the attempt took {took:?} to end"
    );

    let job = show(&redis, &id);
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["cancel"]["by"], "ana");
    assert_eq!(job["cancel"]["note"], "runaway");
    assert!(job["cancel"]["cancelled_at_ms"].is_u64(), "{job}");
    assert_eq!(job["last_error"]["class"], "cancelled", "{job}");
    let history = history(&job);
    assert!(
        history
            .iter()
            .any(|h| h["event"] == "cancelled" && h["by"] == "ana"),
        "{history:?}"
    );
    // Not retried, not dead-lettered.
    assert!(dead_letters(&redis).is_empty());
    assert_eq!(zcard(&redis, "ward:{q}:delayed"), 0);
    assert_eq!(
        zcard(&redis, "ward:{q}:cancels"),
        0,
        "the request is gone once honoured"
    );

    // The one slot is free: a job enqueued now runs at once.
    let next = xadd(&redis, "noop", "{}", &[]);
    let since = Instant::now();
    assert_eq!(wait_final(&redis, &next, WAIT)["state"], "succeeded");
    assert!(since.elapsed() < Duration::from_secs(5));

    let audit = cancels(&redis);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["count"], 1);
    assert_eq!(audit[0]["by"], "ana");
    assert_eq!(audit[0]["note"], "runaway");

    let (_, body) = get(port, "/metrics").expect("the metrics endpoint answers");
    let counted = body.lines().any(|l| {
        l.starts_with("ward_jobs_total{")
            && l.contains("job_type=\"long\"")
            && l.contains("outcome=\"cancelled\"")
            && l.ends_with(" 1")
    });
    assert!(counted, "no cancelled outcome counted:\n{body}");
}

#[test]
fn a_spinning_attempt_cancelled_from_the_cli_ends_within_100ms_and_frees_its_slot() {
    a_running_attempt_is_interrupted("hostile", r#"{"do":"spin"}"#);
}

#[test]
fn a_sleeping_attempt_cancelled_from_the_cli_ends_within_100ms_and_frees_its_slot() {
    a_running_attempt_is_interrupted("flaky", r#"{"sleep_ms":30000,"times":0}"#);
}

#[test]
fn a_delayed_job_cancelled_never_runs() {
    let redis = Redis::start();
    let (w, _) = daemon(&redis, "flaky");
    let id = enqueue_with(&redis, &["--delay", "1s"], "long", r#"{"times":0}"#);
    let (ok, out, err) = cancel(&redis, &[&id], "not needed");
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{id}: cancelled (it was delayed")),
        "{out}"
    );
    // A job due after the cancelled one runs: the promoter went past it.
    let later = enqueue_with(&redis, &["--delay", "1500ms"], "long", r#"{"times":0}"#);
    assert_eq!(wait_final(&redis, &later, WAIT)["state"], "succeeded");

    let job = show(&redis, &id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["cancel"]["note"], "not needed");
    let runs = runs_per_job(&[&w]);
    assert_eq!(runs.get(&id), None, "the cancelled job ran: {runs:?}");
    assert_eq!(runs.get(&later), Some(&1));
    assert_eq!(cancels(&redis).len(), 1);
    assert_eq!(cancels(&redis)[0]["count"], 1);
}

#[test]
fn a_queued_job_cancelled_while_no_daemon_runs_never_runs() {
    let redis = Redis::start();
    // A daemon that ran before (the group exists), stopped now.
    let (w, _) = daemon(&redis, "flaky");
    w.stop();
    let id = xadd(&redis, "long", r#"{"times":0}"#, &[]);
    let other = xadd(&redis, "long", r#"{"times":0}"#, &[]);
    assert_eq!(show(&redis, &id)["state"], "queued");
    let (ok, out, err) = cancel(&redis, &[&id], "wrong payload");
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{id}: cancelled (it was queued")),
        "{out}"
    );

    let (w, _) = daemon(&redis, "flaky");
    assert_eq!(wait_final(&redis, &other, WAIT)["state"], "succeeded");
    let job = show(&redis, &id);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["job"], "long");
    let runs = runs_per_job(&[&w]);
    assert_eq!(runs.get(&id), None, "the cancelled job ran: {runs:?}");
    assert_eq!(runs.get(&other), Some(&1));
    assert_eq!(cancels(&redis).len(), 1);
}

#[test]
fn cancelling_a_finished_job_says_so_and_changes_nothing() {
    let redis = Redis::start();
    let (_w, _) = daemon(&redis, "flaky");
    let id = xadd(&redis, "long", r#"{"times":1}"#, &[]);
    let done = wait_final(&redis, &id, WAIT);
    assert_eq!(done["state"], "succeeded");

    let (ok, out, err) = cancel(&redis, &[&id], "too late");
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{id}: finished (already succeeded")),
        "{out}"
    );
    let after = show(&redis, &id);
    assert_eq!(after["state"], "succeeded");
    assert_eq!(after["history"], done["history"]);
    assert_eq!(after["cancel"], serde_json::Value::Null);
    assert_eq!(record(&redis, &id, "cancelled_by"), None);

    // An id the queue does not know: said, and the command fails.
    let (ok, out, _) = cancel(&redis, &["1-1"], "typo");
    assert!(!ok);
    assert!(out.contains("1-1: not found"), "{out}");

    // One entry per command, each counting nothing changed.
    let audit = cancels(&redis);
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a["count"] == 0), "{audit:?}");
}

/// Waits until job `id`'s record says `cancelled`.
fn wait_cancelled(redis: &Redis, id: &str, within: Duration) {
    wait_for(within, &format!("job {id} to be cancelled"), || {
        record(redis, id, "state").as_deref() == Some("cancelled")
    });
}

#[test]
fn only_the_cancelled_attempt_ends_on_whichever_daemon_runs_it() {
    let redis = Redis::start();
    let (a, _) = daemon(&redis, "hostile");
    let (b, _) = daemon(&redis, "hostile");
    let ids: Vec<String> = (0..2)
        .map(|_| xadd(&redis, "long", r#"{"do":"spin"}"#, &[]))
        .collect();
    wait_for(WAIT, "both attempts to run", || {
        ids.iter().all(|id| show(&redis, id)["state"] == "running")
    });
    let (ok, _, err) = cancel(&redis, &[&ids[0]], "only this one");
    assert!(ok, "{err}");
    wait_cancelled(&redis, &ids[0], Duration::from_secs(2));
    // The other attempt, on the other daemon, runs on.
    assert_eq!(show(&redis, &ids[1])["state"], "running");
    let interrupted = |w: &Ward| w.logs().contains("interrupting its attempt");
    assert!(
        interrupted(&a) != interrupted(&b),
        "exactly one daemon interrupts an attempt"
    );
    // A cancel of several jobs is one command: one audit entry.
    let (ok, out, err) = cancel(&redis, &[&ids[1], &ids[0]], "and the other");
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{}: requested", ids[1])), "{out}");
    assert!(
        out.contains(&format!("{}: finished (already cancelled", ids[0])),
        "{out}"
    );
    wait_cancelled(&redis, &ids[1], Duration::from_secs(2));
    let audit = cancels(&redis);
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[1]["count"], 1);
}

#[test]
fn a_request_whose_message_was_lost_is_found_by_the_poll() {
    let redis = Redis::start();
    let (_w, _) = daemon(&redis, "hostile");
    let id = xadd(&redis, "long", r#"{"do":"spin"}"#, &[]);
    wait_for(WAIT, "the attempt to run", || {
        show(&redis, &id)["state"] == "running"
    });
    // The request as cancel.lua writes it, without its PUBLISH.
    let mut con = redis.con();
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg(&[
            "cancel_requested_at",
            "1",
            "cancelled_by",
            "ana",
            "state",
            "queued",
        ])
        .arg(&["entry", id.as_str()])
        .ignore()
        .cmd("ZADD")
        .arg("ward:{q}:cancels")
        .arg(1)
        .arg(&id)
        .ignore()
        .query(&mut con)
        .unwrap();
    wait_cancelled(&redis, &id, Duration::from_secs(3));
    assert_eq!(show(&redis, &id)["cancel"]["by"], "ana");
}

/// The completion of leased entry `entry_id` (a first delivery of job type
/// `long`) that ended with `outcome` and takes `transition`.
fn completion(entry_id: &str, outcome: Outcome, transition: Transition) -> Completion {
    let delivery = Delivery {
        entry_id: entry_id.to_string(),
        fields: vec![(b"job".to_vec(), b"long".to_vec())],
    };
    Completion::new(
        delivery.parse().unwrap(),
        outcome,
        transition,
        Ran::default(),
    )
}

/// How many members the sorted set `key` has.
fn zcard(redis: &Redis, key: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(key)
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn a_retry_or_dead_letter_of_a_job_with_a_cancel_request_is_recorded_cancelled() {
    let redis = Redis::start();
    let stream = queue_stream("q");
    let mut con = redis.con();
    create_group(&mut con, &stream);
    let ids: Vec<String> = (0..3).map(|_| xadd(&redis, "long", "{}", &[])).collect();
    lease_to(&mut con, &stream, "gone", 3);
    super::support::with_queue(&redis, async |q| {
        for id in &ids {
            let c = q.cancel_job(id, "ana", "stop").await.unwrap();
            assert_eq!(c, Cancelled::Requested { new: true });
        }
        let failed = || Outcome::failure(FailureClass::Transient, "down");
        let later = Duration::from_secs(60);
        let batch = [
            completion(&ids[0], failed(), Transition::Retry { delay: later }),
            completion(
                &ids[1],
                failed(),
                Transition::DeadLetter(DeadReason::Permanent),
            ),
            completion(
                &ids[2],
                Outcome::Success(b"done".to_vec()),
                Transition::Succeed,
            ),
        ];
        assert_eq!(q.apply(&batch).await.unwrap().took, vec![true; 3]);
    });
    // The failures are honoured as cancels; the success finished first.
    let states = job_fields(&redis, &ids, "state");
    let want = ["cancelled", "cancelled", "succeeded"].map(|s| Some(s.to_string()));
    assert_eq!(states, want);
    assert!(dead_letters(&redis).is_empty());
    assert_eq!(zcard(&redis, "ward:{q}:delayed"), 0);
    assert_eq!(
        zcard(&redis, "ward:{q}:cancels"),
        1,
        "the success's request waits for the poll to drop it"
    );
}

/// An attempt whose job was cancelled between its triage and its start
/// (the signal is already set when it begins) never instantiates the
/// plugin; the same attempt with a clear signal runs it to success. The
/// runtime polls the plugin's call before the cancel signal, so this check
/// before the call is what keeps a cancelled job from running.
#[test]
fn an_attempt_cancelled_before_it_starts_never_runs_its_plugin() {
    use std::sync::Arc;

    use ward::obs::logging::AttemptIdent;
    use ward::runtime::{Cancel, JobInput, Runtime, RuntimeSpec, Sandbox};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(&RuntimeSpec {
        slots: 2,
        ..RuntimeSpec::single(None)
    })
    .unwrap();
    let plugin = runtime.load(&plugin("noop"), false).unwrap();
    let sandbox = Sandbox {
        timeout: Duration::from_secs(30),
        ..Sandbox::default()
    };
    let input = |cancel: Arc<Cancel>| JobInput {
        ident: AttemptIdent {
            queue: "q".into(),
            job_id: "1-0".into(),
            job: "noop".into(),
            attempt: 1,
            correlation: Vec::new(),
        },
        payload: b"{}".to_vec(),
        idempotency_key: Some("1-0".into()),
        checkpoint: None,
        cancel,
        traceparent: None,
        batch: None,
        progress: None,
    };

    let cancelled = Arc::new(Cancel::default());
    cancelled.cancel();
    let attempt = rt.block_on(plugin.run(input(cancelled), &sandbox));
    match &attempt.outcome {
        Outcome::Failure(f) => {
            assert_eq!(f.class, FailureClass::Cancelled, "{f:?}");
            assert_eq!(f.code.as_deref(), Some("cancelled"), "{f:?}");
        }
        other => panic!("a cancelled attempt ended {other:?}"),
    }
    assert_eq!(attempt.instantiate, None, "the plugin was instantiated");
    assert_eq!(attempt.payload, b"{}", "the payload is handed back");

    let attempt = rt.block_on(plugin.run(input(Arc::default()), &sandbox));
    assert!(
        matches!(attempt.outcome, Outcome::Success(_)),
        "{:?}",
        attempt.outcome
    );
    assert!(attempt.instantiate.is_some(), "the plugin did not run");
}
