//! Idempotency keys and crash recovery, with real processes: duplicate
//! enqueues and deliveries, SIGKILLed daemons, a poison pill, Redis restarts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ward_testkit::*;

use crate::support::with_queue;

const WAIT: Duration = Duration::from_secs(60);

fn states(redis: &Redis, ids: &[String]) -> Vec<Option<String>> {
    job_fields(redis, ids, "state")
}

fn wait_all_final(redis: &Redis, ids: &[String], timeout: Duration) {
    wait_for(timeout, "every job to reach a final state", || {
        states(redis, ids)
            .iter()
            .all(|s| matches!(s.as_deref(), Some("succeeded" | "dead")))
    });
}

/// The successes job `id`'s history tells, as `ward job show` tells them.
fn successes_in_history(redis: &Redis, id: &str) -> usize {
    histories(redis, &[id.to_string()])[0]
        .iter()
        .filter(|v| v["class"] == "success")
        .count()
}

fn xadd_keyed(redis: &Redis, n: usize, payload: &str) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let entries: Vec<Vec<(&str, &str)>> = keys
        .iter()
        .map(|key| {
            vec![
                ("job", "flaky"),
                ("payload", payload),
                ("idempotency_key", key),
            ]
        })
        .collect();
    xadd_entries(redis, &entries)
}

