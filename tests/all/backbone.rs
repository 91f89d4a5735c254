//! The backbone end to end: real redis-server, real `ward` binary, real
//! plugins built from `plugins/`.

use std::collections::HashMap;
use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn noop_jobs_succeed_and_leave_nothing_pending() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    let ids: Vec<String> = (0..10)
        .map(|i| enqueue(&redis, "noop", &format!("{{\"n\":{i}}}")))
        .collect();
    for id in &ids {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
        assert_eq!(s["id"], id.as_str());
        assert_eq!(s["plugin_digest"].as_str().map(str::len), Some(64), "{s}");
    }
    let mut con = redis.con();
    let len: usize = redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut con)
        .unwrap();
    assert_eq!(len, 0, "acknowledged entries are removed from the stream");
    let pending: (usize, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg("ward:{q}:jobs")
        .arg("ward")
        .query(&mut con)
        .unwrap();
    assert_eq!(pending.0, 0, "nothing left pending");
}

#[test]
fn flaky_job_succeeds_on_its_third_attempt() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(&redis, "flaky", r#"{"fail":"transient","times":2}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 3, "{s}");
    // The failures before the success are remembered as the last error.
    assert_eq!(s["last_error"]["class"], "transient", "{s}");
    assert_eq!(s["result"], "ok attempt 3", "{s}");
}

#[test]
fn transient_failures_past_the_attempt_budget_are_dead_lettered() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(
        &redis,
        "flaky",
        r#"{"fail":"transient","code":"http-503","upstream":"mailer"}"#,
    );
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["attempts"], 3, "{s}");
    assert_eq!(s["dead_reason"], "budget exhausted: attempts", "{s}");
    let dead = dead_letters(&redis);
    assert_eq!(dead.len(), 1);
    assert_eq!(text(&dead[0], "id"), id);
    assert_eq!(text(&dead[0], "code"), "http-503");
    assert_eq!(text(&dead[0], "upstream"), "mailer");
    assert_eq!(text(&dead[0], "attempts"), "3");
}

#[test]
fn permanent_failure_is_dead_lettered_after_one_attempt_with_its_message() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let payload =
        r#"{"fail":"permanent","times":5,"message":"card 4242 declined","code":"declined"}"#;
    let id = enqueue(&redis, "flaky", payload);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    assert_eq!(s["last_error"]["message"], "card 4242 declined", "{s}");

    let dead = dead_letters(&redis);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(text(d, "id"), id);
    assert_eq!(text(d, "job"), "flaky");
    assert_eq!(text(d, "queue"), "q");
    assert_eq!(text(d, "reason"), "permanent");
    assert_eq!(text(d, "class"), "permanent");
    assert_eq!(text(d, "code"), "declined");
    assert_eq!(text(d, "message"), "card 4242 declined");
    assert_eq!(text(d, "payload"), payload);
    assert_eq!(text(d, "plugin").len(), 64, "plugin digest recorded");
}

#[test]
fn a_job_type_without_a_plugin_is_dead_lettered_not_lost() {
    let redis = Redis::start();
    let mut ward_proc = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    let mut con = redis.con();
    let id: String = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("job")
        .arg("send-fax")
        .arg("payload")
        .arg("{}")
        .arg("order_id")
        .arg("o-77")
        .query(&mut con)
        .unwrap();
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["dead_reason"], "no plugin for job type", "{s}");
    let dead = dead_letters(&redis);
    assert_eq!(text(&dead[0], "reason"), "no plugin for job type");
    let msg = text(&dead[0], "message");
    assert!(
        msg.contains("send-fax") && msg.contains("noop"),
        "names the job type and what exists: {msg}"
    );
    assert_eq!(
        text(&dead[0], "order_id"),
        "o-77",
        "correlation ids travel to the dead letter"
    );
    // The daemon is still there and still runs jobs.
    let ok = enqueue(&redis, "noop", "{}");
    assert_eq!(wait_final(&redis, &ok, WAIT)["state"], "succeeded");
    assert!(ward_proc.is_running());
}

