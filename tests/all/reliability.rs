//! Regression tests for the defects found by attacking Ward as a hostile
//! producer, a careless operator and a failing Redis would (issue 14). Each
//! runs the real `ward` binary against a redis-server of its own.

use std::collections::HashMap;
use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn jobs() -> String {
    job("noop", "noop", "") + &job("flaky", "flaky", "")
}

fn record_field(redis: &Redis, id: &str, field: &str) -> Option<String> {
    job_fields(redis, &[id.to_string()], field).remove(0)
}

fn dead_letter_of(redis: &Redis, id: &str) -> std::collections::HashMap<String, Vec<u8>> {
    dead_letters(redis)
        .into_iter()
        .find(|d| text(d, "id") == id)
        .unwrap_or_else(|| panic!("no dead letter for {id}"))
}

/// Waits for job `id` (`what` it is, for the failure message) to end and
/// asserts it succeeded in one attempt as itself, not as a duplicate of
/// another job holding its idempotency key.
fn assert_ran_once_as_itself(redis: &Redis, id: &str, what: &str) {
    let s = wait_final(redis, id, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{what} ({id}) ran once: {s}"
    );
    assert_eq!(
        record_field(redis, id, "duplicate_of"),
        None,
        "{what} ({id}) ran as itself"
    );
}

#[test]
fn an_empty_idempotency_key_is_no_key_and_the_queue_keeps_recording() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &jobs())).ready();
    let empty = [("idempotency_key", "")];
    let first = xadd(&redis, "noop", "{}", &empty);
    let second = xadd(&redis, "noop", "{}", &empty);
    let retried = xadd(&redis, "flaky", r#"{"fail":"transient","times":1}"#, &empty);
    let after = xadd(&redis, "noop", "{}", &[]);
    for id in [&first, &second, &after] {
        assert_ran_once_as_itself(&redis, id, "a job with an empty key");
    }
    let s = wait_final(&redis, &retried, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("succeeded"), Some(2)),
        "{s}"
    );
}

#[test]
fn two_entries_carrying_the_same_id_field_are_two_jobs() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &jobs())).ready();
    let once = r#"{"fail":"transient","times":1}"#;
    let a = xadd(&redis, "flaky", once, &[("id", "42"), ("order", "a")]);
    let b = xadd(&redis, "flaky", once, &[("id", "42"), ("order", "b")]);
    let dead = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[("id", "42")]);
    for id in [&a, &b] {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(
            (s["state"].as_str(), s["attempts"].as_u64()),
            (Some("succeeded"), Some(2)),
            "{id}: {s}"
        );
    }
    assert_eq!(wait_final(&redis, &dead, WAIT)["state"], "dead");
    let out = ward(&["job", "show", "--redis", &redis.url(), "q", "42"]);
    assert!(
        !out.status.success(),
        "no job is named after the field: {}",
        stdout(&out)
    );
    // The producer's `id` travels as a correlation field, kept beside the
    // dead letter's own `id`.
    let d = dead_letter_of(&redis, &dead);
    assert_eq!(text(&d, "x:id"), "42");
}

#[test]
fn a_producers_fields_named_like_wards_are_never_taken_for_wards() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &jobs())).ready();
    let moved = xadd(
        &redis,
        "noop",
        "{}",
        &[
            ("attempt", "5"),
            ("first_at", "1"),
            ("lease_expiries", "4294967295"),
            ("checkpoint", "c"),
            ("last_delay_ms", "-3"),
        ],
    );
    let s = wait_final(&redis, &moved, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{s}"
    );
    assert_ne!(s["first_attempt_at_ms"], 1, "{s}");

    let reserved = xadd(&redis, "noop", "{}", &[("ward:attempt", "2")]);
    assert_eq!(wait_final(&redis, &reserved, WAIT)["state"], "dead");
    let d = dead_letter_of(&redis, &reserved);
    assert_eq!(text(&d, "reason"), "malformed entry");
    assert!(
        text(&d, "message").contains("`ward:attempt` is reserved"),
        "{d:?}"
    );
}

