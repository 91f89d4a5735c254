//! The queue-wide alerts (`queue_wait` over a queue's `max_wait`,
//! `stalled` with work waiting and no outcome recorded) seen by two real
//! daemons of one queue, and sent once for the fleet: each daemon claims
//! the alert in Redis before sending it.

use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

use super::observability::{sample, scrape};

const WAIT: Duration = Duration::from_secs(40);

/// The alerts of `kind` the webhook received, as JSON.
fn alerts_of(hook: &HttpStub, kind: &str) -> Vec<Value> {
    hook.received()
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter(|a| a["kind"] == kind)
        .collect()
}

#[test]
fn a_queue_wait_over_its_promise_and_a_stall_alert_once_for_two_daemons() {
    let redis = Redis::start();
    let hook = HttpStub::statuses(&[]);
    let ports = [free_port(), free_port()];
    // One slot per daemon, and every job sleeps 6 s: the two slots are
    // taken and the other jobs wait, past max_wait (1 s) and, with no
    // outcome recorded meanwhile, past stall_after (2 s).
    let daemons: Vec<Ward> = ports
        .iter()
        .map(|p| {
            let top = format!(
                "[metrics]\nlisten = \"127.0.0.1:{p}\"\nsample_interval = \"200ms\"\n\n\
                 [alerts]\nenvironment = \"test\"\ncooldown = \"1h\"\ngroup_wait = \"300ms\"\n\n\
                 [[alerts.webhook]]\nurl = \"http://127.0.0.1:{}/hook\"\n",
                hook.port
            );
            Ward::start(&config_top(
                &redis,
                &top,
                "concurrency = 1\nmax_wait = \"1s\"\nstall_after = \"2s\"",
                FAST_RETRY,
                &job("flaky", "flaky", ""),
            ))
            .ready()
        })
        .collect();
    let slow = vec![
        ("job", "flaky"),
        ("payload", r#"{"sleep_ms":6000,"times":0}"#),
    ];
    xadd_entries(&redis, &vec![slow; 6]);

    wait_for(WAIT, "a queue_wait and a stalled alert", || {
        !alerts_of(&hook, "queue_wait").is_empty() && !alerts_of(&hook, "stalled").is_empty()
    });
    // Both daemons keep seeing both conditions, sample after sample, until
    // the first jobs end (6 s in): still one alert of each kind.
    wait_for(
        WAIT,
        "both daemons to have seen the conditions and stood down",
        || {
            let deduped: f64 = ports
                .iter()
                .map(|p| {
                    let m = scrape(*p);
                    ["queue_wait", "stalled"]
                        .iter()
                        .map(|k| {
                            sample(
                                &m,
                                "ward_alerts_total",
                                &[("kind", k), ("result", "deduped")],
                            )
                            .unwrap_or(0.0)
                        })
                        .sum::<f64>()
                })
                .sum();
            deduped >= 2.0
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let waits = alerts_of(&hook, "queue_wait");
    let stalls = alerts_of(&hook, "stalled");
    assert_eq!(
        waits.len(),
        1,
        "one queue_wait alert for the fleet: {waits:#?}"
    );
    assert_eq!(
        stalls.len(),
        1,
        "one stalled alert for the fleet: {stalls:#?}"
    );

    // What, where, how many, since when.
    let w = &waits[0];
    assert_eq!(
        (w["queue"].as_str(), w["job"].as_str()),
        (Some("q"), Some("*"))
    );
    assert_eq!(w["environment"], "test");
    let ready = w["count"].as_u64().unwrap();
    assert!((1..=4).contains(&ready), "jobs waiting: {w:#}");
    let summary = w["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("queue `q` waits past its promise: the oldest of"),
        "{summary}"
    );
    assert!(
        summary.contains("over the queue's max_wait of 1s"),
        "{summary}"
    );
    assert!(w["first_at"].as_str().unwrap().starts_with("20"), "{w:#}");
    let s = &stalls[0];
    assert!(
        s["summary"]
            .as_str()
            .unwrap()
            .contains("no outcome recorded by any daemon for 2s or more"),
        "{s:#}"
    );
    // Sent by one daemon, claimed away from the other.
    let sent: f64 = ports
        .iter()
        .map(|p| {
            sample(
                &scrape(*p),
                "ward_alerts_total",
                &[("kind", "queue_wait"), ("result", "sent")],
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(sent, 1.0);
    drop(daemons);
}