#[test]
fn an_entry_without_a_job_field_is_dead_lettered_as_malformed() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    let mut con = redis.con();
    let id: String = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("payload")
        .arg("orphan")
        .arg("request_id")
        .arg("r-1")
        .query(&mut con)
        .unwrap();
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    let dead = dead_letters(&redis);
    let d = &dead[0];
    assert_eq!(text(d, "reason"), "malformed entry");
    assert!(
        text(d, "message").contains("no `job` field"),
        "{}",
        text(d, "message")
    );
    assert_eq!(
        text(d, "payload"),
        "orphan",
        "nothing the entry carried is lost"
    );
    assert_eq!(text(d, "request_id"), "r-1");
}

#[test]
fn a_non_utf8_payload_arrives_in_the_plugin_byte_for_byte() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("echo", "echo", ""))).ready();
    let payload: Vec<u8> = (0..=255u8).rev().chain([0, 0xff, 0xc3, 0x28]).collect();
    assert!(std::str::from_utf8(&payload).is_err());
    let out = ward_with_stdin(
        &["enqueue", "--redis", &redis.url(), "q", "echo", "-"],
        &payload,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    // The echo plugin returns what it received; the record keeps the result bytes.
    let mut con = redis.con();
    let result: Vec<u8> = redis::cmd("HGET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg("result")
        .query(&mut con)
        .unwrap();
    assert_eq!(result, payload);
}

#[test]
fn a_thousand_plain_xadd_jobs_all_finish_each_run_exactly_once() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 32, &job("flaky", "flaky", ""))).ready();
    let ids = xadd_many(&redis, 1000, "flaky", r#"{"times":0}"#);
    assert_eq!(ids.len(), 1000);

    wait_for(WAIT, "all 1000 jobs to succeed", || {
        let states = job_fields(&redis, &ids, "state");
        states.iter().all(|s| s.as_deref() == Some("succeeded"))
    });
    let attempts = job_fields(&redis, &ids, "attempts");
    assert!(
        attempts.iter().all(|a| a.as_deref() == Some("1")),
        "every job took exactly one attempt"
    );

    // Each plugin execution logs one line tagged with the job id: count them.
    wait_for(Duration::from_secs(5), "the log to be flushed", || {
        runs_per_job(&[&ward_proc]).values().sum::<usize>() >= 1000
    });
    let runs = runs_per_job(&[&ward_proc]);
    assert_eq!(runs.len(), 1000, "every job ran");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice");
    for id in &ids {
        assert_eq!(runs.get(id), Some(&1), "job {id} ran once");
    }
}

