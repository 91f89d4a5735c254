//! `POST /v1/queues/{queue}/batches/{id}/pause` and `.../resume`: an
//! operator quarantines a batch and lets it go, on the audit trail under
//! the token's name; a viewer cannot; `GET .../batches/{id}` says paused.

use ward_testkit::*;

use super::client::{AdminProc, OPERATOR, VIEWER, get_ok, request};

#[test]
fn an_operator_pauses_and_resumes_a_batch_through_the_api() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(&super::config(&redis, port), port);
    let post = |path: &str, token: &str, body: &str| request(port, "POST", path, Some(token), body);
    let made = post("/v1/queues/q/batches", OPERATOR.2, r#"{"id":"b1"}"#);
    assert_eq!(made.status, 200, "{}", made.text);

    let path = "/v1/queues/q/batches/b1/pause";
    let viewer = post(path, VIEWER.2, r#"{"note":"x"}"#);
    assert_eq!(viewer.status, 403, "{}", viewer.text);
    let no_note = post(path, OPERATOR.2, "{}");
    assert_eq!(no_note.status, 400, "{}", no_note.text);
    let missing = post(
        "/v1/queues/q/batches/nope/pause",
        OPERATOR.2,
        r#"{"note":"x"}"#,
    );
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(
        get_ok(port, "/v1/queues/q/batches/b1", VIEWER.2)["paused"],
        serde_json::Value::Null
    );

    let past = post(
        path,
        OPERATOR.2,
        r#"{"note":"x","until":"2000-01-01T00:00:00Z"}"#,
    );
    assert_eq!(past.status, 400, "{}", past.text);
    let bad = post(path, OPERATOR.2, r#"{"note":"x","until":"soon"}"#);
    assert_eq!(bad.status, 400, "{}", bad.text);
    let timed = post(path, OPERATOR.2, r#"{"note":"timed","until":"1h"}"#);
    assert_eq!(timed.status, 200, "{}", timed.text);
    let until = timed.body["pause"]["until_ms"].as_u64().expect(&timed.text);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let in_an_hour = now + 3_600_000;
    assert!(until.abs_diff(in_an_hour) < 60_000, "{}", timed.text);

    let a = post(path, OPERATOR.2, r#"{"note":"bad rows"}"#);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["pause"]["by"], OPERATOR.0, "{}", a.text);
    assert_eq!(
        a.body["pause"]["until_ms"],
        serde_json::Value::Null,
        "{}",
        a.text
    );
    let b = get_ok(port, "/v1/queues/q/batches/b1", VIEWER.2);
    assert_eq!(b["paused"]["note"], "bad rows", "{b}");
    assert_eq!(b["running"], 0, "{b}");

    let a = post("/v1/queues/q/batches/b1/resume", OPERATOR.2, "");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["pause"]["note"], "bad rows", "{}", a.text);
    assert_eq!(
        get_ok(port, "/v1/queues/q/batches/b1", VIEWER.2)["paused"],
        serde_json::Value::Null
    );
    let trail: Vec<(String, String)> = audit(&redis)
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["by"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(a, _)| a.starts_with("batch-"))
        .collect();
    assert_eq!(
        trail,
        [
            ("batch-create".to_string(), OPERATOR.0.to_string()),
            // The timed pause, then the one that replaced it.
            ("batch-pause".to_string(), OPERATOR.0.to_string()),
            ("batch-pause".to_string(), OPERATOR.0.to_string()),
            ("batch-resume".to_string(), OPERATOR.0.to_string()),
        ],
        "{trail:?}"
    );
}
