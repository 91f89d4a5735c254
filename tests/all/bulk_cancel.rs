//! `ward job cancel --all`: every job matching a filter, counted first with
//! --dry-run, acted on page by page, safe to run again.

use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

fn cancel_all(redis: &Redis, args: &[&str]) -> serde_json::Value {
    let url = redis.url();
    let mut all = vec![
        "job",
        "cancel",
        "--redis",
        url.as_str(),
        "q",
        "--all",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = ward(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn xlen(redis: &Redis) -> usize {
    redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn cancel_all_counts_first_then_cancels_exactly_the_matches_and_a_rerun_changes_nothing() {
    let redis = Redis::start();
    // No daemon yet: every job waits in the stream or the delayed set.
    let mut entries = Vec::new();
    for i in 0..2000 {
        let tenant = if i % 2 == 0 { "acme" } else { "other" };
        entries.push(vec![
            ("job", "flaky"),
            ("payload", r#"{"times":0}"#),
            ("tenant", tenant),
        ]);
    }
    for _ in 0..300 {
        entries.push(vec![("job", "echo"), ("payload", "x"), ("tenant", "acme")]);
    }
    let ids = xadd_entries(&redis, &entries);
    let delayed: Vec<String> = (0..20)
        .map(|_| enqueue_with(&redis, &["--delay", "1h"], "flaky", "{}"))
        .collect();
    let filter = [
        "--job",
        "flaky",
        "--field",
        "tenant=acme",
        "--note",
        "acme left",
    ];

    let dry = cancel_all(&redis, &[&filter[..], &["--dry-run"]].concat());
    assert_eq!(dry["matched"], 1000, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["sample"]["queued"].as_array().unwrap().len(),
        10,
        "{dry}"
    );
    assert_eq!(xlen(&redis), 2300, "a dry run changes nothing");
    assert!(audit(&redis).is_empty(), "a dry run is not an action");

    let done = cancel_all(&redis, &filter);
    assert_eq!(
        (done["matched"].as_u64(), done["cancelled"].as_u64()),
        (Some(1000), Some(1000)),
        "{done}"
    );
    assert_eq!(
        xlen(&redis),
        1300,
        "the matching entries are gone from the stream"
    );
    let again = cancel_all(&redis, &filter);
    assert_eq!(again["matched"], 0, "a rerun finds nothing left: {again}");

    // The delayed ones, by state.
    let by_state = cancel_all(
        &redis,
        &["--job", "flaky", "--state", "delayed", "--note", "no more"],
    );
    assert_eq!(by_state["cancelled"], 20, "{by_state}");

    let trail = audit(&redis);
    let counts: Vec<u64> = trail.iter().map(|e| e["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [1000, 0, 20], "one entry per run: {trail:?}");
    assert!(
        trail[0]["target"].as_str().unwrap().contains("tenant=acme"),
        "{trail:?}"
    );

    // Only what did not match runs.
    let _ward = Ward::start(&config(
        &redis,
        16,
        &(job("flaky", "flaky", "") + &job("echo", "echo", "")),
    ))
    .ready();
    for (i, id) in ids.iter().enumerate().step_by(97) {
        let s = if i < 2000 && i % 2 == 0 {
            show(&redis, id)
        } else {
            wait_final(&redis, id, WAIT)
        };
        let want = if i < 2000 && i % 2 == 0 {
            "cancelled"
        } else {
            "succeeded"
        };
        assert_eq!(s["state"], want, "job {i}: {s}");
    }
    for id in delayed.iter().take(3) {
        assert_eq!(show(&redis, id)["state"], "cancelled");
    }
}