#[test]
fn a_plugin_past_its_deadline_times_out_while_other_jobs_keep_flowing() {
    let redis = Redis::start();
    let jobs = job("flaky", "flaky", "timeout = \"300ms\"") + &job("noop", "noop", "");
    let _ward = Ward::start(&config(&redis, 4, &jobs)).ready();
    let stuck = enqueue(&redis, "flaky", r#"{"hang_ms":60000}"#);
    // While the stuck attempts burn their deadlines, other jobs still run.
    let quick: Vec<String> = (0..5).map(|_| enqueue(&redis, "noop", "{}")).collect();
    for id in &quick {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    let s = wait_final(&redis, &stuck, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["last_error"]["class"], "timeout", "{s}");
    assert_eq!(s["last_error"]["code"], "deadline", "{s}");
    assert_eq!(
        s["attempts"], 3,
        "a timeout is retried like a transient failure: {s}"
    );
}

#[test]
fn a_trapping_plugin_crashes_one_attempt_not_the_daemon() {
    let redis = Redis::start();
    let mut ward_proc = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(&redis, "flaky", r#"{"trap":true}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["dead_reason"], "crash", "{s}");
    assert_eq!(s["attempts"], 1, "a crash is not retried: {s}");
    assert_eq!(s["last_error"]["class"], "crash", "{s}");
    let ok = enqueue(&redis, "flaky", r#"{"times":0}"#);
    assert_eq!(wait_final(&redis, &ok, WAIT)["state"], "succeeded");
    assert!(ward_proc.is_running());
}

#[test]
fn job_show_reports_queued_jobs_before_any_daemon_runs() {
    let redis = Redis::start();
    let id = enqueue(&redis, "noop", "{}");
    let s = show(&redis, &id);
    assert_eq!(s["state"], "queued", "{s}");
    assert_eq!(s["attempts"], 0, "{s}");
    // And a daemon started later still picks up what was enqueued before it.
    let _ward = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    let human = ward(&["job", "show", "--redis", &redis.url(), "q", &id]);
    assert!(stdout(&human).contains("succeeded"), "{}", stdout(&human));
    let missing = ward(&["job", "show", "--redis", &redis.url(), "q", "1-1"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no job `1-1`"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_checkpoint_saved_by_one_attempt_reaches_the_next() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = enqueue(
        &redis,
        "flaky",
        r#"{"fail":"transient","times":1,"checkpoint":true}"#,
    );
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(
        s["result"], "attempt 1",
        "attempt 2 saw attempt 1's checkpoint: {s}"
    );
    let mut con = redis.con();
    let left: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg("checkpoint")
        .query(&mut con)
        .unwrap();
    assert_eq!(left, None, "the checkpoint is cleared on success");
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    let id = enqueue(&redis, "noop", "{}");
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    let status = ward_proc.stop();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sighup_with_an_unchanged_config_reloads_nothing_and_keeps_serving() {
    let redis = Redis::start();
    let mut ward_proc = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    let pid = ward_proc.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(Duration::from_secs(10), "the reload's log line", || {
        ward_proc
            .log_lines()
            .iter()
            .any(|l| l["message"] == "config reloaded" && l["changed"] == "nothing")
    });
    assert!(ward_proc.is_running());
    let id = enqueue(&redis, "noop", "{}");
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
}

/// The stream's length and the `acked` counter, read together.
fn stream_len_and_acked(redis: &Redis) -> (usize, Option<usize>) {
    redis::pipe()
        .cmd("XLEN")
        .arg("ward:{q}:jobs")
        .cmd("GET")
        .arg("ward:{q}:acked")
        .query(&mut redis.con())
        .unwrap()
}

/// A queue with a job that would run for ten minutes (it is cancelled by
/// [`end_slow`] once the test has looked: no fixed sleep outlasts every
/// loaded machine), and no-op jobs; `queue` is more of the queue's table.
fn slow_and_quick(redis: &Redis, queue: &str) -> (Ward, String) {
    let jobs = job("flaky", "flaky", "timeout = \"900s\"") + &job("noop", "noop", "");
    let ward = Ward::start(&config_queue(redis, 4, FAST_RETRY, queue, &jobs)).ready();
    let slow = enqueue(redis, "flaky", r#"{"sleep_ms":600000,"times":0}"#);
    wait_for(WAIT, "the slow job to start", || {
        show(redis, &slow)["state"] == "running"
    });
    (ward, slow)
}

/// Cancels the slow job of [`slow_and_quick`]: its attempt ends, and its
/// entry is acknowledged like any finished one.
fn end_slow(redis: &Redis, slow: &str) {
    let url = redis.url();
    let out = ward(&[
        "job",
        "cancel",
        "--redis",
        &url,
        "q",
        slow,
        "--note",
        "test over",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(WAIT, "the slow job to be cancelled", || {
        show(redis, slow)["state"] == "cancelled"
    });
}

#[test]
fn acknowledged_entries_wait_behind_a_running_one_and_are_trimmed_after_it() {
    let redis = Redis::start();
    let (_ward, slow) = slow_and_quick(&redis, "");
    let quick = xadd_many(&redis, 50, "noop", "{}");
    for id in &quick {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    // Everything after the running entry is acknowledged but stays until the
    // running one is done: trimming never removes a pending entry.
    assert_eq!(stream_len_and_acked(&redis), (51, Some(50)));
    let mut con = redis.con();
    let running: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("ward:{q}:jobs")
        .arg(&slow)
        .arg(&slow)
        .query(&mut con)
        .unwrap();
    assert_eq!(running.len(), 1, "the running entry is still in the stream");
    end_slow(&redis, &slow);
    wait_for(WAIT, "the stream to be trimmed", || {
        stream_len_and_acked(&redis) == (0, Some(0))
    });
}

#[test]
fn a_job_that_ended_without_a_record_is_not_shown_as_queued_while_its_entry_awaits_the_trim() {
    let redis = Redis::start();
    let (_ward, slow) = slow_and_quick(&redis, "succeeded_ttl = \"0s\"");
    let quick = enqueue(&redis, "noop", "{}");
    // Acknowledged, and still in the stream behind the running entry.
    wait_for(WAIT, "the quick job to be acknowledged", || {
        stream_len_and_acked(&redis) == (2, Some(1))
    });
    let out = ward(&["job", "show", "--redis", &redis.url(), "q", &quick]);
    assert!(
        !out.status.success(),
        "a job that ended is shown as {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("succeeded_ttl"), "{}", stderr(&out));
    end_slow(&redis, &slow);
}

#[test]
fn past_the_bound_acknowledged_entries_are_deleted_one_by_one() {
    let redis = Redis::start();
    let (_ward, slow) = slow_and_quick(&redis, "");
    // As if 100,000 acknowledged entries were already waiting behind the slow job.
    let _: () = redis::cmd("SET")
        .arg("ward:{q}:acked")
        .arg(100_000)
        .query(&mut redis.con())
        .unwrap();
    let quick = xadd_many(&redis, 50, "noop", "{}");
    for id in &quick {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    let (len, _) = stream_len_and_acked(&redis);
    assert_eq!(len, 1, "only the running entry is left");
    end_slow(&redis, &slow);
    wait_for(WAIT, "the stream to be empty", || {
        stream_len_and_acked(&redis) == (0, Some(0))
    });
}

#[test]
fn daemons_with_long_attempts_share_the_work_instead_of_leasing_ahead() {
    let redis = Redis::start();
    let jobs = job("flaky", "flaky", "timeout = \"30s\"");
    let cfg = config(&redis, 2, &jobs);
    let _a = Ward::start(&cfg).ready();
    let _b = Ward::start(&cfg).ready();
    // Four one-second attempts, two slots per daemon: both daemons must take
    // two each, so all four start together. One daemon leasing all four
    // would start two of them a second later.
    let ids = xadd_many(&redis, 4, "flaky", r#"{"sleep_ms":1000,"times":0}"#);
    let starts: Vec<u64> = ids
        .iter()
        .map(|id| {
            let s = wait_final(&redis, id, WAIT);
            assert_eq!(s["state"], "succeeded", "{s}");
            s["first_attempt_at_ms"].as_u64().unwrap()
        })
        .collect();
    let spread = starts.iter().max().unwrap() - starts.iter().min().unwrap();
    assert!(
        spread < 900,
        "the 4 starts spread over {spread} ms: one daemon took more than its slots"
    );
}

#[test]
fn an_idle_daemon_waits_in_blocking_reads_after_a_burst_of_short_jobs() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 8, &job("noop", "noop", ""))).ready();
    // Short jobs make the reader lease ahead; once the stream is empty it
    // must go back to blocking reads, not poll Redis in a loop.
    let ids = xadd_many(&redis, 2000, "noop", "{}");
    // One pipelined read of the records per look, not a `ward job show`
    // process per job (2,000 of those took 40 s).
    wait_for(WAIT, "the 2,000 jobs to succeed", || {
        job_fields(&redis, &ids, "state")
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    std::thread::sleep(Duration::from_millis(200));
    let before = (redis.calls("xreadgroup"), redis.calls("xread"));
    std::thread::sleep(Duration::from_secs(3));
    let after = (redis.calls("xreadgroup"), redis.calls("xread"));
    // An idle round is one lease script (an XREADGROUP per priority level,
    // three) and one blocking XREAD of 2 s: at most two rounds in 3 s.
    let (leases, waits) = (after.0 - before.0, after.1 - before.1);
    assert!(
        waits <= 2 && leases <= 6,
        "{waits} blocking XREADs and {leases} XREADGROUPs in 3 idle seconds: the reader should block 2 s per round"
    );
}

#[test]
fn a_queue_with_succeeded_ttl_0s_keeps_no_record_of_succeeded_jobs_but_keeps_the_rest() {
    let redis = Redis::start();
    let jobs = job("noop", "noop", "") + &job("flaky", "flaky", "");
    let cfg = config_queue(&redis, 4, FAST_RETRY, "succeeded_ttl = \"0s\"", &jobs);
    let _ward = Ward::start(&cfg).ready();
    let plain = enqueue(&redis, "noop", "{}");
    let retried = enqueue(&redis, "flaky", r#"{"times":1}"#);
    let keyed = enqueue_with(&redis, &["--idempotency-key", "k-1"], "noop", "{}");
    let dead = enqueue(&redis, "flaky", r#"{"fail":"permanent"}"#);
    assert_eq!(wait_final(&redis, &dead, WAIT)["state"], "dead");
    let mut con = redis.con();
    wait_for(WAIT, "every job to finish", || {
        let (len, delayed, pending): (
            usize,
            usize,
            (usize, redis::Value, redis::Value, redis::Value),
        ) = redis::pipe()
            .cmd("XLEN")
            .arg("ward:{q}:jobs")
            .cmd("ZCARD")
            .arg("ward:{q}:delayed")
            .cmd("XPENDING")
            .arg("ward:{q}:jobs")
            .arg("ward")
            .query(&mut con)
            .unwrap();
        len == 0 && delayed == 0 && pending.0 == 0
    });
    for id in [&plain, &retried, &keyed] {
        for key in [
            format!("ward:{{q}}:job:{id}"),
            format!("ward:{{q}}:job:{id}:history"),
        ] {
            let exists: bool = redis::cmd("EXISTS").arg(&key).query(&mut con).unwrap();
            assert!(!exists, "{key} is kept although the job succeeded");
        }
        let out = ward(&["job", "show", "--redis", &redis.url(), "q", id]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("succeeded_ttl"), "{}", stderr(&out));
    }
    // A dead job keeps its record, and a completed key still deduplicates.
    assert_eq!(show(&redis, &dead)["state"], "dead");
    let again = ward(&[
        "enqueue",
        "--redis",
        &redis.url(),
        "--idempotency-key",
        "k-1",
        "q",
        "noop",
        "{}",
    ]);
    assert_eq!(stdout(&again), keyed, "{}", stderr(&again));
    assert!(stderr(&again).contains("duplicate"), "{}", stderr(&again));
}

#[test]
fn sigterm_in_the_middle_of_a_drain_runs_and_records_everything_it_leased() {
    let redis = Redis::start();
    let cfg = config(&redis, 16, &job("noop", "noop", ""));
    let ids = xadd_many(&redis, 20_000, "noop", "{}");
    let first = Ward::start(&cfg).ready();
    // Stop it while it is busy: short jobs, so it has leased ahead too.
    wait_for(WAIT, "the drain to be under way", || {
        let len: usize = redis::cmd("XLEN")
            .arg("ward:{q}:jobs")
            .query(&mut redis.con())
            .unwrap();
        len < 19_000
    });
    let status = first.stop();
    assert!(status.success(), "exit status {status}");
    let pending: (usize, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("ward:{q}:jobs")
        .arg("ward")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(
        pending.0, 0,
        "a stopped daemon leaves nothing leased: what it took, it ran and recorded"
    );
    let _second = Ward::start(&cfg).ready();
    for id in ids.iter().step_by(97).chain(ids.last()) {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        assert_eq!(s["attempts"], 1, "no attempt was lost in the stop: {s}");
    }
}

#[test]
fn the_daemon_and_the_tools_reach_redis_over_tls_with_a_private_ca() {
    let redis = Redis::start_with_tls();
    let (tls_port, ca) = redis.tls.clone().unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let cfg = format!(
        "{METRICS_ANY_PORT}[redis]\nurl = \"{url}\"\nca_file = \"{}\"\n\n[[queue]]\nname = \"q\"\n\n{}",
        ca.display(),
        job("noop", "noop", "")
    );
    let cfg_file = redis.dir.path().join("ward-tls.toml");
    std::fs::write(&cfg_file, &cfg).unwrap();
    let _ward = Ward::start(&cfg).ready();
    let cfg_arg = cfg_file.display().to_string();
    let out = ward(&["enqueue", "--config", &cfg_arg, "q", "noop", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    // Read back over the plain port: the job ran through the TLS daemon.
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    // Without the CA, the server's certificate is not trusted.
    let refused = ward(&["enqueue", "--redis", &url, "q", "noop", "{}"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot reach Redis"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn ward_stats_counts_each_queue_by_state() {
    let redis = Redis::start();
    xadd_many(&redis, 5, "noop", "{}");
    enqueue_with(&redis, &["--delay", "1h"], "noop", "{}");
    let out = ward(&["stats", "--redis", &redis.url(), "q", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let q = &rows[0];
    assert_eq!(q["queue"], "q", "{rows}");
    assert_eq!(q["consumed"], false, "{rows}");
    assert_eq!(q["ready"], 5, "{rows}");
    assert_eq!(q["delayed"], 1, "{rows}");
    assert_eq!(q["dead"], 0, "{rows}");

    // Once a daemon has run them: nothing ready, the delayed one still waits.
    let _ward = Ward::start(&config(&redis, 4, &job("noop", "noop", ""))).ready();
    wait_for(WAIT, "the ready jobs to run", || {
        let out = ward(&["stats", "--redis", &redis.url(), "q", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rows[0]["consumed"] == true && rows[0]["ready"] == 0 && rows[0]["leased"] == 0
    });
    let text = ward(&["stats", "--redis", &redis.url(), "q"]);
    let table = stdout(&text);
    assert!(table.starts_with("queue"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("q "), "{table}");

    let none = ward(&["stats", "--redis", &redis.url()]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("--config"), "{}", stderr(&none));
}

fn breakers_json(redis: &Redis) -> serde_json::Value {
    let out = ward(&["breakers", "--redis", &redis.url(), "q", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_open_breaker_holds_back_the_jobs_of_its_upstream_without_using_their_attempts() {
    let redis = Redis::start();
    let cfg = config_top(
        &redis,
        METRICS_ANY_PORT,
        "",
        "max_attempts = 10\ninitial_delay = \"20ms\"\njitter = \"none\"",
        &(job("flaky", "flaky", "upstreams = [\"api\"]") + &job("noop", "noop", "")),
    )
    .replace(
        "[defaults.retry]",
        "[defaults.breaker]\nfailures = 3\nwindow = \"60s\"\nopen_for = \"2s\"\n\n[defaults.retry]",
    );
    let _ward = Ward::start(&cfg).ready();
    // Three transient failures blamed on `api` (the job type's only upstream).
    let failing: Vec<String> = (0..3)
        .map(|_| enqueue(&redis, "flaky", r#"{"times":1}"#))
        .collect();
    wait_for(WAIT, "the breaker of `api` to open", || {
        breakers_json(&redis).as_array().is_some_and(|b| {
            b.iter()
                .any(|l| l["upstream"] == "api" && l["state"] == "open")
        })
    });
    // When it closes, in Redis time (which the job records use too).
    let open_for = breakers_json(&redis)[0]["open_for_ms"].as_u64().unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut redis.con()).unwrap();
    let until = secs * 1000 + micros / 1000 + open_for;
    let held = enqueue(&redis, "flaky", r#"{"times":0}"#);
    let other = enqueue(&redis, "noop", "{}");
    // A job type without that upstream is not held back.
    let o = wait_final(&redis, &other, WAIT);
    assert_eq!(o["state"], "succeeded", "{o}");
    assert!(o["first_attempt_at_ms"].as_u64().unwrap() < until, "{o}");

    let s = wait_final(&redis, &held, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 1, "holding back used no attempt: {s}");
    assert!(
        s["first_attempt_at_ms"].as_u64().unwrap() + 5 >= until,
        "it ran only once the breaker's time was up ({until}): {s}"
    );
    let history = s["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["code"] == "breaker-open"),
        "the hold-back is in the history: {s}"
    );
    for id in &failing {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    // Successes after the open period closed it again.
    wait_for(WAIT, "the breaker to close", || {
        breakers_json(&redis)
            .as_array()
            .is_some_and(|b| b.iter().all(|l| l["state"] == "closed"))
    });
}

/// A delay past what Ward can schedule (or print) is refused before the job
/// is written: a clear message, a failed exit, nothing enqueued.
#[test]
fn enqueue_with_a_delay_of_a_million_years_fails_and_enqueues_nothing() {
    let redis = Redis::start();
    let url = redis.url();
    for when in [["--delay", "1000000y"], ["--at", "9999-12-31T00:00:00Z"]] {
        let mut args = vec!["enqueue", "--redis", url.as_str()];
        args.extend_from_slice(&when);
        args.extend_from_slice(&["q", "noop", "{}"]);
        let out = ward(&args);
        assert!(!out.status.success(), "{when:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("too far ahead") && !err.contains("panicked"),
            "{err}"
        );
    }
    // A key remembered for no time would deduplicate nothing.
    let out = ward(&[
        "enqueue",
        "--redis",
        &url,
        "--idempotency-key",
        "k",
        "--idempotency-ttl",
        "0s",
        "q",
        "noop",
        "{}",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
    let mut con = redis.con();
    let len: usize = redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut con)
        .unwrap();
    let delayed: usize = redis::cmd("ZCARD")
        .arg("ward:{q}:delayed")
        .query(&mut con)
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert_eq!((len, delayed), (0, 0), "nothing enqueued: {keys:?}");
    // A year ahead is fine, and says when.
    let out = ward(&[
        "enqueue", "--redis", &url, "--delay", "365d", "q", "noop", "{}",
    ]);
    assert!(
        out.status.success() && stderr(&out).contains("due at"),
        "{}",
        stderr(&out)
    );
}

/// A record or dead letter whose times a producer wrote past year 9999
/// still shows: the time prints as ms with a note, no panic.
#[test]
fn job_show_and_dlq_show_print_times_past_year_9999() {
    let redis = Redis::start();
    let huge = "99999999999999999";
    let mut con = redis.con();
    let _: i64 = redis::cmd("HSET")
        .arg("ward:{q}:job:far-1")
        .arg(
            &[
                "job", "noop", "state", "queued", "attempts", "1", "first_at", huge, "last_at",
                huge,
            ][..],
        )
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("ward:{q}:dead")
        .arg("*")
        .arg(
            &[
                "id",
                "far-2",
                "job",
                "noop",
                "queue",
                "q",
                "reason",
                "permanent",
                "first_at",
                huge,
                "last_at",
                huge,
            ][..],
        )
        .query(&mut con)
        .unwrap();
    let url = redis.url();
    for args in [
        vec!["job", "show", "--redis", &url, "q", "far-1"],
        vec!["dlq", "show", "--redis", &url, "q", "far-2"],
    ] {
        let out = ward(&args);
        let (o, e) = (stdout(&out), stderr(&out));
        assert!(
            out.status.success() && !e.contains("panicked"),
            "{args:?}: {o}\n{e}"
        );
        assert!(
            o.contains(&format!("{huge} ms since 1970 (past year 9999)")),
            "{args:?}: {o}"
        );
    }
}

/// Redis's `used_memory`, in bytes.
fn used_memory(redis: &Redis) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut redis.con())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Whether queue `q` has nothing left to do: every entry read, nothing
/// pending, nothing waiting in the delayed set.
fn settled(redis: &Redis) -> bool {
    let mut con = redis.con();
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("ward:{q}:jobs")
        .query(&mut con)
        .unwrap_or_default();
    let delayed: usize = redis::cmd("ZCARD")
        .arg("ward:{q}:delayed")
        .query(&mut con)
        .unwrap();
    let zero =
        |g: &HashMap<String, redis::Value>, k: &str| matches!(g.get(k), Some(redis::Value::Int(0)));
    delayed == 0
        && !groups.is_empty()
        && groups.iter().all(|g| zero(g, "pending") && zero(g, "lag"))
}

/// Bytes of Redis memory per job for `n` jobs run through a daemon with
/// `queue_body`/`retry`/`jobs`, measured as the `used_memory` delta once
/// the queue has settled.
fn bytes_per_job(
    n: usize,
    queue_body: &str,
    retry: &str,
    jobs: &str,
    job: &str,
    payload: &str,
) -> i64 {
    let redis = Redis::start();
    let _ward = Ward::start(&config_full(&redis, queue_body, retry, jobs)).ready();
    xadd(&redis, job, payload, &[]);
    wait_for(WAIT, "the first job", || settled(&redis));
    std::thread::sleep(Duration::from_millis(500));
    let before = used_memory(&redis);
    xadd_many(&redis, n, job, payload);
    wait_for(Duration::from_secs(120), "every job to finish", || {
        settled(&redis)
    });
    std::thread::sleep(Duration::from_millis(1500));
    (used_memory(&redis) - before) / n as i64
}

/// Bytes per job for `n` jobs enqueued with `ward enqueue <options>` (no
/// daemon), and the average `MEMORY USAGE` of the keys matching `pattern`.
fn bytes_per_enqueue(
    n: usize,
    options: &dyn Fn(usize) -> Vec<String>,
    pattern: &str,
) -> (i64, i64) {
    let redis = Redis::start();
    enqueue_with(&redis, &[], "noop", "{}");
    let before = used_memory(&redis);
    for i in 0..n {
        let opts = options(i);
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        enqueue_with(&redis, &opts, "noop", "{}");
    }
    let per_job = (used_memory(&redis) - before) / n as i64;
    let mut con = redis.con();
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut con).unwrap();
    let usage: i64 = keys
        .iter()
        .map(|k| {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .query::<i64>(&mut con)
                .unwrap()
        })
        .sum();
    (per_job, usage / keys.len().max(1) as i64)
}

/// Measures the sizing table of docs/operations.md ("Sizing Redis"): Redis
/// memory per job in each state, against a real redis-server. Prints the
/// table (`cargo test -p ward --test all backbone::sizing -- --nocapture`)
/// and checks only what must hold whatever the Redis version: a kept
/// record costs memory, a job without one costs next to nothing.
#[test]
fn sizing_measure_redis_bytes_per_job_in_each_state() {
    const N: usize = 1000;
    const FEW: usize = 200;
    let noop = job("noop", "noop", "");
    let flaky = job("flaky", "flaky", "");
    let quick = "initial_delay = \"10ms\"\njitter = \"none\"";
    let kept = bytes_per_job(N, "", quick, &noop, "noop", "{}");
    let none = bytes_per_job(N, "succeeded_ttl = \"0s\"", quick, &noop, "noop", "{}");
    let retried = bytes_per_job(
        N,
        "",
        quick,
        &flaky,
        "flaky",
        r#"{"fail":"transient","times":1}"#,
    );
    let dead = bytes_per_job(
        N,
        "",
        "max_attempts = 1",
        &flaky,
        "flaky",
        r#"{"fail":"permanent"}"#,
    );
    let delay = |_| vec!["--delay".to_string(), "1h".to_string()];
    let (delayed, _) = bytes_per_enqueue(FEW, &delay, "ward:{q}:job:*");
    let key = |i: usize| vec!["--idempotency-key".to_string(), format!("order-{i:06}")];
    let (keyed, idem) = bytes_per_enqueue(FEW, &key, "ward:{q}:idem:*");
    println!("| state | bytes per job |");
    println!("|---|---|");
    println!("| succeeded, record kept (`succeeded_ttl` > 0) | {kept} |");
    println!("| succeeded, no record (`succeeded_ttl = \"0s\"`) | {none} |");
    println!("| succeeded after one retry, record kept | {retried} |");
    println!("| dead letter (record + history + dead-letter entry) | {dead} |");
    println!("| delayed, waiting (record + delayed-set member) | {delayed} |");
    println!("| queued with an idempotency key (entry + key) | {keyed} |");
    println!("| one idempotency key (`MEMORY USAGE`) | {idem} |");
    assert!(
        kept > none + 100,
        "a kept record costs memory: {kept} vs {none}"
    );
    assert!(
        none < 100,
        "a job without a record leaves next to nothing: {none}"
    );
    assert!(retried > kept && dead > kept, "{retried} {dead} {kept}");
    assert!(
        delayed > 0 && keyed > 0 && idem > 0,
        "{delayed} {keyed} {idem}"
    );
}
