//! Observability end to end: the Prometheus endpoint scraped during real
//! runs, log lines carrying the attempt's span fields, and `/readyz`
//! following Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// `GET path` on the daemon's metrics port: `(status, body)`, or `None`
/// when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n")?.1.to_string()))
}

fn scrape(port: u16) -> String {
    let (status, body) = get(port, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(status, 200, "{body}");
    body
}

/// Labels of a sample line `name{a="x",b="y"} 1`, parsed.
fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

/// The value of the sample `name` whose labels include all of `labels`
/// (summed when several match).
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let have = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(scrape, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in the scrape:\n{scrape}"))
}

/// Base names of the `ward_*` metrics a scrape shows (`# TYPE` lines).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.starts_with("ward_"))
        .map(str::to_string)
        .collect()
}

/// The config of queue `q` with the metrics endpoint on `metrics_port`
/// (sampled every 200 ms) and `extra` tables on top.
fn obs_config(redis: &Redis, metrics_port: u16, extra: &str, jobs: &str) -> String {
    config_top(
        redis,
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\nsample_interval = \"200ms\"\n\n{extra}"
        ),
        "concurrency = 8",
        FAST_RETRY,
        jobs,
    )
}

/// Adds entries to queue `q` with one pipelined round trip; returns their ids.
fn xadd_all(redis: &Redis, entries: &[Vec<(&str, &str)>]) -> Vec<String> {
    let mut pipe = redis::pipe();
    for fields in entries {
        pipe.cmd("XADD").arg("ward:{q}:jobs").arg("*");
        for (k, v) in fields {
            pipe.arg(*k).arg(*v);
        }
    }
    pipe.query(&mut redis.con()).unwrap()
}

// ------------------------------------------------------------------ tests