#[test]
fn a_second_enqueue_with_the_same_key_returns_the_first_job() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let url = redis.url();
    let args = [
        "enqueue",
        "--redis",
        &url,
        "--idempotency-key",
        "order-17",
        "q",
        "flaky",
        r#"{"times":0}"#,
    ];
    let first = ward(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = ward(&args);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        stdout(&first),
        stdout(&second),
        "the duplicate returns the first job's id"
    );
    assert!(stderr(&second).contains("duplicate"), "{}", stderr(&second));
    assert!(!stderr(&first).contains("duplicate"));

    // The Redis Function does the same for any client.
    let mut con = redis.con();
    let fcall = |key: &str| -> (String, String, u64) {
        redis::cmd("FCALL")
            .arg("ward_enqueue")
            .arg(1)
            .arg("ward:{q}:jobs")
            .arg("flaky")
            .arg(r#"{"times":0}"#)
            .arg(key)
            .query(&mut redis.con())
            .unwrap()
    };
    let (a, status_a, _) = fcall("order-18");
    let (b, status_b, _) = fcall("order-18");
    assert_eq!(
        (status_a.as_str(), status_b.as_str()),
        ("created", "duplicate")
    );
    assert_eq!(a, b);
    let (c, status_c, _) = fcall("order-17");
    assert_eq!(
        (c.as_str(), status_c.as_str()),
        (stdout(&first).as_str(), "duplicate")
    );

    // A plain XADD carrying a key that is taken is acknowledged as a
    // duplicate at delivery, without running.
    let plain: String = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("job")
        .arg("flaky")
        .arg("payload")
        .arg(r#"{"times":0}"#)
        .arg("idempotency_key")
        .arg("order-18")
        .query(&mut con)
        .unwrap();
    let s = wait_final(&redis, &plain, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 0, "nothing ran: {s}");
    assert_eq!(s["history"][0]["of"], a.as_str(), "{s}");

    for id in [stdout(&first), a.clone()] {
        assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    }
    wait_for(Duration::from_secs(5), "the logs", || {
        runs_per_job(&[&ward_proc]).len() >= 2
    });
    let runs = runs_per_job(&[&ward_proc]);
    assert_eq!(runs.get(&stdout(&first)), Some(&1));
    assert_eq!(runs.get(&a), Some(&1));
    assert_eq!(
        runs.get(&plain),
        None,
        "the duplicate never reached the plugin"
    );
}

#[test]
fn a_redelivered_job_that_already_succeeded_is_not_run_again() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let ids = xadd_keyed(&redis, 1, r#"{"times":0,"key":true}"#);
    let s = wait_final(&redis, &ids[0], WAIT);
    assert_eq!(s["state"], "succeeded");
    assert_eq!(
        s["result"], "key-0",
        "the plugin got the enqueuer's key to forward upstream"
    );

    // The same delivery again, as a crashed daemon's redelivery would look.
    let mut con = redis.con();
    let _: String = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("id")
        .arg(&ids[0])
        .arg("job")
        .arg("flaky")
        .arg("payload")
        .arg(r#"{"times":0,"key":true}"#)
        .arg("attempt")
        .arg("1")
        .arg("idempotency_key")
        .arg("key-0")
        .query(&mut con)
        .unwrap();
    wait_for(WAIT, "the redelivery to be acknowledged", || {
        let len: usize = redis::cmd("XLEN")
            .arg("ward:{q}:jobs")
            .query(&mut con)
            .unwrap();
        len == 0 && show(&redis, &ids[0])["history"].as_array().unwrap().len() == 2
    });
    let s = show(&redis, &ids[0]);
    assert_eq!(s["state"], "succeeded");
    assert_eq!(s["history"][0]["class"], "success", "{s}");
    assert_eq!(s["history"][1]["event"], "duplicate", "{s}");
    assert_eq!(
        runs_per_job(&[&ward_proc]).get(&ids[0]),
        Some(&1),
        "ran once"
    );

    // Without a key, the plugin is handed the job id as its key.
    let id = enqueue(&redis, "flaky", r#"{"times":0,"key":true}"#);
    assert_eq!(wait_final(&redis, &id, WAIT)["result"], id.as_str());
}

#[test]
fn a_long_attempt_is_never_reclaimed_from_a_live_worker() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"600ms\"",
        FAST_RETRY,
        &job("flaky", "flaky", ""),
    );
    let a = Ward::start(&cfg).ready();
    let b = Ward::start(&cfg).ready();
    let id = enqueue(&redis, "flaky", r#"{"times":0,"sleep_ms":3000}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 1, "the heartbeat kept the lease alive: {s}");
    assert_eq!(runs_per_job(&[&a, &b]).get(&id), Some(&1));
}

#[test]
fn sigkill_at_random_moments_loses_no_job_and_completes_no_key_twice() {
    const JOBS: usize = 5000;
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 16\nlease = \"1s\"",
        "max_attempts = 20\ninitial_delay = \"10ms\"\nmax_delay = \"100ms\"\njitter = \"full\"",
        &job("flaky", "flaky", ""),
    );
    let ids = xadd_keyed(&redis, JOBS, r#"{"times":0,"sleep_ms":40}"#);
    let steady = Ward::start(&cfg).ready();
    let mut victim = Ward::start(&cfg).ready();
    let mut killed = Vec::new();
    let mut rng_state = std::process::id() as u64 | 1;
    let mut random_ms = |lo: u64, hi: u64| {
        // xorshift: the moments only need to vary, not be cryptographic.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        lo + rng_state % (hi - lo)
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(random_ms(400, 1500)));
        victim.kill();
        killed.push(victim);
        victim = Ward::start(&cfg).ready();
    }
    let start = Instant::now();
    wait_all_final(&redis, &ids, Duration::from_secs(180));

    let states = states(&redis, &ids);
    let not_ok: Vec<_> = ids
        .iter()
        .zip(&states)
        .filter(|(_, s)| s.as_deref() != Some("succeeded"))
        .collect();
    assert!(
        not_ok.is_empty(),
        "{} jobs did not succeed, e.g. {:?}",
        not_ok.len(),
        &not_ok[..not_ok.len().min(5)]
    );
    for id in &ids {
        assert_eq!(
            successes_in_history(&redis, id),
            1,
            "job {id} was completed exactly once"
        );
    }
    let mut con = redis.con();
    let len: usize = redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut con)
        .unwrap();
    assert_eq!(len, 0, "no entry is left in the stream");

    let mut daemons: Vec<&Ward> = killed.iter().collect();
    daemons.push(&steady);
    daemons.push(&victim);
    wait_for(Duration::from_secs(5), "the logs", || {
        runs_per_job(&daemons).len() == JOBS
    });
    let runs: HashMap<String, usize> = runs_per_job(&daemons);
    assert_eq!(runs.len(), JOBS, "every job's plugin ran");
    let repeated: Vec<usize> = runs.values().filter(|&&n| n > 1).copied().collect();
    let extra: usize = repeated.iter().map(|n| n - 1).sum();
    println!(
        "at-least-once window: {} of {JOBS} jobs ran more than once ({extra} extra plugin executions) after 3 SIGKILLs; all {JOBS} completed once; drained {:?} after the last kill",
        repeated.len(),
        start.elapsed()
    );
}

