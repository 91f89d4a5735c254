//! A real Prometheus (Debian's package, like promtool) scraping two real
//! daemons of one queue, asked through its query API what the shipped rules
//! and dashboard ask: series per job type (not per scrape job), and
//! queue-wide gauges counted once however many daemons report them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

use super::observability::get;

const WAIT: Duration = Duration::from_secs(60);

/// A `prometheus` server on a free loopback port, stopped by PID on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `targets` every second as job `ward`.
    fn start(targets: &[u16]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let targets: Vec<String> = targets
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ward\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/setup installs it)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The instant query's result vector, as (labels, value) pairs.
    fn query(&self, promql: &str) -> Vec<(serde_json::Map<String, Value>, f64)> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let Some((200, body)) = get(self.port, &path) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let labels = s["metric"].as_object().cloned().unwrap_or_default();
                        let value = s["value"][1]
                            .as_str()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or(f64::NAN);
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of the one series whose label `name` is `value`.
    fn value_where(&self, promql: &str, name: &str, value: &str) -> Option<f64> {
        self.query(promql)
            .into_iter()
            .find(|(l, _)| l.get(name).and_then(Value::as_str) == Some(value))
            .map(|(_, v)| v)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s` for a URL query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first query of the dashboard's panel titled `title`.
fn panel_expr(title: &str) -> String {
    fn find(panels: &Value, title: &str) -> Option<String> {
        panels.as_array()?.iter().find_map(|p| {
            if p["title"] == title {
                p["targets"][0]["expr"].as_str().map(str::to_string)
            } else {
                find(&p["panels"], title)
            }
        })
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("config/grafana/ward-dashboard.json")).unwrap(),
    )
    .unwrap();
    find(&dash["panels"], title).unwrap_or_else(|| panic!("no dashboard panel `{title}`"))
}

#[test]
fn a_real_prometheus_sees_job_types_and_counts_queue_gauges_once_across_two_daemons() {
    let redis = Redis::start();
    let jobs = job("noop", "noop", "") + &job("flaky", "flaky", "");
    let ports = [free_port(), free_port()];
    let daemons: Vec<Ward> = ports
        .iter()
        .map(|p| {
            let top =
                format!("[metrics]\nlisten = \"127.0.0.1:{p}\"\nsample_interval = \"200ms\"\n");
            Ward::start(&config_top(
                &redis,
                &top,
                "concurrency = 4",
                FAST_RETRY,
                &jobs,
            ))
            .ready()
        })
        .collect();
    let ok: Vec<String> = (0..6).map(|_| xadd(&redis, "noop", "{}", &[])).collect();
    let dead: Vec<String> = (0..2)
        .map(|_| xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]))
        .collect();
    for id in &ok {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    for id in &dead {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "dead");
    }

    let prom = Prometheus::start(&ports);
    wait_for(
        WAIT,
        "Prometheus to scrape both daemons and see every outcome",
        || {
            prom.query("up{job=\"ward\"} == 1").len() == 2
                && prom.value_where(
                    "sum by (job_type) (ward_jobs_total{outcome=\"succeeded\"})",
                    "job_type",
                    "noop",
                ) == Some(6.0)
                && prom.value_where(
                    "max by (queue) (ward_queue_depth{state=\"dead\"})",
                    "queue",
                    "q",
                ) == Some(2.0)
        },
    );
    // Per job type, never relabelled: the scrape job keeps `job`.
    assert!(prom.query("ward_jobs_total{exported_job!=\"\"}").is_empty());
    assert_eq!(
        prom.value_where(
            "sum by (job_type) (ward_dead_letters_total{reason=\"permanent\"})",
            "job_type",
            "flaky"
        ),
        Some(2.0)
    );
    // Both daemons report the queue's two dead letters: a sum would say 4.
    assert_eq!(
        prom.value_where(
            "sum by (queue) (ward_queue_depth{state=\"dead\"})",
            "queue",
            "q"
        ),
        Some(4.0)
    );
    // The shipped rule's own expression, as Prometheus evaluates it.
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace().join("config/prometheus/ward-alerts.yml")).unwrap(),
    )
    .unwrap();
    let rising = rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "WardDeadLettersRising")
        .unwrap()["expr"]
        .as_str()
        .unwrap()
        .to_string();
    // Dead letters that happen while Prometheus watches (the rule looks at
    // the increase over 15 minutes).
    for _ in 0..2 {
        let id = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]);
        assert_eq!(wait_final(&redis, &id, WAIT)["state"], "dead");
    }
    wait_for(
        WAIT,
        "the rule's expression to see the dead letters by job type",
        || {
            prom.query(&rising).iter().any(|(l, v)| {
                l.get("job_type").and_then(Value::as_str) == Some("flaky")
                    && l.get("reason").and_then(Value::as_str) == Some("permanent")
                    && *v > 0.0
            })
        },
    );
    // The panels added with the capacity, wait, enqueue and pause metrics,
    // by their own expressions: two slow jobs hold 2 of the fleet's 8
    // slots while Prometheus watches, and job type noop is paused.
    let panel = |title: &str| {
        panel_expr(title)
            .replace("$__rate_interval", "1m")
            .replace("$queue", ".*")
            .replace("$job_type", ".*")
    };
    let slow: Vec<String> = (0..2)
        .map(|_| xadd(&redis, "flaky", r#"{"sleep_ms":10000,"times":0}"#, &[]))
        .collect();
    let url = redis.url();
    let paused = ward(&[
        "pause",
        "q",
        "--job",
        "noop",
        "--note",
        "panel check",
        "--redis",
        &url,
    ]);
    assert!(paused.status.success(), "{paused:?}");
    let utilisation = panel("Utilisation by queue");
    wait_for(WAIT, "utilisation 2 of 8 slots, and noop paused", || {
        prom.value_where(&utilisation, "queue", "q") == Some(0.25)
            && prom.query(&panel("Paused")).iter().any(|(l, v)| {
                l.get("job_type").and_then(Value::as_str) == Some("noop") && *v == 1.0
            })
    });
    assert_eq!(
        prom.value_where("sum by (queue) (ward_capacity)", "queue", "q"),
        Some(8.0),
        "4 slots on each of two daemons"
    );
    // The whole queue is not paused; `*` reads 0 from both daemons, once.
    let whole = prom
        .query(&panel("Paused"))
        .into_iter()
        .filter(|(l, _)| l.get("job_type").and_then(Value::as_str) == Some("*"))
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    assert_eq!(whole, [0.0]);
    // Enqueued: every job once across the two daemons (6 noop; 4 flaky
    // dead and the 2 slow ones), whichever daemon read it; the panel's rate
    // sees the jobs enqueued while Prometheus watched.
    assert_eq!(
        prom.value_where(
            "sum by (job_type) (ward_jobs_enqueued_total)",
            "job_type",
            "noop"
        ),
        Some(6.0)
    );
    assert_eq!(
        prom.value_where(
            "sum by (job_type) (ward_jobs_enqueued_total)",
            "job_type",
            "flaky"
        ),
        Some(6.0)
    );
    assert!(
        prom.value_where(&panel("Enqueued by job type"), "job_type", "flaky")
            .is_some_and(|r| r > 0.0),
        "{:?}",
        prom.query(&panel("Enqueued by job type"))
    );
    // Wait before the first attempt: one observation per job, per job type.
    assert_eq!(
        prom.value_where(
            "sum by (job_type) (ward_job_wait_seconds_count)",
            "job_type",
            "noop"
        ),
        Some(6.0)
    );
    // An attempt's wait is recorded as it ends: once the slow ones did,
    // the panel's p95 for flaky is a number (noop, idle meanwhile, has none).
    for id in &slow {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    let wait = panel("Wait before the first attempt by job type (p95)");
    wait_for(WAIT, "the wait panel to show flaky's p95", || {
        prom.value_where(&wait, "job_type", "flaky")
            .is_some_and(|p95| p95.is_finite() && p95 >= 0.0)
    });

    // Every expression of the shipped rules and dashboard is valid PromQL
    // to a real Prometheus, and each that groups by job type answers per
    // job type (the dashboard's variables filled in as "all").
    for (name, expr) in super::observability::shipped_exprs() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$queue", ".*")
            .replace("$job_type", ".*");
        if expr.starts_with("label_values") {
            continue;
        }
        let path = format!("/api/v1/query?query={}", encode(&expr));
        let (status, body) = get(prom.port, &path).unwrap();
        assert_eq!(status, 200, "{name}: {expr}: {body}");
        if expr.contains("by (queue, job_type") || expr.contains("by (job_type") {
            for (labels, _) in prom.query(&expr) {
                assert!(
                    labels.contains_key("job_type"),
                    "{name}: {expr}: {labels:?}"
                );
            }
        }
    }
    drop(daemons);
}
