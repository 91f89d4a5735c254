//! The admin HTTP API: served by `ward admin` alone and by `ward run`,
//! tokens and roles (401/403 change nothing), an operator's actions on the
//! audit trail under the token's name, and viewers never seeing a redacted
//! payload field. Real redis-server, real `ward` processes, real HTTP.

mod batch_pause;
pub(crate) mod client;
mod throttle;

use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

use client::{
    AdminProc, OPERATOR, VIEWER, admin_command, admin_table_with, get_ok, request, token_env,
};

const WAIT: Duration = Duration::from_secs(30);
/// A single attempt: the first failure is final.
const ONE_ATTEMPT: &str = "max_attempts = 1\njitter = \"none\"";
/// A payload field the `vault` job type redacts, and its secret value.
const SECRET: &str = "hunter2-admin-s3cret";

/// A config for queue `q` with the `vault` job type (flaky, `password`
/// redacted) and the admin API on `port`.
pub(crate) fn config(redis: &Redis, port: u16) -> String {
    config_with_admin(redis, port, "")
}

/// [`config`] with `admin` keys added to its `[admin]` table.
pub(crate) fn config_with_admin(redis: &Redis, port: u16, admin: &str) -> String {
    let top = format!("{METRICS_ANY_PORT}\n{}", admin_table_with(port, admin));
    ward_testkit::Config::new(&redis.url())
        .top(&top)
        .retry(ONE_ATTEMPT)
        .jobs(&format!(
            "{}\n[[schedule]]\nname = \"nightly\"\ncron = \"0 0 3 1 1 *\"\nqueue = \"q\"\njob = \"vault\"\npayload = '{{\"fail\":\"permanent\"}}'\n[[upstream]]\nname = \"smtp\"\nrate = 100\nconcurrency = 3\n",
            job("vault", "flaky", "redact = [\"password\"]\nupstreams = [\"smtp\"]")
        ))
        .render()
}

/// Jobs that fail permanently at once, dead-lettered by a `ward run`
/// that is stopped before this returns; their ids.
fn dead_lettered(redis: &Redis, cfg: &str, n: usize) -> Vec<String> {
    let daemon = Ward::start_with_env(cfg, &token_env()).ready();
    let payload = format!(r#"{{"fail":"permanent","password":"{SECRET}"}}"#);
    let ids: Vec<String> = (0..n)
        .map(|_| xadd(redis, "vault", &payload, &[]))
        .collect();
    for id in &ids {
        assert_eq!(wait_final(redis, id, WAIT)["state"], "dead");
    }
    assert!(daemon.stop().success());
    ids
}

/// A Redis holding `n` dead letters of `vault` jobs, and `ward admin`
/// serving it on `port`.
struct Setup {
    redis: Redis,
    port: u16,
    ids: Vec<String>,
    /// Kept alive for the test (killed on drop).
    api: AdminProc,
}

fn with_dead_letters(n: usize) -> Setup {
    with_dead_letters_admin(n, "")
}

/// [`with_dead_letters`] with `admin` keys added to `[admin]`.
fn with_dead_letters_admin(n: usize, admin: &str) -> Setup {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config_with_admin(&redis, port, admin);
    let ids = dead_lettered(&redis, &cfg, n);
    let api = AdminProc::start(&cfg, port);
    Setup {
        redis,
        port,
        ids,
        api,
    }
}

fn xlen(redis: &Redis, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query(&mut redis.con()).unwrap()
}

fn record_state(redis: &Redis, id: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg("state")
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn ward_admin_alone_serves_the_api_and_runs_no_job() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(&config(&redis, port), port);
    let id = xadd(&redis, "vault", r#"{"fail":"permanent"}"#, &[]);

    let me = get_ok(port, "/v1/whoami", VIEWER.2);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some(VIEWER.0), Some("viewer"))
    );
    let queues = get_ok(port, "/v1/queues", VIEWER.2);
    assert_eq!(queues[0]["queue"], "q", "{queues}");
    assert_eq!(queues[0]["jobs"]["ready"], 1, "{queues}");
    assert_eq!(
        queues[0]["consumed"], false,
        "no worker in the process: {queues}"
    );
    assert_eq!(queues[0]["job_types"], serde_json::json!(["vault"]));
    // No worker: no group was created, and the job is still queued.
    let job = get_ok(port, &format!("/v1/queues/q/jobs/{id}"), VIEWER.2);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(get_ok(port, "/v1/daemons", VIEWER.2), serde_json::json!([]));

    let missing = request(port, "GET", "/v1/queues/nope", Some(VIEWER.2), "");
    assert_eq!(missing.status, 404);
    assert!(
        missing.body["error"]
            .as_str()
            .unwrap()
            .contains("no queue `nope`"),
        "{}",
        missing.text
    );
    let unknown = request(port, "GET", "/v1/nothing", Some(VIEWER.2), "");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body["error"].is_string(), "{}", unknown.text);

    // Alone, the API has no daemon to reload.
    let reload = request(port, "POST", "/v1/reload", Some(OPERATOR.2), "{}");
    assert_eq!(reload.status, 409, "{}", reload.text);
    assert!(reload.text.contains("ward admin"), "{}", reload.text);
}