#[test]
fn a_poison_pill_is_dead_lettered_after_its_lease_budget_while_others_finish() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"600ms\"",
        "max_attempts = 10\ninitial_delay = \"10ms\"\njitter = \"none\"\nmax_lease_expiries = 2",
        // Every delivery a killed daemon held loses a lease, the innocent
        // jobs leased beside the poison pill too; theirs is a larger budget,
        // so the two kills cannot exhaust it.
        &(job("flaky", "flaky", "") + &job("noop", "noop", "retry = { max_lease_expiries = 5 }")),
    );
    let poison = enqueue(&redis, "flaky", r#"{"times":0,"sleep_ms":30000}"#);
    let others: Vec<String> = (0..20).map(|_| enqueue(&redis, "noop", "{}")).collect();
    let mut kills = 0;
    let mut daemons = Vec::new();
    while show(&redis, &poison)["state"] != "dead" {
        assert!(
            kills < 5,
            "still not dead after {kills} kills: {}",
            show(&redis, &poison)
        );
        let mut w = Ward::start(&cfg).ready();
        // Kill the daemon every time the poison pill is running on it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if runs_per_job(&[&w]).contains_key(&poison) {
                w.kill();
                kills += 1;
                break;
            }
            if show(&redis, &poison)["state"] == "dead" || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        daemons.push(w);
    }
    let s = show(&redis, &poison);
    assert_eq!(s["dead_reason"], "budget exhausted: lease expiries", "{s}");
    assert_eq!(s["last_error"]["code"], "lease-expired", "{s}");
    assert_eq!(
        kills, 2,
        "dead after exactly max_lease_expiries lost leases"
    );
    let dead = dead_letters(&redis);
    assert_eq!(text(&dead[0], "reason"), "budget exhausted: lease expiries");
    // The innocent jobs were not held hostage.
    let w = Ward::start(&cfg).ready();
    for id in &others {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    drop(w);
}

#[test]
fn a_redis_restart_with_aof_loses_no_acknowledged_job() {
    let redis = Redis::start_with_aof();
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"1s\"",
        "max_attempts = 20\ninitial_delay = \"50ms\"\nmax_delay = \"500ms\"",
        &job("flaky", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    let ids = xadd_keyed(&redis, 200, r#"{"times":0,"sleep_ms":20}"#);
    // Past appendfsync everysec's window: everything above is on disk.
    std::thread::sleep(Duration::from_millis(1500));
    let redis = redis.crash_and_restart(Duration::from_millis(500));
    // Functions survive in the AOF; if they did not, the first enqueue
    // through them would load them again.
    let mut con = redis.con();
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut con).unwrap();
    wait_for(
        Duration::from_secs(15),
        "the daemon to load its functions again",
        || {
            redis::cmd("FCALL_RO")
                .arg("ward_version")
                .arg(0)
                .query::<String>(&mut con)
                .is_ok()
        },
    );
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut con).unwrap();
    let late = enqueue_with(
        &redis,
        &["--idempotency-key", "late"],
        "flaky",
        r#"{"times":0}"#,
    );
    wait_all_final(&redis, &ids, WAIT);
    assert!(
        states(&redis, &ids)
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    );
    assert_eq!(wait_final(&redis, &late, WAIT)["state"], "succeeded");
}