#[test]
fn an_outcome_redis_refuses_to_record_is_dead_lettered_with_the_reason() {
    let redis = Redis::start();
    let port = free_port();
    let hook = HttpStub::statuses(&[]);
    let top = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[alerts]\nthreshold = 1\ngroup_wait = \"200ms\"\n\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:{}/hook\"\n",
        hook.port
    );
    let ward_proc = Ward::start(&config_top(
        &redis,
        &top,
        "concurrency = 4",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    let mut con = redis.con();
    // Keys of the wrong type where the records of two future entries go:
    // Redis refuses the writes after the acknowledgement.
    let (fresh, retried) = ("5000000000000-0", "5000000000001-0");
    let _: () = redis::cmd("SET")
        .arg(format!("ward:{{q}}:job:{fresh}"))
        .arg("not a hash")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("ward:{{q}}:job:{retried}:history"))
        .arg("not a list")
        .query(&mut con)
        .unwrap();
    for (id, job, payload) in [
        (fresh, "noop", "{}"),
        (retried, "flaky", r#"{"fail":"transient","times":1}"#),
    ] {
        let _: String = redis::cmd("XADD")
            .arg("ward:{q}:jobs")
            .arg(id)
            .arg("job")
            .arg(job)
            .arg("payload")
            .arg(payload)
            .query(&mut con)
            .unwrap();
    }
    wait_for(WAIT, "both dead-lettered as unrecordable", || {
        dead_letters(&redis)
            .iter()
            .filter(|d| text(d, "reason") == "unrecordable")
            .count()
            == 2
    });
    for id in [fresh, retried] {
        let d = dead_letter_of(&redis, id);
        assert!(text(&d, "message").contains("WRONGTYPE"), "{d:?}");
    }
    assert_eq!(
        text(&dead_letter_of(&redis, retried), "payload"),
        r#"{"fail":"transient","times":1}"#,
        "the payload is kept for a requeue"
    );
    // Its record (a hash Redis still takes) says where it went.
    let rec: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("ward:{{q}}:job:{retried}"))
        .query(&mut con)
        .unwrap();
    assert_eq!(
        (rec.get("state"), rec.get("dead_reason")),
        (Some(&"dead".to_string()), Some(&"unrecordable".to_string())),
        "{rec:?}"
    );
    // `ward job show` says which key is broken.
    let out = ward(&["job", "show", "--redis", &redis.url(), "q", retried]);
    assert!(
        stderr(&out).contains(&format!(
            "`ward:{{q}}:job:{retried}:history` holds another type than a list"
        )),
        "{}",
        stderr(&out)
    );
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("ward:{q}:jobs")
        .arg("ward")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        pending.first(),
        Some(&redis::Value::Int(0)),
        "nothing stays leased"
    );
    // The queue goes on recording, and the log names the job.
    let after = xadd(&redis, "noop", "{}", &[]);
    assert_eq!(wait_final(&redis, &after, WAIT)["state"], "succeeded");
    let logs = ward_proc.logs();
    assert!(
        logs.contains(fresh) && logs.contains("unrecordable"),
        "{logs}"
    );
    // Counted as the dead letters they are, not as what they asked for.
    let count = |metrics: &str, name: &str, labels: &[(&str, &str)]| {
        super::observability::sample(metrics, name, labels).unwrap_or(0.0)
    };
    let ok = [("job_type", "noop"), ("outcome", "succeeded")];
    let mut metrics = String::new();
    wait_for(WAIT, "the job after them counted", || {
        metrics = super::observability::scrape(port);
        count(&metrics, "ward_jobs_total", &ok) >= 1.0
    });
    assert_eq!(
        count(&metrics, "ward_jobs_total", &ok),
        1.0,
        "only the job after them succeeded: {metrics}"
    );
    assert_eq!(
        count(
            &metrics,
            "ward_dead_letters_total",
            &[("reason", "unrecordable")]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, "ward_jobs_total", &[("outcome", "dead")]),
        2.0,
        "{metrics}"
    );
    // And alerted as dead letters, with Redis' words.
    wait_for(WAIT, "the dead-letter alert", || {
        hook.received()
            .iter()
            .any(|r| r.body.contains("unrecordable") && r.body.contains("WRONGTYPE"))
    });
}