#[test]
fn ward_run_serves_the_api_and_lists_itself_with_its_version() {
    let redis = Redis::start();
    let port = free_port();
    let daemon = Ward::start_with_env(&config(&redis, port), &token_env()).ready();
    client::wait_serving(port);

    let id = xadd(&redis, "vault", r#"{"fail":"permanent"}"#, &[]);
    wait_final(&redis, &id, WAIT);
    let queues = get_ok(port, "/v1/queues/q", OPERATOR.2);
    assert_eq!(
        (
            queues["consumed"].as_bool(),
            queues["jobs"]["dead"].as_u64()
        ),
        (Some(true), Some(1))
    );

    let daemons = get_ok(port, "/v1/queues/q/daemons", VIEWER.2);
    let list = daemons.as_array().unwrap();
    assert_eq!(list.len(), 1, "{daemons}");
    assert_eq!(
        list[0]["beat"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{daemons}"
    );
    assert_eq!(list[0]["alive"], true);
    assert_eq!(list[0]["pending"], 0);
    assert!(
        list[0]["name"]
            .as_str()
            .unwrap()
            .contains(&daemon.pid().to_string()),
        "{daemons}"
    );

    let breakers = get_ok(port, "/v1/breakers", VIEWER.2);
    assert_eq!(breakers, serde_json::json!([]));
    let upstreams = get_ok(port, "/v1/queues/q/upstreams", VIEWER.2);
    let line = &upstreams[0];
    assert_eq!(
        (
            upstreams.as_array().map(Vec::len),
            line["upstream"].as_str(),
            line["configured"].as_bool(),
            line["rate"]["rate"].as_u64(),
            line["concurrency"].as_u64(),
            line["in_flight"].as_u64(),
            line["breaker"].as_str(),
        ),
        (
            Some(1),
            Some("smtp"),
            Some(true),
            Some(100),
            Some(3),
            Some(0),
            Some("closed")
        ),
        "{upstreams}"
    );
    assert_eq!(get_ok(port, "/v1/upstreams", VIEWER.2), upstreams);
    // The daemon's shutdown stops the API too.
    assert!(daemon.stop().success());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the API still listens"
    );
}

/// Every endpoint that changes something (for dead letter `id` and queued
/// job `queued`), with a body it would take.
fn actions(id: &str, queued: &str) -> Vec<(String, String)> {
    let note = r#"{"note":"no"}"#.to_string();
    vec![
        (format!("/v1/queues/q/dead/{id}/requeue"), note.clone()),
        (format!("/v1/queues/q/dead/{id}/discard"), note.clone()),
        ("/v1/queues/q/pause".into(), note.clone()),
        ("/v1/queues/q/resume".into(), note.clone()),
        (format!("/v1/queues/q/jobs/{queued}/cancel"), note.clone()),
        (
            "/v1/queues/q/cancel".into(),
            format!(r#"{{"ids":["{queued}"],"note":"no"}}"#),
        ),
        (
            "/v1/queues/q/breakers/smtp/open".into(),
            r#"{"for":"10m","note":"no"}"#.into(),
        ),
        ("/v1/queues/q/breakers/smtp/close".into(), note.clone()),
        ("/v1/schedules/nightly/pause".into(), note.clone()),
        ("/v1/schedules/nightly/resume".into(), note.clone()),
        ("/v1/schedules/nightly/fire".into(), note.clone()),
        ("/v1/reload".into(), note),
        (
            "/v1/queues/q/jobs/cancel".into(),
            r#"{"job":"vault","note":"no"}"#.into(),
        ),
        (
            "/v1/queues/q/dead/requeue".into(),
            r#"{"job":"vault","note":"no"}"#.into(),
        ),
        (
            "/v1/queues/q/dead/discard".into(),
            r#"{"job":"vault","note":"no"}"#.into(),
        ),
    ]
}

#[test]
fn every_action_refuses_a_missing_invalid_or_viewer_token_and_changes_nothing() {
    let Setup {
        redis,
        port,
        ids,
        api: _api,
        // Dozens of wrong tokens from one address: the failed-auth limit
        // (tests/all/admin/throttle.rs) would turn them into 429s.
    } = with_dead_letters_admin(1, "failed_auth_limit = 0");
    let id = &ids[0];

    let queued = xadd(&redis, "vault", r#"{"fail":"permanent"}"#, &[]);
    for (path, body) in actions(id, &queued) {
        for (token, status, says) in [
            (None, 401, "no token"),
            (Some("not-a-token"), 401, "invalid token"),
            (Some(OPERATOR.2.trim_end_matches('e')), 401, "invalid token"),
            (Some(VIEWER.2), 403, "viewer role"),
        ] {
            let a = request(port, "POST", &path, token, &body);
            assert_eq!(a.status, status, "POST {path} with {token:?}: {}", a.text);
            let error = a.body["error"]
                .as_str()
                .unwrap_or_else(|| panic!("no JSON error: {}", a.text));
            assert!(error.contains(says), "POST {path} with {token:?}: {error}");
        }
    }
    // Nothing changed: the dead letter is there, the job still dead, the
    // queued job still queued (no record, no cancel), no pause, no
    // breaker, no audit entry.
    assert_eq!(xlen(&redis, "ward:{q}:dead"), 1);
    assert_eq!(record_state(&redis, id).as_deref(), Some("dead"));
    assert_eq!(xlen(&redis, "ward:{q}:jobs"), 1, "only the queued job");
    assert_eq!(record_state(&redis, &queued), None);
    assert_eq!(xlen(&redis, "ward:audit"), 0);
    let touched: u64 = redis::cmd("EXISTS")
        .arg("ward:{q}:breakers")
        .arg("ward:{q}:breaker:smtp")
        .arg("ward:{q}:paused")
        .arg("ward:{q}:held")
        .arg("ward:{q}:cancels")
        .arg("ward:{q}:schedule:nightly")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(
        touched, 0,
        "no breaker forced, no pause, no cancel, no schedule paused or fired"
    );
    let job = get_ok(port, &format!("/v1/queues/q/jobs/{queued}"), VIEWER.2);
    assert_eq!(job["state"], "queued", "{job}");
    // Reads need a token as well.
    assert_eq!(request(port, "GET", "/v1/queues", None, "").status, 401);
}

#[test]
fn an_operators_requeue_and_discard_each_leave_one_audit_entry_named_for_the_token() {
    let Setup {
        redis,
        port,
        ids,
        api: _api,
    } = with_dead_letters(2);

    let path = format!("/v1/queues/q/dead/{}/requeue", ids[0]);
    let a = request(
        port,
        "POST",
        &path,
        Some(OPERATOR.2),
        r#"{"note":"upstream fixed"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (a.body["action"].as_str(), a.body["acted"].as_u64()),
        (Some("requeue"), Some(1)),
        "{}",
        a.text
    );
    assert!(a.body["audit_id"].is_string(), "{}", a.text);
    assert_eq!(
        xlen(&redis, "ward:{q}:jobs"),
        1,
        "the requeued job waits to run"
    );
    assert_eq!(record_state(&redis, &ids[0]).as_deref(), Some("queued"));

    let path = format!("/v1/queues/q/dead/{}/discard", ids[1]);
    let a = request(port, "POST", &path, Some(OPERATOR.2), "");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(xlen(&redis, "ward:{q}:dead"), 0);

    // Acting again on what is no longer dead: 404, nothing recorded.
    let again = request(port, "POST", &path, Some(OPERATOR.2), "");
    assert_eq!(again.status, 404, "{}", again.text);

    let trail = audit(&redis);
    assert_eq!(trail.len(), 2, "{trail:#?}");
    for (e, (action, id)) in trail
        .iter()
        .zip([("requeue", &ids[0]), ("discard", &ids[1])])
    {
        assert_eq!(e["by"], OPERATOR.0, "{e}");
        assert_eq!(e["via"], "api");
        assert_eq!(e["action"], action);
        assert_eq!(e["target"], id.as_str());
        assert_eq!(e["count"], 1);
    }
    assert_eq!(trail[0]["note"], "upstream fixed");
    // The API reads the same trail.
    let read = get_ok(port, "/v1/audit", VIEWER.2);
    assert_eq!(read.as_array().map(Vec::len), Some(2), "{read}");
}

#[test]
fn an_operators_bulk_requeue_by_filter_counts_first_and_acts_on_the_matching_ones() {
    let Setup {
        redis,
        port,
        ids,
        api: _api,
    } = with_dead_letters(2);
    let path = "/v1/queues/q/dead/requeue";
    let post = |body: &str| request(port, "POST", path, Some(OPERATOR.2), body);

    let unfiltered = post(r#"{"note":"all"}"#);
    assert_eq!(unfiltered.status, 400, "{}", unfiltered.text);
    let dry = post(r#"{"job":"vault","dry_run":true}"#);
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(
        (dry.body["matched"].as_u64(), dry.body["acted"].as_u64()),
        (Some(2), Some(0)),
        "{}",
        dry.text
    );
    assert_eq!(
        xlen(&redis, "ward:{q}:dead"),
        2,
        "a dry run changes nothing"
    );
    let none = post(r#"{"job":"other","note":"x"}"#);
    assert_eq!(none.body["acted"], 0, "{}", none.text);
    let done = post(r#"{"job":"vault","reason":"permanent","note":"bulk fix"}"#);
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["acted"], 2, "{}", done.text);
    assert_eq!(xlen(&redis, "ward:{q}:dead"), 0);
    for id in &ids {
        assert_eq!(record_state(&redis, id).as_deref(), Some("queued"));
    }
    let trail = audit(&redis);
    let last = trail.last().unwrap();
    assert_eq!(
        (
            last["action"].as_str(),
            last["by"].as_str(),
            last["count"].as_u64()
        ),
        (Some("requeue"), Some(OPERATOR.0), Some(2)),
        "{trail:#?}"
    );
}

#[test]
fn an_operator_forces_a_breaker_open_and_closed_on_the_audit_trail() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(&config(&redis, port), port);
    let open = "/v1/queues/q/breakers/smtp/open";

    let bad = request(
        port,
        "POST",
        open,
        Some(OPERATOR.2),
        r#"{"for":"soon","note":"x"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    let no_note = request(port, "POST", open, Some(OPERATOR.2), r#"{"for":"10m"}"#);
    assert_eq!(
        no_note.status, 400,
        "the note is required: {}",
        no_note.text
    );

    let a = request(
        port,
        "POST",
        open,
        Some(OPERATOR.2),
        r#"{"for":"10m","note":"smtp down"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (a.body["state"].as_str(), a.body["was_open"].as_bool()),
        (Some("open"), Some(false))
    );
    let listed = get_ok(port, "/v1/queues/q/breakers", VIEWER.2);
    assert_eq!(listed[0]["upstream"], "smtp", "{listed}");
    assert_eq!(listed[0]["state"], "open", "{listed}");

    let close = "/v1/queues/q/breakers/smtp/close";
    let a = request(
        port,
        "POST",
        close,
        Some(OPERATOR.2),
        r#"{"note":"smtp back"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (a.body["state"].as_str(), a.body["was_open"].as_bool()),
        (Some("closed"), Some(true))
    );

    let trail = audit(&redis);
    let seen: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["by"].as_str().unwrap(),
                e["via"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("breaker-open", OPERATOR.0, "api"),
            ("breaker-close", OPERATOR.0, "api")
        ],
        "one entry per action, none for the refused ones: {trail:#?}"
    );
}

#[test]
fn an_operator_pauses_resumes_cancels_and_steers_schedules_each_on_the_audit_trail() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(&config(&redis, port), port);
    let post = |path: &str, body: &str| request(port, "POST", path, Some(OPERATOR.2), body);

    let no_note = post("/v1/queues/q/pause", r#"{"job":"vault"}"#);
    assert_eq!(no_note.status, 400, "{}", no_note.text);
    let a = post(
        "/v1/queues/q/pause",
        r#"{"job":"vault","note":"bad deploy","until":"1h"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["target"], "vault");
    assert_eq!(a.body["pause"]["by"], OPERATOR.0);
    let q = get_ok(port, "/v1/queues/q", VIEWER.2);
    assert_eq!(q["paused"][0]["target"], "vault", "{q}");
    assert_eq!(q["paused"][0]["note"], "bad deploy", "{q}");
    let pauses = get_ok(port, "/v1/queues/q/pauses", VIEWER.2);
    assert_eq!(
        pauses["pauses"].as_array().map(Vec::len),
        Some(1),
        "{pauses}"
    );
    let a = post("/v1/queues/q/resume", r#"{"job":"vault"}"#);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["removed"]["note"], "bad deploy", "{}", a.text);
    assert_eq!(
        get_ok(port, "/v1/queues/q", VIEWER.2)["paused"],
        serde_json::json!([])
    );

    // No worker runs here: the job waits, and a cancel means it never runs.
    let id = xadd(&redis, "vault", r#"{"fail":"permanent"}"#, &[]);
    let no_note = post(&format!("/v1/queues/q/jobs/{id}/cancel"), "");
    assert_eq!(no_note.status, 400, "{}", no_note.text);
    let a = post(
        &format!("/v1/queues/q/jobs/{id}/cancel"),
        r#"{"note":"customer left"}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["jobs"][0]["result"], "cancelled", "{}", a.text);
    assert_eq!(record_state(&redis, &id).as_deref(), Some("cancelled"));
    let missing = post("/v1/queues/q/jobs/999-0/cancel", r#"{"note":"x"}"#);
    assert_eq!(missing.status, 404, "{}", missing.text);

    // A schedule: paused, resumed, fired now.
    let a = post("/v1/schedules/nightly/pause", r#"{"note":"holidays"}"#);
    assert_eq!(
        (a.status, a.body["changed"].as_bool()),
        (200, Some(true)),
        "{}",
        a.text
    );
    let listed = get_ok(port, "/v1/schedules/nightly", VIEWER.2);
    assert_eq!(listed["paused"]["by"], OPERATOR.0, "{listed}");
    let a = post("/v1/schedules/nightly/resume", r#"{"note":"back"}"#);
    assert_eq!(a.status, 200, "{}", a.text);
    let before = xlen(&redis, "ward:{q}:jobs");
    let a = post("/v1/schedules/nightly/fire", r#"{"note":"rerun for ana"}"#);
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.body["job_id"].is_string(), "{}", a.text);
    assert_eq!(xlen(&redis, "ward:{q}:jobs"), before + 1);
    let unknown = post("/v1/schedules/nope/fire", r#"{"note":"x"}"#);
    assert_eq!(unknown.status, 404, "{}", unknown.text);

    let trail = audit(&redis);
    let seen: Vec<(&str, &str)> = trail
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("pause", OPERATOR.0),
            ("resume", OPERATOR.0),
            ("cancel", OPERATOR.0),
            ("cancel", OPERATOR.0),
            ("schedule-pause", OPERATOR.0),
            ("schedule-resume", OPERATOR.0),
            ("schedule-fire", OPERATOR.0),
        ],
        "one entry per action that ran, none for the refused ones: {trail:#?}"
    );

    // Every waiting job of a type, by filter: counted first, then cancelled.
    let waiting = xadd(
        &redis,
        "vault",
        r#"{"fail":"permanent"}"#,
        &[("order_id", "o-9")],
    );
    let bulk = "/v1/queues/q/jobs/cancel";
    let dry = post(bulk, r#"{"fields":{"order_id":"o-9"},"dry_run":true}"#);
    assert_eq!(dry.body["matched"], 1, "{}", dry.text);
    assert_eq!(
        record_state(&redis, &waiting),
        None,
        "a dry run changes nothing"
    );
    let done = post(
        bulk,
        r#"{"fields":{"order_id":"o-9"},"note":"order withdrawn"}"#,
    );
    assert_eq!(done.body["cancelled"], 1, "{}", done.text);
    assert_eq!(record_state(&redis, &waiting).as_deref(), Some("cancelled"));
}

#[test]
fn a_viewer_never_sees_a_redacted_field_an_operator_does() {
    let Setup {
        redis: _redis,
        port,
        ids,
        api: _api,
    } = with_dead_letters(1);
    let id = &ids[0];

    let paths = [
        "/v1/queues/q/dead".to_string(),
        format!("/v1/queues/q/dead/{id}"),
        format!("/v1/queues/q/jobs/{id}"),
    ];
    for path in &paths {
        let a = request(port, "GET", path, Some(VIEWER.2), "");
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert!(
            !a.text.contains(SECRET),
            "a viewer saw the secret at {path}: {}",
            a.text
        );
        assert!(a.text.contains("[redacted]"), "{path}: {}", a.text);
    }
    let dead = get_ok(port, "/v1/queues/q/dead", VIEWER.2);
    let shown: Value = serde_json::from_str(dead[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(shown["password"], "[redacted]");
    assert_eq!(shown["fail"], "permanent", "only the named field goes");

    // An operator sees the job's payload as enqueued.
    let job = get_ok(port, &format!("/v1/queues/q/jobs/{id}"), OPERATOR.2);
    assert!(job["payload"].as_str().unwrap().contains(SECRET), "{job}");
}

#[test]
fn a_token_written_in_clear_is_refused_with_file_and_line() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port).replace(
        &format!("secret = \"{}\"", OPERATOR.1),
        "value = \"op-3f9a-token-value\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.toml");
    std::fs::write(&path, &cfg).unwrap();
    let line = cfg.lines().position(|l| l.starts_with("value = ")).unwrap() + 1;
    for out in [
        admin_command(&path).output().unwrap(),
        ward(&["config", "check", "--config", path.to_str().unwrap()]),
    ] {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(&format!("line {line}:")), "{err}");
        assert!(
            err.contains("must not be written in the config file"),
            "{err}"
        );
        assert!(
            !err.contains("op-3f9a-token-value"),
            "the message repeats the token: {err}"
        );
    }
}

/// Starts `ward admin` on a config with the two test tokens, their
/// secrets set as `env` says (`None`: unset), and returns what it said
/// on stderr as it refused to start.
fn refused_start(env: &[(&str, Option<&str>)]) -> String {
    let redis = Redis::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.toml");
    std::fs::write(&path, config(&redis, port)).unwrap();
    let mut cmd = admin_command(&path);
    cmd.envs(token_env());
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    stderr(&out)
}

#[test]
fn a_token_whose_secret_is_not_set_stops_the_start() {
    let err = refused_start(&[(VIEWER.1, None), (OPERATOR.1, None)]);
    assert!(
        err.contains(OPERATOR.1) && err.contains("CREDENTIALS_DIRECTORY"),
        "{err}"
    );
}

#[test]
fn a_token_too_short_to_resist_guessing_stops_the_start() {
    let err = refused_start(&[(VIEWER.1, Some("letmein"))]);
    assert!(
        err.contains(&format!("[[admin.token]] `{}`", VIEWER.0))
            && err.contains("7 characters, fewer than the 16 a token needs"),
        "{err}"
    );
}