#[test]
fn the_metrics_endpoint_counts_what_happened() {
    let redis = Redis::start();
    let port = free_port();
    let jobs = job("noop", "noop", "") + &job("flaky", "flaky", "");
    let _ward = Ward::start(&obs_config(&redis, port, "", &jobs)).ready();

    let mut entries: Vec<Vec<(&str, &str)>> = vec![vec![("job", "noop"), ("payload", "{}")]; 5];
    entries.push(vec![
        ("job", "flaky"),
        ("payload", r#"{"fail":"transient","times":2}"#),
    ]);
    entries.extend(vec![
        vec![
            ("job", "flaky"),
            ("payload", r#"{"fail":"permanent"}"#)
        ];
        2
    ]);
    entries.push(vec![("job", "no-such-type"), ("payload", "{}")]);
    for id in xadd_all(&redis, &entries) {
        wait_final(&redis, &id, WAIT);
    }

    // Counted once the outcome is durable, a moment after `job show` sees it.
    wait_for(WAIT, "the counters to settle", || {
        sample(
            &scrape(port),
            "ward_jobs_total",
            &[("job", "flaky"), ("outcome", "dead")],
        ) == Some(2.0)
            && sample(&scrape(port), "ward_queue_depth", &[("state", "dead")]) == Some(3.0)
    });
    let m = scrape(port);
    let jobs_total = |job: &str, outcome: &str| {
        value(
            &m,
            "ward_jobs_total",
            &[("queue", "q"), ("job", job), ("outcome", outcome)],
        )
    };
    assert_eq!(jobs_total("noop", "succeeded"), 5.0);
    assert_eq!(jobs_total("flaky", "succeeded"), 1.0);
    assert_eq!(
        jobs_total("flaky", "retried"),
        2.0,
        "the flaky job failed twice"
    );
    assert_eq!(jobs_total("flaky", "dead"), 2.0);
    for outcome in ["duplicate", "deferred", "discarded"] {
        assert_eq!(
            jobs_total("flaky", outcome),
            0.0,
            "{outcome} is exported at 0"
        );
    }
    // An entry naming a job type nobody configured is labelled `unknown`:
    // entries can name anything, labels stay a bounded set.
    assert_eq!(jobs_total("unknown", "dead"), 1.0);
    assert!(!m.contains("no-such-type"), "no unbounded label values");

    let attempts = |job: &str, class: &str| {
        value(&m, "ward_attempts_total", &[("job", job), ("class", class)])
    };
    assert_eq!(attempts("noop", "success"), 5.0);
    assert_eq!(attempts("flaky", "transient"), 2.0);
    assert_eq!(attempts("flaky", "success"), 1.0);
    assert_eq!(attempts("flaky", "permanent"), 2.0);
    assert_eq!(
        value(&m, "ward_attempts_total", &[("job", "unknown")]),
        0.0,
        "nothing ran for the unknown type"
    );
    assert_eq!(
        value(
            &m,
            "ward_dead_letters_total",
            &[("job", "flaky"), ("reason", "permanent")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "ward_dead_letters_total",
            &[("job", "unknown"), ("reason", "no_plugin")]
        ),
        1.0
    );

    // Histograms: five noop jobs took one attempt each, the flaky one three.
    let h = |name: &str, job: &str, suffix: &str, le: Option<&str>| {
        let mut labels = vec![("job", job)];
        if let Some(le) = le {
            labels.push(("le", le));
        }
        value(&m, &format!("{name}{suffix}"), &labels)
    };
    let ats = "ward_job_attempts_to_success";
    assert_eq!(h(ats, "noop", "_count", None), 5.0);
    assert_eq!(h(ats, "noop", "_sum", None), 5.0);
    assert_eq!(h(ats, "noop", "_bucket", Some("1")), 5.0);
    assert_eq!(h(ats, "flaky", "_count", None), 1.0);
    assert_eq!(h(ats, "flaky", "_sum", None), 3.0);
    assert_eq!(h(ats, "flaky", "_bucket", Some("2")), 0.0);
    assert_eq!(h(ats, "flaky", "_bucket", Some("3")), 1.0);
    assert_eq!(h(ats, "flaky", "_bucket", Some("+Inf")), 1.0);
    assert_eq!(h("ward_job_duration_seconds", "noop", "_count", None), 5.0);
    assert_eq!(
        h("ward_job_duration_seconds", "flaky", "_count", None),
        5.0,
        "3 attempts of one job, 1 of each of two"
    );
    assert_eq!(
        h("ward_plugin_instantiate_seconds", "noop", "_count", None),
        5.0
    );
    let tts = "ward_job_time_to_success_seconds";
    assert_eq!(h(tts, "flaky", "_count", None), 1.0);
    assert!(
        h(tts, "flaky", "_sum", None) >= 0.05,
        "from enqueue to success spans both retry delays (20 ms + 40 ms)"
    );

    // Gauges, sampled: everything is done, three jobs are dead.
    for (state, want) in [
        ("ready", 0.0),
        ("pending", 0.0),
        ("delayed", 0.0),
        ("dead", 3.0),
    ] {
        assert_eq!(
            value(&m, "ward_queue_depth", &[("queue", "q"), ("state", state)]),
            want,
            "{state}"
        );
    }
    assert_eq!(value(&m, "ward_queue_lag_seconds", &[("queue", "q")]), 0.0);
    assert_eq!(value(&m, "ward_inflight", &[("queue", "q")]), 0.0);
    assert_eq!(value(&m, "ward_redis_up", &[]), 1.0);
    assert_eq!(value(&m, "ward_ready", &[]), 1.0);
    assert_eq!(value(&m, "ward_build_info", &[]), 1.0);

    // The scrape shows exactly the metrics Ward says it registers.
    let want: BTreeSet<String> = ward::obs::METRICS.iter().map(|s| s.to_string()).collect();
    assert_eq!(exported(&m), want);
}

#[test]
fn queue_depth_and_lag_show_a_backlog() {
    let redis = Redis::start();
    let port = free_port();
    // One slot, and every job sleeps: a backlog builds up behind it.
    let _ward = Ward::start(
        &obs_config(&redis, port, "", &job("flaky", "flaky", ""))
            .replace("concurrency = 8", "concurrency = 1"),
    )
    .ready();
    let slow = vec![
        ("job", "flaky"),
        ("payload", r#"{"sleep_ms":3000,"times":0}"#),
    ];
    xadd_all(&redis, &vec![slow; 4]);
    enqueue_with(&redis, &["--delay", "1h"], "flaky", "{}");
    wait_for(WAIT, "a backlog one second old", || {
        let m = scrape(port);
        sample(&m, "ward_queue_depth", &[("state", "ready")]) == Some(3.0)
            && sample(&m, "ward_queue_depth", &[("state", "pending")]) == Some(1.0)
            && sample(&m, "ward_queue_depth", &[("state", "delayed")]) == Some(1.0)
            && sample(&m, "ward_inflight", &[]) == Some(1.0)
            && sample(&m, "ward_queue_lag_seconds", &[]).is_some_and(|lag| lag >= 1.0)
    });
}

#[test]
fn every_log_line_of_an_attempt_carries_the_job_and_its_correlation_ids() {
    let redis = Redis::start();
    let port = free_port();
    let ward_proc = Ward::start(&obs_config(&redis, port, "", &job("flaky", "flaky", ""))).ready();
    let id = xadd_all(
        &redis,
        &[vec![
            ("job", "flaky"),
            ("payload", r#"{"fail":"transient","times":1}"#),
            ("order_id", "o-17"),
            ("request_id", "req-9"),
            ("tenant", "not-a-correlation-field"),
        ]],
    )
    .remove(0);
    wait_final(&redis, &id, WAIT);
    let lines: Vec<Value> = ward_proc
        .log_lines()
        .into_iter()
        .filter(|l| l["job_id"] == id.as_str())
        .collect();
    let plugin: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ward::plugin")
        .collect();
    assert_eq!(plugin.len(), 2, "one plugin line per attempt: {lines:#?}");
    for (line, attempt) in plugin.iter().zip([1, 2]) {
        assert_eq!(line["attempt"], attempt, "{line}");
        assert_eq!(line["queue"], "q", "{line}");
        assert_eq!(line["job"], "flaky", "{line}");
        assert_eq!(line["order_id"], "o-17", "{line}");
        assert_eq!(line["request_id"], "req-9", "{line}");
        assert!(line.get("tenant").is_none(), "only the fixed set: {line}");
        assert!(
            line.get("user_id").is_none(),
            "absent ids are left out: {line}"
        );
    }
    let retry = lines
        .iter()
        .find(|l| l["message"] == "attempt failed; retrying")
        .expect("the retry line");
    assert_eq!(
        retry["order_id"], "o-17",
        "the daemon's own lines too: {retry}"
    );
}

#[test]
fn readyz_is_503_until_redis_is_reachable_and_healthz_is_200_throughout() {
    let redis_port = free_port();
    let port = free_port();
    let cfg = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\nsample_interval = \"200ms\"\n\n[redis]\nurl = \"redis://127.0.0.1:{redis_port}\"\n\n[[queue]]\nname = \"q\"\n\n{}",
        job("noop", "noop", "")
    );
    let _ward = Ward::start(&cfg);
    wait_for(WAIT, "/healthz", || {
        get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    for _ in 0..3 {
        let (status, body) = get(port, "/readyz").unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(
            body.starts_with("not ready: redis:"),
            "says which check fails: {body}"
        );
        assert_eq!(get(port, "/healthz").unwrap().0, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(value(&metrics, "ward_redis_up", &[]), 0.0);

    let _redis = Redis::start_on(redis_port);
    wait_for(WAIT, "/readyz to turn 200", || {
        assert_eq!(get(port, "/healthz").unwrap().0, 200, "healthz stays 200");
        get(port, "/readyz").is_some_and(|(s, body)| s == 200 && body == "ready\n")
    });
    assert_eq!(get(port, "/nope").unwrap().0, 404);
}
