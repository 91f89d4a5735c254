//! `ward job list` and `GET /v1/queues/{queue}/jobs`: the jobs waiting or
//! running, by job type, state, time and correlation field, read page by
//! page (no daemon needed: the jobs stay where they are).

use ward_testkit::*;

use super::admin::client::{AdminProc, VIEWER, get_ok, request};

fn list(redis: &Redis, args: &[&str]) -> serde_json::Value {
    let url = redis.url();
    let mut all = vec!["job", "list", "--redis", url.as_str(), "q", "--json"];
    all.extend_from_slice(args);
    let out = ward(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(found: &serde_json::Value) -> Vec<String> {
    found["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

/// 600 `flaky` jobs for tenants acme and other in turn, 100 `echo` ones
/// for acme, and 3 delayed `flaky` ones: more than one page of each.
fn jobs(redis: &Redis) -> (Vec<String>, Vec<String>) {
    let mut entries = Vec::new();
    for i in 0..600 {
        let tenant = if i % 2 == 0 { "acme" } else { "other" };
        entries.push(vec![
            ("job", "flaky"),
            ("payload", "{}"),
            ("tenant", tenant),
        ]);
    }
    for _ in 0..100 {
        entries.push(vec![("job", "echo"), ("payload", "{}"), ("tenant", "acme")]);
    }
    let queued = xadd_entries(redis, &entries);
    let delayed = (0..3)
        .map(|_| enqueue_with(redis, &["--delay", "1h"], "flaky", "{}"))
        .collect();
    (queued, delayed)
}

#[test]
fn ward_job_list_shows_exactly_the_matching_jobs_and_says_when_there_are_more() {
    let redis = Redis::start();
    let (queued, delayed) = jobs(&redis);
    let acme_flaky: Vec<String> = queued[..600].iter().step_by(2).cloned().collect();

    let found = list(
        &redis,
        &[
            "--job",
            "flaky",
            "--field",
            "tenant=acme",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(ids(&found), acme_flaky, "oldest first, across pages");
    assert_eq!(found["more"], false);
    let first = &found["jobs"][0];
    assert_eq!(
        (
            first["state"].as_str(),
            first["job"].as_str(),
            first["fields"]["tenant"].as_str()
        ),
        (Some("queued"), Some("flaky"), Some("acme")),
        "{first}"
    );
    assert!(first["enqueued_at_ms"].as_u64().is_some(), "{first}");

    let waiting = list(&redis, &["--state", "delayed"]);
    let mut got = ids(&waiting);
    got.sort();
    let mut want = delayed.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(
        waiting["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] == "delayed")
    );

    let some = list(&redis, &["--job", "echo", "--limit", "7"]);
    assert_eq!(ids(&some), queued[600..607].to_vec());
    assert_eq!(some["more"], true, "{some}");

    // Read only: everything is still where it was.
    let xlen: usize = redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(xlen, 700);

    let url = redis.url();
    let text = ward(&[
        "job", "list", "--redis", &url, "q", "--job", "echo", "--limit", "2",
    ]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains(&queued[600]) && text.contains("tenant=acme"),
        "{text}"
    );
    assert!(text.contains("more match"), "{text}");
}

#[test]
fn the_admin_api_lists_jobs_by_the_same_filter() {
    let redis = Redis::start();
    let (queued, _) = jobs(&redis);
    let port = free_port();
    let _api = AdminProc::start(&super::admin::config(&redis, port), port);

    let found = get_ok(
        port,
        "/v1/queues/q/jobs?job=flaky&field.tenant=other&limit=1000",
        VIEWER.2,
    );
    let other: Vec<String> = queued[1..600].iter().step_by(2).cloned().collect();
    assert_eq!(ids(&found), other);
    assert_eq!(found["more"], false);
    let running = get_ok(port, "/v1/queues/q/jobs?state=running", VIEWER.2);
    assert_eq!(
        running["jobs"],
        serde_json::json!([]),
        "no daemon, nothing runs"
    );

    let bad = request(
        port,
        "GET",
        "/v1/queues/q/jobs?state=gone",
        Some(VIEWER.2),
        "",
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("state `gone`"), "{}", bad.text);
    let unknown = request(
        port,
        "GET",
        "/v1/queues/q/jobs?colour=red",
        Some(VIEWER.2),
        "",
    );
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert!(unknown.text.contains("`colour`"), "{}", unknown.text);
}