#[test]
fn ward_enqueue_checks_every_argument_before_it_writes() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &jobs())).ready();
    let mut con = redis.con();
    let call = |con: &mut redis::Connection, args: &[&str]| -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("ward_enqueue")
            .arg(1)
            .arg("ward:{q}:jobs")
            .arg("noop")
            .arg("{}");
        for a in args {
            cmd.arg(*a);
        }
        cmd.query(con)
    };
    // (key, delay_ms, ttl_ms, at_ms)
    for bad in [
        ["k", "", "0", ""],
        ["k", "", "-5", ""],
        ["k", "", "1e30", ""],
        ["k", "", "", "nan"],
        ["k", "", "", "inf"],
        ["k", "", "", "-1"],
        ["k", "-1", "", ""],
        ["k", "soon", "", ""],
        ["k", "1.5", "", ""],
    ] {
        let err = call(&mut con, &bad).expect_err(&format!("{bad:?} is refused"));
        assert!(err.to_string().contains("ward_enqueue:"), "{bad:?}: {err}");
    }
    let written: (usize, usize, bool) = redis::pipe()
        .cmd("XLEN")
        .arg("ward:{q}:jobs")
        .cmd("ZCARD")
        .arg("ward:{q}:delayed")
        .cmd("EXISTS")
        .arg("ward:{q}:idem:k")
        .query(&mut con)
        .unwrap();
    assert_eq!(written, (0, 0, false), "a refused call wrote nothing");
    // The same key is still free for a good call.
    let ok: (String, String, u64) = redis::cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg("ward:{q}:jobs")
        .arg("noop")
        .arg("{}")
        .arg("k")
        .arg("")
        .arg("60000")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok.1, "created");
}

#[test]
fn an_idempotency_key_after_many_other_fields_still_deduplicates() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &jobs())).ready();
    let names: Vec<String> = (0..40).map(|i| format!("corr_{i}")).collect();
    let mut fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    fields.push(("idempotency_key", "order-77"));
    let first = xadd(&redis, "noop", "{}", &fields);
    assert_eq!(wait_final(&redis, &first, WAIT)["state"], "succeeded");
    let second = xadd(&redis, "noop", "{}", &fields);
    wait_for(WAIT, "the second to be acknowledged as a duplicate", || {
        record_field(&redis, &second, "duplicate_of").as_deref() == Some(first.as_str())
    });
}

