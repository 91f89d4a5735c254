//! Flow control per upstream (`[[upstream]]`: rate, concurrency,
//! Retry-After holds) across two daemons, and backpressure to producers
//! (`max_backlog`), against a real redis-server, the real `ward` daemon, the
//! `webhook` plugin and an [`UpstreamStub`] that records when each request
//! arrived and how many it held open at once.

use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
/// Fast retries; a receiver's Retry-After still wins.
const RETRY: &str = "max_attempts = 3\ninitial_delay = \"20ms\"\njitter = \"none\"";

/// A `webhook` job type `hook` allowed to reach the stub on `port`, naming
/// the stub's host as its upstream (the plugin names it so in failures),
/// then `upstream` (the `[[upstream]]` table's keys besides its name).
fn jobs(port: u16, upstream: &str) -> String {
    job(
        "hook",
        "webhook",
        &format!(
            "http = {{ allow = [\"127.0.0.1:{port}\"], timeout = \"5s\" }}\nupstreams = [\"127.0.0.1\"]\n"
        ),
    ) + &format!("\n[[upstream]]\nname = \"127.0.0.1\"\n{upstream}\n")
}

fn payload(port: u16) -> String {
    format!(r#"{{"url":"http://127.0.0.1:{port}/hook","body":{{}}}}"#)
}

/// Two daemons on one config.
fn two_daemons(config: &str) -> (Ward, Ward) {
    (Ward::start(config).ready(), Ward::start(config).ready())
}

/// Waits until every job of `ids` succeeded; returns their attempts.
fn all_succeed(redis: &Redis, ids: &[String]) -> Vec<u32> {
    wait_for(WAIT, "every job to succeed", || {
        job_fields(redis, ids, "state")
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    job_fields(redis, ids, "attempts")
        .into_iter()
        .map(|a| a.unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_rate_limit_holds_across_two_daemons_and_spends_no_attempt() {
    let stub = UpstreamStub::start(Duration::ZERO, Vec::new());
    let redis = Redis::start();
    let config = config_with(
        &redis,
        8,
        RETRY,
        &jobs(stub.port, "rate = 20\nper = \"1s\"\nburst = 5"),
    );
    let (_a, _b) = two_daemons(&config);
    let ids = xadd_many(&redis, 100, "hook", &payload(stub.port));
    let attempts = all_succeed(&redis, &ids);
    assert!(
        attempts.iter().all(|&a| a == 1),
        "waiting for a token spends no attempt: {attempts:?}"
    );
    let arrivals = stub.arrivals();
    assert_eq!(arrivals.len(), 100, "each job called the upstream once");
    // The stub sees arrivals, which lag their admissions by a delay that
    // varies on a loaded machine: any 0.9 s of arrivals comes from at most
    // one second of admissions while that lag varies by under 100 ms, and
    // one second admits at most 20 + a burst of 5 (0.9 s alone: 23).
    let most = stub.most_within(Duration::from_millis(900));
    assert!(
        most <= 25,
        "{most} requests within 0.9 s, over 20/s + a burst of 5"
    );
    let span = arrivals[99].duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_millis(4500),
        "100 requests at 20/s after a burst of 5 take 4.75 s, not {span:?}"
    );
    // The jobs held back say why.
    let codes = job_fields(&redis, &ids, "last_code");
    let limited = codes
        .iter()
        .filter(|c| c.as_deref() == Some("rate-limited"))
        .count();
    assert!(limited >= 50, "{limited} jobs held back as rate-limited");
}

#[test]
fn a_concurrency_cap_holds_across_two_daemons() {
    let stub = UpstreamStub::start(Duration::from_millis(150), Vec::new());
    let redis = Redis::start();
    let config = config_with(&redis, 8, RETRY, &jobs(stub.port, "concurrency = 5"));
    let (_a, _b) = two_daemons(&config);
    let ids = xadd_many(&redis, 40, "hook", &payload(stub.port));
    let attempts = all_succeed(&redis, &ids);
    assert!(attempts.iter().all(|&a| a == 1), "{attempts:?}");
    assert_eq!(stub.arrivals().len(), 40);
    let most = stub.max_open();
    assert!(most <= 5, "{most} requests open at once, over a cap of 5");
    assert!(most >= 3, "the cap lets several run at once: {most}");
    // Every slot was given back.
    let mut con = redis.con();
    let held: usize = redis::cmd("ZCARD")
        .arg("ward:{q}:upstream:127.0.0.1:slots")
        .query(&mut con)
        .unwrap();
    assert_eq!(held, 0);
}

#[test]
fn a_retry_after_holds_every_job_of_the_upstream() {
    let stub = UpstreamStub::start(
        Duration::ZERO,
        vec![(429, "retry-after: 2\r\n".to_string())],
    );
    let redis = Redis::start();
    // One at a time, so the job that meets the 429 is the only one in flight.
    let config = config_with(
        &redis,
        8,
        RETRY,
        &jobs(stub.port, "concurrency = 1\nrate = 1000"),
    );
    let (a, _b) = two_daemons(&config);
    let ids = xadd_many(&redis, 10, "hook", &payload(stub.port));
    wait_for(WAIT, "the 429", || !stub.arrivals().is_empty());
    // `ward upstreams` shows the hold beside the limits.
    let cfg = a.dir.path().join("ward.toml");
    let cfg = cfg.to_str().unwrap();
    let mut shown = serde_json::Value::Null;
    wait_for(
        Duration::from_secs(2),
        "ward upstreams to show the hold",
        || {
            let out = ward(&["upstreams", "--config", cfg, "--json"]);
            assert!(out.status.success(), "{}", stderr(&out));
            shown = serde_json::from_slice(&out.stdout).unwrap();
            shown[0]["held_for_ms"].as_u64().is_some_and(|ms| ms > 500)
        },
    );
    assert_eq!(shown[0]["upstream"], "127.0.0.1", "{shown}");
    assert_eq!(shown[0]["concurrency"], 1, "{shown}");
    assert_eq!(shown[0]["rate"]["rate"], 1000, "{shown}");
    assert_eq!(shown[0]["breaker"], "closed", "{shown}");
    let table = stdout(&ward(&["upstreams", "--config", cfg]));
    assert!(table.contains("1000/1000ms burst 1000"), "{table}");
    let attempts = all_succeed(&redis, &ids);
    let arrivals = stub.arrivals();
    assert_eq!(arrivals.len(), 11, "ten jobs, one of them twice");
    let gap = arrivals[1].duration_since(arrivals[0]);
    assert!(
        gap >= Duration::from_millis(1900),
        "after a Retry-After of 2 s the next request came after {gap:?}"
    );
    let mut sorted = attempts.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
        "only the job that met the 429 spent a second attempt"
    );
}

#[test]
fn ward_enqueue_past_max_backlog_is_refused_and_adds_nothing() {
    let redis = Redis::start();
    let config = config_queue(&redis, 1, RETRY, "max_backlog = 5", &job("a", "noop", ""));
    // The daemon tells Redis the limit; stopped, it leaves the jobs waiting.
    let ward_proc = Ward::start(&config).ready();
    let mut con = redis.con();
    wait_for(Duration::from_secs(10), "the limit to be published", || {
        let v: Option<String> = redis::cmd("HGET")
            .arg("ward:{q}:limits")
            .arg("max_backlog")
            .query(&mut con)
            .unwrap();
        v.as_deref() == Some("5")
    });
    ward_proc.stop();
    let fcall = |con: &mut redis::Connection, key: &str, delay: &str| {
        redis::cmd("FCALL")
            .arg("ward_enqueue")
            .arg(1)
            .arg("ward:{q}:jobs")
            .arg("a")
            .arg("{}")
            .arg(key)
            .arg(delay)
            .query::<(String, String, u64)>(con)
    };
    for i in 0..3 {
        fcall(&mut con, &format!("k{i}"), "").unwrap();
    }
    for _ in 0..2 {
        fcall(&mut con, "", "60000").unwrap();
    }
    let refused = fcall(&mut con, "k9", "").unwrap_err();
    assert_eq!(refused.code(), Some("BACKPRESSURE"), "{refused}");
    assert!(
        refused.to_string().contains("backlog is 5 jobs"),
        "{refused}"
    );
    // Nothing was added: no entry, no delayed job, no idempotency key.
    let (len, delayed, key): (usize, usize, bool) = redis::pipe()
        .cmd("XLEN")
        .arg("ward:{q}:jobs")
        .cmd("ZCARD")
        .arg("ward:{q}:delayed")
        .cmd("EXISTS")
        .arg("ward:{q}:idem:k9")
        .query(&mut con)
        .unwrap();
    assert_eq!((len, delayed, key), (3, 2, false));
    // A duplicate adds nothing either, so it is answered as before.
    let (_, status, _) = fcall(&mut con, "k0", "").unwrap();
    assert_eq!(status, "duplicate");

    // `ward enqueue` says so, and fails.
    let out = ward(&["enqueue", "--redis", &redis.url(), "q", "a", "{}"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("backpressure") && err.contains("backlog is 5 jobs"),
        "{err}"
    );
    let len: usize = redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut con)
        .unwrap();
    assert_eq!(len, 3);
}

#[test]
fn a_job_an_upstream_holds_back_gives_its_group_slot_back_while_it_waits() {
    // Each request is held long enough to look at the other job's slot.
    let stub = UpstreamStub::start(Duration::from_secs(8), Vec::new());
    let redis = Redis::start();
    let grouped = jobs(stub.port, "concurrency = 1")
        .replacen(
            "upstreams = ",
            "group_by = \"tenant\"\ngroup_concurrency = 1\nupstreams = ",
            1,
        )
        .replacen("timeout = \"5s\"", "timeout = \"20s\"", 1);
    let config = config_with(&redis, 8, RETRY, &grouped);
    // Both in the daemon's first read: each passes its own group's gate,
    // then the upstream's one slot admits one and holds the other back.
    let ids = xadd_entries(
        &redis,
        &[
            vec![
                ("job", "hook"),
                ("payload", &payload(stub.port)),
                ("tenant", "a"),
            ],
            vec![
                ("job", "hook"),
                ("payload", &payload(stub.port)),
                ("tenant", "b"),
            ],
        ],
    );
    let _ward = Ward::start(&config).ready();
    let mut con = redis.con();
    let mut held = None;
    wait_for(
        Duration::from_secs(4),
        "one job held back by the upstream",
        || {
            held = ids
                .iter()
                .zip(["a", "b"])
                .find(|(id, _)| in_zset(&mut con, "ward:{q}:delayed", id));
            held.is_some()
        },
    );
    let (id, tenant) = held.unwrap();
    assert_eq!(stub.max_open(), 1, "the other job is in flight");
    wait_for(
        Duration::from_secs(3),
        "the held-back job's group slot to be given back while the other runs",
        || !in_zset(&mut con, &format!("ward:{{q}}:group:hook:{tenant}"), id),
    );
    assert_eq!(stub.requests(), 1, "still only the first request sent");
    let attempts = all_succeed(&redis, &ids);
    assert_eq!(attempts, [1, 1], "holding back spent no attempt");
}

/// Whether `member` is in the sorted set `key`.
fn in_zset(con: &mut redis::Connection, key: &str, member: &str) -> bool {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query::<Option<f64>>(con)
        .unwrap()
        .is_some()
}
