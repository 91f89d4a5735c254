//! Observability end to end: the Prometheus endpoint scraped during real
//! runs, log lines carrying the attempt's span fields, grouped and redacted
//! alerts received by a webhook server in the test, `/readyz` following
//! Redis, and the shipped alert rules and dashboard checked against the
//! metrics Ward registers.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

/// `GET path` on the daemon's metrics port: `(status, body)`, or `None`
/// when nothing answers.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
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

pub(crate) fn scrape(port: u16) -> String {
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
pub(crate) fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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
        .filter(|n| n.starts_with("ward_") || n.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every `ward_*` metric name an expression mentions, histogram suffixes
/// taken back to the histogram's name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("ward_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        let name = &expr[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| ward::obs::METRICS.contains(b))
            })
            .unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
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

/// The alert webhook URL of `hook`, a stand-in receiver.
fn hook_url(hook: &HttpStub) -> String {
    format!("http://127.0.0.1:{}/hook", hook.port)
}

// ------------------------------------------------------------------ tests

#[test]
fn the_metrics_endpoint_counts_what_happened() {
    let redis = Redis::start();
    let port = free_port();
    // Two transient failures blamed on `api` stay under the breaker's 5.
    let jobs = job("noop", "noop", "") + &job("flaky", "flaky", "upstreams = [\"api\"]");
    let ward = Ward::start(&obs_config(&redis, port, "", &jobs)).ready();

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
    for id in xadd_entries(&redis, &entries) {
        wait_final(&redis, &id, WAIT);
    }

    // Counted once the outcome is durable, a moment after `job show` sees it.
    wait_for(WAIT, "the counters to settle", || {
        sample(
            &scrape(port),
            "ward_jobs_total",
            &[("job_type", "flaky"), ("outcome", "dead")],
        ) == Some(2.0)
            && sample(&scrape(port), "ward_queue_depth", &[("state", "dead")]) == Some(3.0)
    });
    let m = scrape(port);
    // Prometheus owns `job` (the scrape job) and `instance`: a series that
    // brought its own would be relabelled `exported_job` on scrape.
    for line in m.lines().filter(|l| l.starts_with("ward_")) {
        let labels = parse_labels(line);
        for reserved in ["job", "instance"] {
            assert!(
                !labels.contains_key(reserved),
                "`{reserved}` is Prometheus' own label: {line}"
            );
        }
    }
    let jobs_total = |job: &str, outcome: &str| {
        value(
            &m,
            "ward_jobs_total",
            &[("queue", "q"), ("job_type", job), ("outcome", outcome)],
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
    for outcome in ["duplicate", "deferred"] {
        assert_eq!(
            jobs_total("flaky", outcome),
            0.0,
            "{outcome} is exported at 0"
        );
    }
    // Discards happen in the CLI, so the daemon has no such series to show.
    assert!(!m.contains("outcome=\"discarded\""), "{m}");
    // An entry naming a job type nobody configured is labelled `unknown`:
    // entries can name anything, labels stay a bounded set.
    assert_eq!(jobs_total("unknown", "dead"), 1.0);
    assert!(!m.contains("no-such-type"), "no unbounded label values");

    // Enqueued: each job once, at its first read; the flaky job's two
    // retries are new entries of an old job and are not counted again.
    let enqueued = |job: &str| {
        value(
            &m,
            "ward_jobs_enqueued_total",
            &[("queue", "q"), ("job_type", job)],
        )
    };
    assert_eq!(enqueued("noop"), 5.0);
    assert_eq!(enqueued("flaky"), 3.0, "one entry per job, retries aside");
    assert_eq!(enqueued("unknown"), 1.0);

    let attempts = |job: &str, class: &str| {
        value(
            &m,
            "ward_attempts_total",
            &[("job_type", job), ("class", class)],
        )
    };
    assert_eq!(attempts("noop", "success"), 5.0);
    assert_eq!(attempts("flaky", "transient"), 2.0);
    assert_eq!(attempts("flaky", "success"), 1.0);
    assert_eq!(attempts("flaky", "permanent"), 2.0);
    assert_eq!(
        value(&m, "ward_attempts_total", &[("job_type", "unknown")]),
        0.0,
        "nothing ran for the unknown type"
    );
    assert_eq!(
        value(
            &m,
            "ward_dead_letters_total",
            &[("job_type", "flaky"), ("reason", "permanent")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "ward_dead_letters_total",
            &[("job_type", "unknown"), ("reason", "no_plugin")]
        ),
        1.0
    );

    // Histograms: five noop jobs took one attempt each, the flaky one three.
    let h = |name: &str, job: &str, suffix: &str, le: Option<&str>| {
        let mut labels = vec![("job_type", job)];
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
    assert_eq!(
        h("ward_job_wait_seconds", "noop", "_count", None),
        5.0,
        "one wait per job, at its first attempt"
    );
    let tts = "ward_job_time_to_success_seconds";
    assert_eq!(h(tts, "flaky", "_count", None), 1.0);
    assert!(
        h(tts, "flaky", "_sum", None) >= 0.05,
        "from enqueue to success spans both retry delays (20 ms + 40 ms)"
    );

    // Capacity (utilisation = in flight / capacity) and Redis' memory, as
    // this daemon sees them.
    assert_eq!(value(&m, "ward_capacity", &[("queue", "q")]), 8.0);
    assert_eq!(value(&m, "ward_redis_evicting", &[]), 0.0, "noeviction");
    wait_for(WAIT, "Redis' memory to be sampled", || {
        sample(&scrape(port), "ward_redis_memory_used_bytes", &[]).is_some_and(|v| v > 0.0)
    });

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
    assert_eq!(
        value(
            &m,
            "ward_breaker_open",
            &[("queue", "q"), ("upstream", "api")]
        ),
        0.0
    );
    assert_eq!(value(&m, "ward_redis_up", &[]), 1.0);
    assert_eq!(value(&m, "ward_ready", &[]), 1.0);
    assert_eq!(value(&m, "ward_build_info", &[]), 1.0);

    // The process metrics are this daemon's, read at the scrape.
    let pid = ward.pid();
    let rss_kb: f64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let rss = value(&m, "process_resident_memory_bytes", &[]);
    assert!(
        rss > rss_kb * 1024.0 / 4.0 && rss < rss_kb * 1024.0 * 4.0,
        "process_resident_memory_bytes {rss} vs VmRSS {rss_kb} kB"
    );
    assert!(value(&m, "process_threads", &[]) >= 2.0);
    assert!(value(&m, "process_open_fds", &[]) >= 3.0);

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
    xadd_entries(&redis, &vec![slow; 4]);
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
    let id = xadd_entries(
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
fn twenty_dead_letters_make_one_grouped_alert_and_the_cooldown_holds_the_repeat() {
    let redis = Redis::start();
    let port = free_port();
    // The webhook fails once: the alert is retried, not lost.
    let hook = HttpStub::statuses(&[500]);
    let alerts = format!(
        "[alerts]\nenvironment = \"test\"\nwindow = \"1m\"\nthreshold = 5\ncooldown = \"1h\"\ngrowth_factor = 2.0\ngroup_wait = \"2s\"\n\n[[alerts.webhook]]\nurl = \"{}\"\n",
        hook_url(&hook)
    );
    let _ward = Ward::start(&obs_config(
        &redis,
        port,
        &alerts,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    let poison = vec![
        ("job", "flaky"),
        ("payload", r#"{"fail":"permanent","upstream":"mailer"}"#),
    ];
    xadd_entries(&redis, &vec![poison.clone(); 20]);
    wait_for(WAIT, "20 dead letters", || dead_letters(&redis).len() == 20);
    wait_for(WAIT, "the alert, sent again after a 500", || {
        hook.received().len() == 2
    });
    let got = hook.received();
    assert_eq!(got[0].body, got[1].body, "the retry sends the same alert");
    assert_eq!(got[1].headers["content-type"], "application/json");
    let alert: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(alert["kind"], "dead_letter", "{alert:#}");
    assert_eq!(alert["queue"], "q");
    assert_eq!(alert["job"], "flaky");
    assert_eq!(alert["environment"], "test");
    assert_eq!(
        alert["count"], 20,
        "one alert for the whole burst: {alert:#}"
    );
    assert_eq!(alert["classes"]["permanent"], 20);
    assert_eq!(alert["latest"]["attempts"], 1);
    assert_eq!(alert["latest"]["upstream"], "mailer");
    assert_eq!(alert["latest"]["reason"], "permanent");
    assert_eq!(alert["latest"]["class"], "permanent");
    assert!(
        alert["latest"]["error"].as_str().unwrap().contains("flaky"),
        "{alert:#}"
    );
    assert!(alert["first_at"].as_str().unwrap() <= alert["last_at"].as_str().unwrap());

    // Five more within the cooldown: 25 < 2 x 20, so no second alert.
    xadd_entries(&redis, &vec![poison; 5]);
    wait_for(WAIT, "25 dead letters", || dead_letters(&redis).len() == 25);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(hook.received().len(), 2, "the cooldown holds the repeat");
    let m = scrape(port);
    assert_eq!(
        value(
            &m,
            "ward_alerts_total",
            &[("kind", "dead_letter"), ("result", "sent")]
        ),
        1.0
    );
    assert_eq!(value(&m, "ward_alerts_dropped_total", &[]), 0.0);
}

#[test]
fn a_secret_in_a_failing_jobs_error_never_reaches_the_alert_body() {
    let redis = Redis::start();
    let port = free_port();
    let hook = HttpStub::statuses(&[]);
    let token = format!(
        "tok-{:016x}",
        u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    let alerts = format!(
        "[alerts]\nthreshold = 1\ngroup_wait = \"200ms\"\n\n[[alerts.webhook]]\nurl = \"{}\"\nheaders = {{ Authorization = \"secret:WARD_TEST_ALERT_TOKEN\" }}\n",
        hook_url(&hook)
    );
    let _ward = Ward::start_with_env(
        &obs_config(&redis, port, &alerts, &job("flaky", "flaky", "")),
        &[("WARD_TEST_ALERT_TOKEN", &token)],
    )
    .ready();
    let payload =
        format!(r#"{{"fail":"permanent","message":"upstream refused Bearer {token} (401)"}}"#);
    enqueue(&redis, "flaky", &payload);
    wait_for(WAIT, "the alert", || !hook.received().is_empty());
    let got = &hook.received()[0];
    assert_eq!(
        got.headers["authorization"], token,
        "the header secret is read from the daemon's environment"
    );
    assert!(
        !got.body.contains(&token),
        "the secret leaked: {}",
        got.body
    );
    let alert: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        alert["latest"]["error"], "upstream refused Bearer [redacted] (401)",
        "{alert:#}"
    );
}

#[test]
fn an_https_alert_receiver_of_a_private_ca_is_reached_with_the_webhooks_ca_file() {
    let redis = Redis::start();
    let port = free_port();
    let trusted = HttpsStub::start();
    let untrusted = HttpsStub::start();
    let alerts = format!(
        "[alerts]\nthreshold = 1\ngroup_wait = \"200ms\"\n\n\
         [[alerts.webhook]]\nurl = \"https://127.0.0.1:{}/hook\"\nca_file = \"{}\"\n\n\
         [[alerts.webhook]]\nurl = \"https://127.0.0.1:{}/hook\"\nmax_attempts = 1\n",
        trusted.port,
        trusted.ca_file.display(),
        untrusted.port
    );
    let ward_proc = Ward::start(&obs_config(
        &redis,
        port,
        &alerts,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    enqueue(&redis, "flaky", r#"{"fail":"permanent"}"#);
    wait_for(WAIT, "the alert to both webhooks", || {
        let m = scrape(port);
        let n = |result| {
            value(
                &m,
                "ward_alerts_total",
                &[("kind", "dead_letter"), ("result", result)],
            )
        };
        n("sent") == 1.0 && n("failed") == 1.0
    });
    assert_eq!(
        trusted.versions().len(),
        1,
        "the receiver of the private CA got the alert\n{}",
        ward_proc.logs()
    );
    assert!(
        untrusted.versions().is_empty(),
        "the system's CA certificates alone do not vouch for a private CA"
    );
    let logs = ward_proc.logs();
    assert!(
        logs.lines().any(|l| l.contains("alert not delivered")
            && l.contains(&format!("127.0.0.1:{}", untrusted.port))
            && l.to_lowercase().contains("certificate")),
        "the failure says it was the certificate:\n{logs}"
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

// ---------------------------------------------- the shipped rules and dashboard

#[test]
fn the_alert_rules_parse_and_use_only_metrics_ward_exports() {
    let path = workspace().join("config/prometheus/ward-alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut used = BTreeSet::new();
    let mut alerts = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        assert!(group["name"].as_str().is_some());
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: expr"));
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            let names = metric_names(expr);
            for m in &names {
                assert!(
                    ward::obs::METRICS.contains(&m.as_str()),
                    "{name} uses {m}, which Ward does not export"
                );
            }
            used.extend(names);
            alerts.push(name.to_string());
        }
    }
    for m in [
        "ward_dead_letters_total",
        "ward_jobs_total",
        "ward_queue_lag_seconds",
    ] {
        assert!(used.contains(m), "no rule watches {m}");
    }
    assert!(
        text.contains("up{") || text.contains("up =="),
        "a rule for a worker that is down"
    );
    assert!(alerts.len() >= 4, "{alerts:?}");
    // Where Prometheus' own checker is installed, it has the last word.
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
    {
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every PromQL expression of the shipped rules and dashboard.
pub(crate) fn shipped_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules =
        std::fs::read_to_string(workspace().join("config/prometheus/ward-alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_string();
            out.push((name, rule["expr"].as_str().unwrap().to_string()));
        }
    }
    let dash =
        std::fs::read_to_string(workspace().join("config/grafana/ward-dashboard.json")).unwrap();
    for line in dash.lines() {
        let line = line.trim();
        for key in ["\"expr\": ", "\"definition\": ", "\"query\": "] {
            if let Some(rest) = line.strip_prefix(key)
                && let Ok(e) = serde_json::from_str::<String>(rest.trim_end_matches(','))
            {
                out.push(("dashboard".to_string(), e));
            }
        }
    }
    out
}

#[test]
fn rules_and_panels_group_by_job_type_and_count_queue_gauges_once() {
    let exprs = shipped_exprs();
    assert!(exprs.len() > 20, "{exprs:?}");
    for (name, e) in &exprs {
        // `job` is the scrape job: only `up{job="ward"}` may name it.
        let without_up = e.replace("up{job=\"ward\"}", "");
        for bad in [
            "(job)",
            "(job,",
            " job)",
            " job,",
            ", job)",
            "{job=",
            ", job=",
            "{job!",
            "$labels.job ",
        ] {
            assert!(
                !without_up.contains(bad),
                "{name} uses the `job` label ({bad}): {e}"
            );
        }
        // Every daemon of a queue reports the same queue-wide gauges: a sum
        // would count one copy per daemon.
        for gauge in ["ward_queue_depth", "ward_queue_lag_seconds"] {
            let Some(at) = e.find(gauge) else { continue };
            let innermost = ["sum(", "sum by", "max(", "max by", "delta(", "rate("]
                .iter()
                .filter_map(|a| e[..at].rfind(a).map(|p| (p, *a)))
                .max();
            assert!(
                !innermost.is_some_and(|(_, a)| a.starts_with("sum")),
                "{name} sums {gauge}, which every daemon reports alike: {e}"
            );
        }
    }
}

#[test]
fn every_shipped_alert_passes_its_promtool_unit_tests_and_has_a_runbook() {
    let dir = workspace().join("config/prometheus");
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "ward-alerts.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/setup installs it)");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::fs::read_to_string(dir.join("ward-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("ward-alerts.test.yml")).unwrap();
    let runbooks = std::fs::read_to_string(workspace().join("docs/runbooks.md")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    let mut n = 0;
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            n += 1;
            // A case that fires (exp_alerts with labels) for every alert.
            let fires = tests
                .split("alertname: ")
                .skip(1)
                .any(|case| case.starts_with(&format!("{name}\n")) && case.contains("exp_labels"));
            assert!(fires, "{name}: no promtool case in which it fires");
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: runbook_url"));
            let anchor = url
                .strip_prefix("docs/runbooks.md#")
                .unwrap_or_else(|| panic!("{name}: {url}"));
            assert_eq!(anchor, name.to_lowercase());
            assert!(
                runbooks.contains(&format!("\n## {name}\n")),
                "{name}: no section in docs/runbooks.md"
            );
        }
    }
    assert!(n >= 11, "{n} alerts");
}

#[test]
fn the_dashboard_parses_and_uses_only_metrics_ward_exports() {
    let path = workspace().join("config/grafana/ward-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fn walk(v: &Value, exprs: &mut Vec<String>, types: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(e)) => exprs.push(e.clone()),
                        ("type", Value::String(t)) => types.push(t.clone()),
                        _ => walk(v, exprs, types),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, exprs, types)),
            _ => {}
        }
    }
    let (mut exprs, mut types) = (Vec::new(), Vec::new());
    walk(&dash, &mut exprs, &mut types);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for m in &used {
        assert!(
            ward::obs::METRICS.contains(&m.as_str()),
            "the dashboard uses {m}, which Ward does not export"
        );
    }
    for m in [
        "ward_dead_letters_total",
        "ward_attempts_total",
        "ward_jobs_total",
        "ward_queue_depth",
        "ward_queue_lag_seconds",
        "ward_job_time_to_success_seconds",
        "ward_job_attempts_to_success",
        "ward_inflight",
        "ward_job_wait_seconds",
        "ward_capacity",
    ] {
        assert!(used.contains(m), "no panel shows {m}");
    }
    assert!(
        types.iter().any(|t| t == "heatmap"),
        "attempts to success as a heatmap"
    );
    assert!(dash["title"].as_str().is_some() && dash["uid"].as_str().is_some());
}

/// `ward_breaker_open` of `upstream` in queue `q`, if the scrape has it.
fn breaker_open(scrape: &str, upstream: &str) -> Option<f64> {
    sample(
        scrape,
        "ward_breaker_open",
        &[("queue", "q"), ("upstream", upstream)],
    )
}

/// Members of the set of upstreams that have a breaker in queue `q`.
fn breaker_members(redis: &Redis) -> BTreeSet<String> {
    redis::cmd("SMEMBERS")
        .arg("ward:{q}:breakers")
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn only_declared_upstreams_get_a_breaker_and_expired_ones_leave_the_set() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = obs_config(
        &redis,
        port,
        "",
        &job("flaky", "flaky", "upstreams = [\"api\"]"),
    )
    .replace(
        "[defaults.retry]",
        "[defaults.breaker]\nfailures = 3\nwindow = \"60s\"\nopen_for = \"60s\"\n\n[defaults.retry]",
    );
    let _ward = Ward::start(&cfg).ready();

    // A plugin (or a payload) can name any upstream: names the job type did
    // not declare must not make breakers, set members or metric series.
    let undeclared: Vec<String> = (0..40)
        .map(|i| {
            enqueue(
                &redis,
                "flaky",
                &format!(r#"{{"times":1,"upstream":"u-{i}"}}"#),
            )
        })
        .collect();
    for id in &undeclared {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        assert_eq!(s["attempts"], 2, "it failed once, naming its upstream: {s}");
    }
    // Past a refresh of the breakers (every 500 ms) and a scrape.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        breaker_members(&redis).is_empty(),
        "{:?}",
        breaker_members(&redis)
    );
    let m = scrape(port);
    assert!(!m.contains("upstream=\"u-"), "{m}");
    assert_eq!(breaker_open(&m, "api"), Some(0.0));

    // The declared upstream still counts and opens.
    for _ in 0..3 {
        enqueue(&redis, "flaky", r#"{"times":1,"upstream":"api"}"#);
    }
    wait_for(WAIT, "the breaker of `api` to open", || {
        breaker_open(&scrape(port), "api") == Some(1.0)
    });
    assert_eq!(breaker_members(&redis), BTreeSet::from(["api".to_string()]));

    // A member whose breaker hash expired leaves the set at the next read.
    let _: () = redis::cmd("SADD")
        .arg("ward:{q}:breakers")
        .arg("gone")
        .query(&mut redis.con())
        .unwrap();
    wait_for(WAIT, "the expired breaker to leave the set", || {
        !breaker_members(&redis).contains("gone")
    });
    assert!(breaker_members(&redis).contains("api"));
}

#[test]
fn slack_and_alertmanager_webhooks_get_the_same_alert_in_their_own_shape() {
    let redis = Redis::start();
    let port = free_port();
    let (plain, slack, am) = (
        HttpStub::statuses(&[]),
        HttpStub::statuses(&[]),
        HttpStub::statuses(&[]),
    );
    let alerts = format!(
        "[alerts]\nenvironment = \"test\"\nwindow = \"1m\"\nthreshold = 3\ncooldown = \"10m\"\ngroup_wait = \"1s\"\n\n\
         [[alerts.webhook]]\nurl = \"{}\"\n\n\
         [[alerts.webhook]]\nurl = \"{}\"\nformat = \"slack\"\n\n\
         [[alerts.webhook]]\nurl = \"{}\"\nformat = \"alertmanager\"\n",
        hook_url(&plain),
        hook_url(&slack),
        hook_url(&am)
    );
    let _ward = Ward::start(&obs_config(
        &redis,
        port,
        &alerts,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    let poison = vec![
        ("job", "flaky"),
        ("payload", r#"{"fail":"permanent","upstream":"mailer"}"#),
    ];
    xadd_entries(&redis, &vec![poison; 3]);
    wait_for(WAIT, "one alert at each webhook", || {
        [&plain, &slack, &am]
            .iter()
            .all(|h| h.received().len() == 1)
    });

    let ward_body: Value = serde_json::from_str(&plain.received()[0].body).unwrap();
    assert_eq!(ward_body["count"], 3, "{ward_body}");

    let chat: Value = serde_json::from_str(&slack.received()[0].body).unwrap();
    let text = chat["text"].as_str().unwrap();
    assert!(
        text.starts_with("3 dead letters of job type `flaky` in queue `q`"),
        "{text}"
    );
    assert!(text.contains("3 permanent"), "{text}");
    assert!(text.contains("1 attempt over"), "{text}");
    assert!(text.contains("from mailer"), "{text}");

    let list: Value = serde_json::from_str(&am.received()[0].body).unwrap();
    let a = &list[0];
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(a["labels"]["alertname"], "WardDeadLettersRising", "{a}");
    assert_eq!(
        (
            a["labels"]["queue"].as_str(),
            a["labels"]["job_type"].as_str(),
            a["labels"]["upstream"].as_str(),
            a["labels"]["environment"].as_str()
        ),
        (Some("q"), Some("flaky"), Some("mailer"), Some("test")),
        "{a}"
    );
    assert_eq!(a["startsAt"], ward_body["first_at"], "{a}");
    assert!(
        a["endsAt"].as_str().unwrap() > ward_body["last_at"].as_str().unwrap(),
        "it ends after the last event: {a}"
    );
}

#[test]
fn a_burst_of_retries_of_one_job_type_raises_one_retry_spike_alert() {
    let redis = Redis::start();
    let port = free_port();
    let hook = HttpStub::statuses(&[]);
    let alerts = format!(
        "[alerts]\nwindow = \"1m\"\nretry_threshold = 6\ncooldown = \"10m\"\ngroup_wait = \"1s\"\n\n\
         [[alerts.webhook]]\nurl = \"{}\"\nformat = \"slack\"\n",
        hook_url(&hook)
    );
    let _ward = Ward::start(&obs_config(
        &redis,
        port,
        &alerts,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    // Four jobs failing twice each with a 503 from `inventory`: 8 retries.
    let failing = vec![
        ("job", "flaky"),
        (
            "payload",
            r#"{"fail":"transient","times":2,"code":"http-503","upstream":"inventory"}"#,
        ),
    ];
    let ids = xadd_entries(&redis, &vec![failing; 4]);
    for id in &ids {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    wait_for(WAIT, "the retry-spike alert", || hook.received().len() == 1);
    let chat: Value = serde_json::from_str(&hook.received()[0].body).unwrap();
    let text = chat["text"].as_str().unwrap();
    assert!(
        text.contains("retries of job type `flaky` in queue `q`"),
        "{text}"
    );
    assert!(text.contains("transient"), "{text}");
    assert!(text.contains("from inventory"), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.received().len(), 1, "one alert for the burst");
}

#[test]
fn an_alert_still_firing_after_escalate_after_goes_once_to_the_escalation_route() {
    let redis = Redis::start();
    let port = free_port();
    let (first, second) = (HttpStub::statuses(&[]), HttpStub::statuses(&[]));
    let alerts = format!(
        "[alerts]\nwindow = \"1m\"\nthreshold = 1\ncooldown = \"1h\"\ngrowth_factor = 100.0\ngroup_wait = \"500ms\"\nescalate_after = \"2s\"\n\n\
         [[alerts.webhook]]\nurl = \"{}\"\n\n\
         [[alerts.escalation]]\nurl = \"{}\"\nformat = \"slack\"\n",
        hook_url(&first),
        hook_url(&second)
    );
    let _ward = Ward::start(&obs_config(
        &redis,
        port,
        &alerts,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    let poison = vec![("job", "flaky"), ("payload", r#"{"fail":"permanent"}"#)];
    // Dead letters keep coming for 4 s: the alert is never resolved.
    for _ in 0..8 {
        xadd_entries(&redis, std::slice::from_ref(&poison));
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_for(WAIT, "the escalation", || second.received().len() == 1);
    let first_alert: Value = serde_json::from_str(&first.received()[0].body).unwrap();
    assert_eq!(first_alert["escalated"], false, "{first_alert}");
    assert_eq!(
        first.received().len(),
        1,
        "the cooldown holds the first route"
    );
    let chat: Value = serde_json::from_str(&second.received()[0].body).unwrap();
    let text = chat["text"].as_str().unwrap();
    assert!(text.starts_with("ESCALATED, still unresolved: "), "{text}");
    assert!(text.contains("dead letters of job type `flaky`"), "{text}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(second.received().len(), 1, "escalated once per episode");
}

#[test]
fn escalate_after_without_an_escalation_route_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.toml");
    std::fs::write(
        &path,
        "[[queue]]\nname = \"q\"\n\n[alerts]\nescalate_after = \"30m\"\n",
    )
    .unwrap();
    let out = ward(&["config", "check", "--config", &path.display().to_string()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("line 5") && err.contains("escalate_after needs an [[alerts.escalation]]"),
        "{err}"
    );
}