#[test]
fn consumers_of_stopped_daemons_are_forgotten_unless_they_hold_work() {
    let redis = Redis::start();
    let mut con = redis.con();
    create_group(&mut con, "ward:{q}:jobs");
    let _: String = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("job")
        .arg("noop")
        .query(&mut con)
        .unwrap();
    // `busy` leases the one entry and keeps it pending; `idle` and `me` hold nothing.
    for name in ["idle", "me"] {
        let _: i64 = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg("ward:{q}:jobs")
            .arg("ward")
            .arg(name)
            .query(&mut con)
            .unwrap();
    }
    lease_to(&mut con, "ward:{q}:jobs", "busy", 1);
    let gone = with_queue(&redis, async |queue| {
        queue
            .forget_idle_consumers("me", Duration::ZERO)
            .await
            .unwrap()
    });
    assert_eq!(gone, vec!["idle".to_string()]);
    let left: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("ward:{q}:jobs")
        .arg("ward")
        .query(&mut con)
        .unwrap();
    assert_eq!(left.len(), 2, "busy (holds a delivery) and me stay");
}

#[test]
fn apply_says_which_completions_took_effect_so_nothing_is_counted_twice() {
    use ward::job::Outcome;
    use ward::transition::{Completion, Ran, Transition};
    let redis = Redis::start();
    let ids = xadd_many(&redis, 3, "noop", "{}");
    with_queue(&redis, async |queue| {
        queue.ensure_group().await.unwrap();
        let leased = queue.lease_batch("me", 3, None).await.unwrap();
        assert_eq!(leased.len(), 3);
        let done: Vec<Completion> = leased
            .into_iter()
            .map(|d| {
                let e = d.parse().unwrap();
                assert_eq!(e.attempt, 1);
                let ran = Ran {
                    plugin_digest: "d".into(),
                    idempotency_ttl: Duration::from_secs(60),
                    started_ms: 1,
                    first_at_ms: 1,
                    finished_ms: 2,
                    ..Ran::default()
                };
                Completion::new(e, Outcome::Success(Vec::new()), Transition::Succeed, ran)
            })
            .collect();
        // Another daemon recorded the third delivery first.
        let mut con = redis.con();
        let _: usize = redis::cmd("XACK")
            .arg("ward:{q}:jobs")
            .arg("ward")
            .arg(&ids[2])
            .query(&mut con)
            .unwrap();
        assert_eq!(
            queue.apply(&done).await.unwrap().took,
            vec![true, true, false]
        );
        assert_eq!(
            queue.apply(&done[..2]).await.unwrap().took,
            vec![false, false],
            "a batch sent again changes nothing and says so"
        );
    });
    assert_eq!(show(&redis, &ids[0])["state"], "succeeded");
}

/// Reclaim finishes a delivery it takes over as the lease would have (moves
/// an entry naming a priority level to that level's stream). When that
/// fails (here the high level's stream key holds a string), the delivery is
/// recorded as a lost attempt all the same: the job moves on, towards its
/// lease budget, instead of staying pending for ever.
#[test]
fn a_delivery_reclaim_cannot_finish_is_still_recorded_and_the_job_moves_on() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"1s\"",
        "max_attempts = 10\ninitial_delay = \"10ms\"\njitter = \"none\"\nmax_lease_expiries = 2",
        &job("flaky", "flaky", ""),
    );
    let _ward = Ward::start(&cfg).ready();
    // Replaced behind the running daemon's back.
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg("ward:{q}:jobs:high")
        .ignore()
        .cmd("SET")
        .arg("ward:{q}:jobs:high")
        .arg("not a stream")
        .ignore()
        .query(&mut redis.con())
        .unwrap();
    let id = xadd(&redis, "flaky", r#"{"times":0}"#, &[("priority", "high")]);
    let s = wait_final(&redis, &id, WAIT);
    let history = s["history"].as_array().unwrap();
    assert_eq!(history[0]["code"], "lease-expired", "{s}");
    assert!(s["state"] == "dead" || s["state"] == "succeeded", "{s}");
    // A daemon started now refuses to, and names the key.
    let err = Ward::start(&cfg)
        .try_ready(WAIT)
        .err()
        .expect("a daemon started on a queue whose high stream is a string");
    assert!(
        err.to_string()
            .contains("cannot create consumer group `ward` on ward:{q}:jobs:high"),
        "{err}"
    );
}