#[test]
fn an_entry_dead_lettered_without_running_leaves_its_key_free_however_it_was_read() {
    // The lease script claims a keyed entry's key as it reads it, before the
    // daemon checks the entry; a plain read claims after the checks. An
    // entry that never runs for what it is (a reserved field name, a payload
    // over max_payload) must leave its key free either way: the producer's
    // corrected resend with the same key runs instead of being taken for a
    // duplicate of the dead entry.
    let redis = Redis::start();
    let reserved = ("ward:note", "x");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    // Naming a level sends an entry through the lease script.
    let high = ("priority", "high");
    let dead = [
        xadd(
            &redis,
            "noop",
            "{}",
            &[("idempotency_key", "order-1"), high, reserved],
        ),
        xadd(
            &redis,
            "noop",
            "{}",
            &[("idempotency_key", "order-2"), reserved],
        ),
        xadd(
            &redis,
            "noop",
            &big,
            &[("idempotency_key", "order-3"), high],
        ),
        xadd(&redis, "noop", &big, &[("idempotency_key", "order-4")]),
        xadd(
            &redis,
            "noop",
            "{}",
            &[("idempotency_key", "order-5"), high, reserved],
        ),
    ];
    // Read with the entry before it, which the lease claimed the key for.
    let same_read = xadd(
        &redis,
        "noop",
        "{}",
        &[("idempotency_key", "order-5"), high],
    );
    let _ward = Ward::start(&config_full(
        &redis,
        "concurrency = 4\nmax_payload = \"1KiB\"",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    for id in &dead {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "dead", "{id}");
        assert_eq!(
            text(&dead_letter_of(&redis, id), "reason"),
            "malformed entry"
        );
    }
    assert_ran_once_as_itself(&redis, &same_read, "the resend read with the dead entry");
    for key in ["order-1", "order-2", "order-3", "order-4"] {
        let fixed = xadd(&redis, "noop", "{}", &[("idempotency_key", key)]);
        assert_ran_once_as_itself(&redis, &fixed, &format!("the resend with {key}"));
    }
}

#[test]
fn an_idempotency_key_of_another_type_dead_letters_its_job_and_stops_no_other() {
    // Ward never writes anything but a string under ward:{q}:idem:. A key
    // of another type there (a hash, here) must fail only the job naming
    // it, with the key in its dead letter, whether the read claimed keys in
    // the lease script (an entry naming a level) or after a plain read.
    let redis = Redis::start();
    let mut con = redis.con();
    let _: () = redis::cmd("HSET")
        .arg("ward:{q}:idem:taken")
        .arg("f")
        .arg("v")
        .query(&mut con)
        .unwrap();
    let _ward = Ward::start(&config(&redis, 4, &jobs())).ready();
    let bad = [("idempotency_key", "taken")];
    let high = ("priority", "high");
    let mut dead = vec![xadd(&redis, "noop", "{}", &[bad[0], high])];
    let mut fine = vec![
        xadd(&redis, "noop", "{}", &[("idempotency_key", "fine-1"), high]),
        xadd(&redis, "noop", "{}", &[high]),
    ];
    for id in dead.iter().chain(&fine) {
        wait_final(&redis, id, WAIT);
    }
    // The level streams are empty again: the next reads are plain.
    dead.push(xadd(&redis, "noop", "{}", &bad));
    fine.push(xadd(&redis, "noop", "{}", &[("idempotency_key", "fine-2")]));
    fine.push(xadd(&redis, "noop", "{}", &[]));
    for id in &fine {
        assert_ran_once_as_itself(&redis, id, "a job read with the bad key's");
    }
    for id in &dead {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(
            (s["state"].as_str(), s["attempts"].as_u64()),
            (Some("dead"), Some(0)),
            "{id} never ran: {s}"
        );
        let d = dead_letter_of(&redis, id);
        assert_eq!(text(&d, "reason"), "idempotency key unusable");
        assert_eq!(text(&d, "code"), "idempotency-key-unusable");
        let message = text(&d, "message");
        assert!(
            message.contains("`ward:{q}:idem:taken`") && message.contains("WRONGTYPE"),
            "{message}"
        );
    }
}

#[test]
fn keyed_entries_read_in_one_lease_run_once_per_key_at_every_level() {
    // Enqueued before any daemon runs, so one lease reads them all: the
    // lease claims each key as it reads, the first entry of a key wins.
    let redis = Redis::start();
    let mut ids = Vec::new();
    for level in ["normal", "high", "low"] {
        let key = format!("order-{level}");
        let fields = [("idempotency_key", key.as_str()), ("priority", level)];
        ids.push((
            xadd(&redis, "noop", "{}", &fields),
            xadd(&redis, "noop", "{}", &fields),
        ));
    }
    let _ward = Ward::start(&config(&redis, 8, &jobs())).ready();
    for (first, second) in &ids {
        let s = wait_final(&redis, first, WAIT);
        assert_eq!(
            (s["state"].as_str(), s["attempts"].as_u64()),
            (Some("succeeded"), Some(1)),
            "{first}: {s}"
        );
        assert_eq!(record_field(&redis, first, "duplicate_of"), None);
        wait_for(WAIT, "the second of a key to be a duplicate", || {
            record_field(&redis, second, "duplicate_of").as_deref() == Some(first.as_str())
        });
        assert_eq!(
            record_field(&redis, second, "attempts").as_deref(),
            Some("0"),
            "{second} never ran"
        );
    }
}

/// Batch `batch` of queue `q`: its ledger's `total` and `succeeded`.
fn batch_counts(redis: &Redis, batch: &str) -> (Option<String>, Option<String>) {
    redis::cmd("HMGET")
        .arg(format!("ward:{{q}}:batch:{batch}"))
        .arg("total")
        .arg("succeeded")
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn entries_that_need_the_lease_script_arriving_in_a_flood_are_still_moved_joined_and_claimed() {
    // Under a flood of plain jobs the reader reads with plain XREADGROUPs;
    // entries added meanwhile that name a level, a batch or a key must get
    // what the lease script would have done.
    let redis = Redis::start();
    let flood = xadd_many(&redis, 6000, "noop", "{}");
    let _ward = Ward::start(&config(&redis, 64, &jobs())).ready();
    wait_for(WAIT, "the flood to be under way", || {
        record_field(&redis, &flood[500], "state").is_some()
    });
    let mut specials = Vec::new();
    for round in 0..20 {
        let key = format!("k-{round}");
        let keyed = [("idempotency_key", key.as_str())];
        let first = xadd(&redis, "noop", "{}", &keyed);
        let second = xadd(&redis, "noop", "{}", &keyed);
        let high = xadd(&redis, "noop", "{}", &[("priority", "high")]);
        let member = xadd(&redis, "noop", "{}", &[("batch", "flood-batch")]);
        specials.push((first, second, high, member));
        xadd_many(&redis, 100, "noop", "{}");
    }
    for id in [&flood[0], flood.last().unwrap()] {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    for (first, second, high, member) in &specials {
        for id in [first, high, member] {
            let s = wait_final(&redis, id, WAIT);
            assert_eq!(
                (s["state"].as_str(), s["attempts"].as_u64()),
                (Some("succeeded"), Some(1)),
                "{id}: {s}"
            );
        }
        wait_for(WAIT, "the second of a key to be a duplicate", || {
            record_field(&redis, second, "duplicate_of").as_deref() == Some(first.as_str())
        });
    }
    assert_eq!(
        batch_counts(&redis, "flood-batch"),
        (Some("20".into()), Some("20".into())),
        "every member joined its batch once"
    );
}

#[test]
fn entries_a_plain_read_took_while_redis_refused_writes_run_once_when_it_accepts_them_again() {
    // Redis out of memory lets a plain XREADGROUP take entries but refuses
    // lease_fix.lua's first write (a batch member's join, a move to its
    // level). The read's entries are taken all the same: the daemon must
    // keep them, not leave them to expire as lost attempts, nor run a
    // batch member uncounted.
    let redis = Redis::start();
    let daemon = Ward::start(&config(&redis, 1, &jobs())).ready();
    let url = redis.url();
    let paused = ward(&["pause", "q", "--note", "fill", "--redis", &url]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    std::thread::sleep(Duration::from_secs(1));
    // Plain entries ahead, so the two that need the script are read by
    // plain reads; the member first, as its join would be the first write.
    let mut plain = xadd_many(&redis, 8, "noop", "{}");
    let member = xadd(&redis, "noop", "{}", &[("batch", "oom-batch")]);
    let high = xadd(&redis, "noop", "{}", &[("priority", "high")]);
    plain.extend(xadd_many(&redis, 4, "noop", "{}"));
    redis_set(&redis, &["CONFIG", "SET", "maxmemory", "1"]);
    redis_set(&redis, &["HDEL", "ward:{q}:paused", "*"]);
    wait_for(WAIT, "a read Redis refused to let finish", || {
        daemon.logs().lines().any(|l| {
            (l.contains("cannot finish a read") || l.contains("cannot read from Redis"))
                && l.contains("OOM")
        })
    });
    std::thread::sleep(Duration::from_secs(1));
    redis_set(&redis, &["CONFIG", "SET", "maxmemory", "0"]);

    for id in [&member, &high] {
        assert_ran_once_as_itself(&redis, id, "an entry read while Redis refused writes");
    }
    for id in &plain {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    assert_eq!(
        batch_counts(&redis, "oom-batch"),
        (Some("1".into()), Some("1".into())),
        "the member joined its batch once"
    );
    assert!(
        !daemon.logs().contains("lease-expired"),
        "{}",
        daemon.logs()
    );
}

/// A config for queue `q` with `queue` keys, the metrics endpoint on `port`.
fn config_on(redis: &Redis, port: u16, queue: &str) -> String {
    let top = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    config_top(redis, &top, queue, FAST_RETRY, &jobs())
}

fn redis_set(redis: &Redis, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query(&mut redis.con()).unwrap();
}

#[test]
fn an_evicting_redis_is_warned_of_at_start_and_in_readyz() {
    let redis = Redis::start();
    redis_set(
        &redis,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    );
    let port = free_port();
    let ward_proc = Ward::start(&config_on(&redis, port, "concurrency = 2")).ready();
    assert!(
        ward_proc.logs().contains("maxmemory-policy is allkeys-lru"),
        "{}",
        ward_proc.logs()
    );
    wait_for(WAIT, "/readyz to carry the warning", || {
        super::observability::get(port, "/readyz").is_some_and(|(status, body)| {
            status == 200
                && body.starts_with("ready\n")
                && body.contains("warning: Redis' maxmemory-policy is allkeys-lru")
        })
    });
    let (_, metrics) = super::observability::get(port, "/metrics").unwrap();
    assert!(metrics.contains("\nward_redis_evicting 1\n"), "{metrics}");
}

#[test]
fn a_daemon_starts_while_redis_is_at_maxmemory_and_waits_for_room_to_load_its_functions() {
    let redis = Redis::start();
    let cfg = config(&redis, 2, &jobs());
    Ward::start(&cfg).ready().stop();
    // Every write is refused from here on (noeviction, the default).
    redis_set(&redis, &["CONFIG", "SET", "maxmemory", "1"]);
    let full = Ward::start(&cfg).ready();
    assert!(!full.logs().contains("needs Redis 7"), "{}", full.logs());
    full.stop();

    // Without the library, the daemon waits, saying what Redis answered.
    redis_set(&redis, &["CONFIG", "SET", "maxmemory", "0"]);
    redis_set(&redis, &["FUNCTION", "FLUSH"]);
    redis_set(&redis, &["CONFIG", "SET", "maxmemory", "1"]);
    let mut waiting = Ward::start(&cfg);
    wait_for(WAIT, "the daemon to say why it waits", || {
        let logs = waiting.logs();
        logs.contains("cannot load Ward's Redis Functions") && logs.contains("OOM")
    });
    assert!(waiting.is_running(), "it waits rather than exits");
    redis_set(&redis, &["CONFIG", "SET", "maxmemory", "0"]);
    let waiting = waiting.ready();
    let id = xadd(&redis, "noop", "{}", &[]);
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    waiting.stop();
}

#[test]
fn a_lease_count_at_its_limit_is_a_poison_pill_not_a_dead_reclaimer() {
    let redis = Redis::start();
    // Two deliveries of a daemon that died: one whose lease count is at
    // the top of a u32 (it could only overflow), one ordinary.
    let mut con = redis.con();
    create_group(&mut con, "ward:{q}:jobs");
    // Ids of now: an entry id is the enqueue time, and the retry budget
    // counts from it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (poison, plain) = (format!("{now}-1"), format!("{now}-2"));
    for (id, expiries) in [(poison.as_str(), "4294967295"), (plain.as_str(), "0")] {
        let _: String = redis::cmd("XADD")
            .arg("ward:{q}:jobs")
            .arg(id)
            .arg("ward:id")
            .arg(id)
            .arg("job")
            .arg("noop")
            .arg("payload")
            .arg("{}")
            .arg("ward:attempt")
            .arg("1")
            .arg("ward:lease_expiries")
            .arg(expiries)
            .query(&mut con)
            .unwrap();
    }
    lease_to(&mut con, "ward:{q}:jobs", "ghost", 2);
    let _ward = Ward::start(&config_full(
        &redis,
        "concurrency = 2\nlease = \"600ms\"",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    let s = wait_final(&redis, &poison, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["dead_reason"], "budget exhausted: lease expiries", "{s}");
    let s = wait_final(&redis, &plain, WAIT);
    assert_eq!(s["state"], "succeeded", "the reclaimer goes on: {s}");
}

#[test]
fn reclaim_finds_a_dead_daemons_deliveries_behind_thousands_of_live_ones() {
    let redis = Redis::start();
    let mut con = redis.con();
    // 3,000 deliveries a live daemon ("alive") holds and keeps renewing,
    // then 5 of a daemon that died ("ghost"), after them in the list.
    let ids = xadd_many(&redis, 3005, "noop", "{}");
    create_group(&mut con, "ward:{q}:jobs");
    for (consumer, count) in [("alive", 3000), ("ghost", 5)] {
        lease_to(&mut con, "ward:{q}:jobs", consumer, count);
    }
    let renew = |con: &mut redis::Connection| {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg("ward:{q}:jobs").arg("ward").arg("alive").arg(0);
        for id in &ids[..3000] {
            cmd.arg(id);
        }
        let _: redis::Value = cmd.arg("JUSTID").query(con).unwrap();
    };
    renew(&mut con);
    let ward_proc = Ward::start(&config_full(
        &redis,
        "concurrency = 4\nlease = \"2s\"",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    let ghosts = &ids[3000..];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        renew(&mut con);
        let done = job_fields(&redis, ghosts, "state");
        if done.iter().all(|s| s.as_deref() == Some("succeeded")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ghost's deliveries were never reclaimed: {done:?}\n{}",
            ward_proc.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_busy_daemon_does_not_mistake_its_own_recorded_deliveries_for_stolen_ones() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config_full(
        &redis,
        "concurrency = 32\nlease = \"600ms\"",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    let ids = xadd_many(&redis, 6000, "noop", "{}");
    wait_for(WAIT, "every job to finish", || {
        job_fields(&redis, &ids[ids.len() - 50..], "state")
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    let stolen = ward_proc.logs().matches("was reclaimed by another").count();
    assert_eq!(
        stolen, 0,
        "no false alarms while the heartbeat races the completer"
    );
}

/// A small deterministic generator (xorshift64*), so a failing run can be
/// repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[usize::try_from(self.next() % from.len() as u64).unwrap()]
    }
}

#[test]
fn random_fields_on_the_stream_never_stop_the_daemon_recording_the_other_jobs() {
    const SEED: u64 = 0x5eed_2026_1201;
    let names: [&[u8]; 18] = [
        b"job",
        b"payload",
        b"id",
        b"attempt",
        b"first_at",
        b"lease_expiries",
        b"last_delay_ms",
        b"checkpoint",
        b"idempotency_key",
        b"ward:id",
        b"ward:attempt",
        b"ward:lease_expiries",
        b"ward:first_at",
        b"ward:checkpoint",
        b"",
        b"\xff\xfe",
        b"x:id",
        b"order_id",
    ];
    let huge = vec![b'z'; 100_000];
    let values: [&[u8]; 14] = [
        b"",
        b"noop",
        b"flaky",
        b"0",
        b"1",
        b"-1",
        b"4294967295",
        b"18446744073709551615",
        b"1e309",
        b"NaN",
        b"\xff\x00\xfe",
        b"ward:{q}:job:x",
        b"{}",
        &huge,
    ];
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 8, &jobs())).ready();
    let mut rng = Rng(SEED);
    let mut con = redis.con();
    let mut good = Vec::new();
    for n in 0..400 {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("ward:{q}:jobs").arg("*");
        if n % 4 == 0 {
            cmd.arg("job").arg("noop").arg("payload").arg("{}");
            good.push(cmd.query::<String>(&mut con).unwrap());
            continue;
        }
        for _ in 0..1 + rng.next() % 6 {
            cmd.arg(*rng.pick(&names)).arg(*rng.pick(&values));
        }
        let _: String = cmd.query(&mut con).unwrap();
    }
    for id in &good {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "seed {SEED:#x}: {s}");
    }
    wait_for(WAIT, "every entry delivered and recorded", || {
        let lag: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg("ward:{q}:jobs")
            .query(&mut con)
            .unwrap();
        let n = |k: &str| lag[0].get(k).cloned();
        n("pending") == Some(redis::Value::Int(0)) && n("lag") == Some(redis::Value::Int(0))
    });
    let mut ward_proc = ward_proc;
    assert!(
        ward_proc.is_running(),
        "seed {SEED:#x}: {}",
        ward_proc.logs()
    );
}

#[test]
fn a_payload_over_the_queues_max_payload_is_dead_lettered_without_running() {
    let redis = Redis::start();
    let _ward = Ward::start(&config_full(
        &redis,
        "concurrency = 2\nmax_payload = \"1KiB\"",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    let over = xadd(&redis, "noop", &big, &[]);
    let under = xadd(&redis, "noop", "{}", &[]);
    let s = wait_final(&redis, &over, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("dead"), Some(0)),
        "never ran: {s}"
    );
    let d = dead_letter_of(&redis, &over);
    assert_eq!(text(&d, "code"), "payload-too-large");
    assert!(
        text(&d, "message").contains("over the queue's max_payload of 1024 bytes"),
        "{d:?}"
    );
    assert_eq!(wait_final(&redis, &under, WAIT)["state"], "succeeded");
}

#[test]
fn a_batch_redis_refuses_for_its_data_is_recorded_one_by_one_and_nothing_is_lost() {
    let redis = Redis::start();
    // The dead-letter stream's key holds a string: APPLY refuses every
    // batch before acknowledging anything (it could not dead-letter).
    redis_set(&redis, &["SET", "ward:{q}:dead", "not a stream"]);
    let ward_proc = Ward::start(&config_full(
        &redis,
        "concurrency = 4\nlease = \"600ms\"",
        FAST_RETRY,
        &jobs(),
    ))
    .ready();
    let ids = xadd_many(&redis, 3, "noop", "{}");
    wait_for(WAIT, "each refused outcome logged with its job id", || {
        let logs = ward_proc.logs();
        ids.iter().all(|id| logs.contains(id.as_str()))
            && logs.contains("Redis refused this job's outcome")
    });
    for id in &ids {
        assert_ne!(
            record_field(&redis, id, "state").as_deref(),
            Some("succeeded"),
            "not recorded while Redis refuses"
        );
    }
    // Once the key is fixed, the deliveries (never acknowledged) are
    // reclaimed and recorded.
    redis_set(&redis, &["DEL", "ward:{q}:dead"]);
    for id in &ids {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded", "{id}");
    }
}

#[test]
fn an_attempt_that_panics_in_the_daemon_expires_and_ends_as_a_poison_pill() {
    let redis = Redis::start();
    let cfg = config_full(
        &redis,
        "concurrency = 4\nlease = \"600ms\"",
        FAST_RETRY,
        &(jobs() + &job("boom", "noop", "")),
    );
    // Debug builds only: the attempts of job type `boom` panic in the daemon.
    let ward_proc = Ward::start_with_env(&cfg, &[("WARD_TEST_PANIC_IN_JOB", "boom")]).ready();
    let boom = xadd(&redis, "boom", "{}", &[]);
    let fine = xadd(&redis, "noop", "{}", &[]);
    assert_eq!(wait_final(&redis, &fine, WAIT)["state"], "succeeded");
    let s = wait_final(&redis, &boom, WAIT);
    assert_eq!(
        (s["state"].as_str(), s["dead_reason"].as_str()),
        (Some("dead"), Some("budget exhausted: lease expiries")),
        "{s}"
    );
    let mut ward_proc = ward_proc;
    assert!(ward_proc.is_running(), "the daemon lives on");
    assert!(
        ward_proc
            .logs()
            .contains("an attempt panicked in the daemon")
    );
}
