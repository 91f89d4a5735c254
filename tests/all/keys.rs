//! Idempotency keys set by `ward_enqueue` as it adds a job: the entry
//! carries `ward:key_claimed`, and the daemon that reads it does not claim
//! the key a second time (issue 21: keyed jobs cost Redis one `SET` and the
//! daemon one round trip per read less), while deduplication holds.

use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// Keyed jobs per run: enough that the key claims (one `SET` each) stand
/// well clear of the few other `SET`s a run makes.
const N: usize = 600;

/// `FCALL ward_enqueue` of `n` keyed no-op jobs into queue `q`, keys
/// `<prefix>-<i>`, every third one at priority `high` (the scripted read,
/// which moves it to its level's stream); returns the job ids.
fn fcall_keyed(redis: &Redis, prefix: &str, n: usize) -> Vec<String> {
    let mut pipe = redis::pipe();
    for i in 0..n {
        let level = if i % 3 == 0 { "high" } else { "" };
        pipe.cmd("FCALL")
            .arg("ward_enqueue")
            .arg(1)
            .arg(queue_stream("q"))
            .arg("noop")
            .arg("{}")
            .arg(format!("{prefix}-{i}"))
            .arg("")
            .arg("")
            .arg("")
            .arg(level);
    }
    let replies: Vec<(String, String, u64)> = pipe.query(&mut redis.con()).unwrap();
    replies
        .into_iter()
        .map(|(id, status, _)| {
            assert_eq!(status, "created", "{id}");
            id
        })
        .collect()
}

/// Starts a daemon on `cfg` with Redis's command counts reset, waits until
/// every job of `ids` succeeded, stops it, and returns how many `SET`s
/// Redis served meanwhile.
fn sets_to_run(redis: &Redis, cfg: &str, ids: &[String]) -> u64 {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis.con())
        .unwrap();
    let ward = Ward::start(cfg).ready();
    wait_for(WAIT, "every keyed job to succeed", || {
        job_fields(redis, ids, "state")
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    ward.stop();
    redis.calls("set")
}

#[test]
fn keys_ward_enqueue_set_are_not_claimed_again_and_still_deduplicate() {
    let redis = Redis::start();
    let cfg = config(&redis, 64, &job("noop", "noop", ""));
    // The daemon loads the function library as it starts.
    Ward::start(&cfg).ready().stop();

    let enqueued = fcall_keyed(&redis, "f", N);
    let entry: Vec<String> = redis::cmd("XRANGE")
        .arg(queue_stream("q"))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query::<Vec<(String, Vec<String>)>>(&mut redis.con())
        .unwrap()
        .remove(0)
        .1;
    assert!(
        entry.windows(2).any(|w| w == ["ward:key_claimed", "1"]),
        "ward_enqueue marks a keyed entry: {entry:?}"
    );
    // A second enqueue of a key ward_enqueue set, by plain XADD: the
    // daemon claims its key (it carries no mark) and finds it taken.
    let resent = xadd(&redis, "noop", "{}", &[("idempotency_key", "f-1")]);
    let by_fcall = sets_to_run(&redis, &cfg, &enqueued);
    for id in &enqueued {
        assert_eq!(record_field(&redis, id, "duplicate_of"), None, "{id}");
    }
    wait_for(WAIT, "the plain resend to be a duplicate", || {
        record_field(&redis, &resent, "duplicate_of").as_deref() == Some(enqueued[1].as_str())
    });
    assert_eq!(
        record_field(&redis, &resent, "attempts").as_deref(),
        Some("0")
    );

    // The same jobs by plain XADD: each key is claimed as it is read.
    let fields: Vec<String> = (0..N).map(|i| format!("p-{i}")).collect();
    let entries: Vec<Vec<(&str, &str)>> = fields
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut e = vec![("job", "noop"), ("payload", "{}"), ("idempotency_key", key)];
            if i % 3 == 0 {
                e.push(("priority", "high"));
            }
            e
        })
        .collect();
    let plain = xadd_entries(&redis, &entries);
    let by_xadd = sets_to_run(&redis, &cfg, &plain);

    // Both runs mark every key done (one SET each); the plain one also
    // claims every key.
    let n = N as u64;
    assert!(
        by_xadd >= by_fcall + n * 9 / 10,
        "ward_enqueue's keys were claimed again: {by_fcall} SETs for its jobs, {by_xadd} for plain XADDs"
    );
    assert!(
        by_fcall < n * 3 / 2,
        "{by_fcall} SETs to run {N} keyed jobs that ward_enqueue added"
    );
    // A key ends marked done by the job ward_enqueue set it to.
    let mut con = redis.con();
    for (i, id) in enqueued.iter().enumerate().take(3) {
        let done: String = redis::cmd("GET")
            .arg(format!("ward:{{q}}:idem:f-{i}"))
            .query(&mut con)
            .unwrap();
        assert!(done.starts_with(&format!("{id} done")), "f-{i}: {done}");
    }
}

fn record_field(redis: &Redis, id: &str, field: &str) -> Option<String> {
    job_fields(redis, &[id.to_string()], field).remove(0)
}