/// A read whose reply never arrives (the connection drops after Redis ran
/// it) has taken its entries all the same: they are leased to the daemon
/// in Redis, unseen by it. The reader takes them back after the failed
/// read and runs them, instead of leaving them to expire and be charged a
/// lost attempt a lease later.
#[test]
fn the_entries_of_a_read_whose_reply_was_lost_run_at_once_not_as_lost_attempts() {
    const MARKER: &[u8] = b"lost-reply-marker";
    let redis = Redis::start();
    let cutter = ReplyCutter::start(redis.port, MARKER, 10);
    let payload = format!(r#"{{"pad":"{}"}}"#, std::str::from_utf8(MARKER).unwrap());
    // Enqueued before the daemon starts, so its first read takes them all.
    let ids = xadd_many(&redis, 40, "noop", &payload);
    cutter.arm();
    let metrics_port = free_port();
    let cfg = Config::new(&cutter.url())
        .top(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ))
        .queue("q", "concurrency = 64\nlease = \"30s\"")
        .jobs(&job("noop", "noop", ""))
        .render();
    let started = Instant::now();
    let w = Ward::start(&cfg).ready();
    // Well inside the lease: the old way they waited 30 s for a reclaim.
    wait_all_final(&redis, &ids, Duration::from_secs(12));
    let took = started.elapsed();
    assert_eq!(cutter.cuts(), 1, "the read's reply was lost");
    assert!(
        w.logs()
            .contains("taking back deliveries a failed read left leased"),
        "the reader says what it did"
    );
    for (id, lines) in ids.iter().zip(histories(&redis, &ids)) {
        assert_eq!(
            states(&redis, std::slice::from_ref(id))[0].as_deref(),
            Some("succeeded")
        );
        assert_eq!(lines.len(), 1, "one attempt, no lost one: {id} {lines:?}");
        assert_eq!(lines[0]["class"], "success", "{id} {lines:?}");
    }
    assert!(took < Duration::from_secs(12), "{took:?}");
    // Again on a running daemon waiting for work: 40 more in one
    // transaction, so the read that the wake-up makes takes them all; with
    // idempotency keys, which the lost read may have claimed already, for
    // the very jobs taken back (not duplicates of themselves).
    cutter.arm();
    let mut con = redis.con();
    let mut tx = redis::pipe();
    tx.atomic();
    for i in 0..40 {
        tx.cmd("XADD")
            .arg(queue_stream("q"))
            .arg("*")
            .arg("job")
            .arg("noop")
            .arg("payload")
            .arg(&payload)
            .arg("idempotency_key")
            .arg(format!("lost-reply-{i}"));
    }
    let more: Vec<String> = tx.query(&mut con).unwrap();
    wait_all_final(&redis, &more, Duration::from_secs(12));
    assert_eq!(cutter.cuts(), 2, "the second read's reply was lost too");
    let scrape = crate::observability::scrape(metrics_port);
    assert_eq!(
        crate::observability::sample(
            &scrape,
            "ward_deliveries_taken_back_total",
            &[("queue", "q")]
        ),
        Some(80.0),
        "every delivery of both lost reads counted"
    );
    for state in states(&redis, &more) {
        assert_eq!(state.as_deref(), Some("succeeded"));
    }
    for (id, lines) in more.iter().zip(histories(&redis, &more)) {
        assert_eq!(lines.len(), 1, "one attempt, no lost one: {id} {lines:?}");
        assert_eq!(lines[0]["class"], "success", "{id} {lines:?}");
    }
    drop(w);
}
