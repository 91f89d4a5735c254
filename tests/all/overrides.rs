//! Operator overrides of circuit breakers: forced open and closed by hand,
//! seen by the daemons, on the audit trail.

use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(20);

/// Long enough for every daemon to re-read its breakers (twice a second).
const BREAKER_REFRESH: Duration = Duration::from_millis(1200);

fn breakers(redis: &Redis, args: &[&str]) -> String {
    let url = redis.url();
    let mut all = vec!["breakers", args[0], "--redis", url.as_str()];
    all.extend_from_slice(&args[1..]);
    let out = ward(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn breaker_state(redis: &Redis) -> Vec<(String, String)> {
    let out = ward(&["breakers", "--redis", &redis.url(), "q", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["upstream"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_breaker_forced_open_holds_jobs_back_and_closing_it_lets_new_ones_run() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(
        &redis,
        4,
        &(job("noop", "noop", "upstreams = [\"mailer\"]") + &job("echo", "echo", "")),
    ))
    .ready();

    let out = breakers(
        &redis,
        &[
            "open",
            "q",
            "mailer",
            "--for",
            "1h",
            "--note",
            "mailer down",
            "--by",
            "ana",
        ],
    );
    assert!(out.contains("is open until"), "{out}");
    assert_eq!(breaker_state(&redis), [("mailer".into(), "open".into())]);
    std::thread::sleep(BREAKER_REFRESH);

    let held = enqueue(&redis, "noop", "{}");
    let other = enqueue(&redis, "echo", "hi");
    assert_eq!(wait_final(&redis, &other, WAIT)["state"], "succeeded");
    wait_for(WAIT, "the job to be held back", || {
        show(&redis, &held)["last_error"]["code"] == "breaker-open"
    });
    let s = show(&redis, &held);
    assert_eq!(s["attempts"], 0, "held back without an attempt: {s}");
    let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut redis.con()).unwrap();
    let due = s["due_at_ms"].as_u64().unwrap();
    assert!(
        due <= secs * 1000 + 32_000,
        "an hour-long opening is looked at again within 30 s: {s}"
    );

    let out = breakers(
        &redis,
        &["close", "q", "mailer", "--note", "mailer is back"],
    );
    assert!(out.contains("is closed"), "{out}");
    assert!(
        breaker_state(&redis).is_empty(),
        "closing forgets the breaker"
    );
    std::thread::sleep(BREAKER_REFRESH);
    let fresh = enqueue(&redis, "noop", "{}");
    let f = wait_final(&redis, &fresh, WAIT);
    assert_eq!(
        (f["state"].as_str(), f["attempts"].as_u64()),
        (Some("succeeded"), Some(1))
    );

    // Closing a closed breaker changes nothing, and says so.
    let out = breakers(&redis, &["close", "q", "mailer", "--note", "again"]);
    assert!(out.contains("was not open"), "{out}");

    let trail: Vec<(String, String, u64)> = audit(&redis)
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = |a: &str, n: u64| (a.to_string(), "upstream mailer".to_string(), n);
    assert_eq!(
        trail,
        [
            want("breaker-open", 1),
            want("breaker-close", 1),
            want("breaker-close", 0)
        ]
    );
    assert_eq!(audit(&redis)[0]["by"], "ana");
    assert_eq!(audit(&redis)[0]["note"], "mailer down");
}
