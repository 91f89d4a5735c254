//! Live reload, end to end: a real daemon re-reads its config and plugins
//! on SIGHUP (or `ward reload`). New attempts run the new plugin while an
//! attempt in flight finishes on the one it started with (the digests in
//! the job records show which ran); a broken config is refused with its
//! file and line while the old one keeps serving; a change that needs a
//! restart is named and not applied.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

/// A daemon on queue `q` whose job type `work` runs `plugin_name`, with
/// `top` (besides the metrics table) and `queue` as the queue's settings.
fn config_for(redis: &Redis, top: &str, queue: &str, plugin_name: &str) -> String {
    config_top(
        redis,
        &format!("{METRICS_ANY_PORT}{top}"),
        queue,
        FAST_RETRY,
        &job("work", plugin_name, "timeout = \"60s\""),
    )
}

fn config_path(w: &Ward) -> PathBuf {
    w.dir.path().join("ward.toml")
}

fn hangup(w: &Ward) {
    let ok = Command::new("kill")
        .args(["-HUP", &w.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP failed");
}

/// The log lines with message `message`.
fn lines(w: &Ward, message: &str) -> Vec<Value> {
    w.log_lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(message)))
        .collect()
}

/// Waits until the daemon has logged `n` lines with `message`.
fn wait_logged(w: &Ward, message: &str, n: usize) -> Vec<Value> {
    wait_for(WAIT, &format!("{n} log line(s) `{message}`"), || {
        lines(w, message).len() >= n
    });
    lines(w, message)
}

/// The digest the daemon logged when it compiled `plugin`.
fn digest_of(w: &Ward, plugin: &Path) -> String {
    lines(w, "plugin compiled")
        .iter()
        .find(|l| l["plugin"] == plugin.display().to_string())
        .and_then(|l| l["digest"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            panic!(
                "no `plugin compiled` for {}:\n{}",
                plugin.display(),
                w.logs()
            )
        })
}

#[test]
fn sighup_with_a_new_plugin_runs_new_attempts_on_it_while_one_in_flight_finishes_on_the_old() {
    let redis = Redis::start();
    let w = Ward::start(&config_for(&redis, "", "concurrency = 2", "flaky")).ready();
    let old = digest_of(&w, &plugin("flaky"));
    let slow = enqueue(&redis, "work", r#"{"times":0,"sleep_ms":3000}"#);
    wait_for(WAIT, "the slow attempt to run", || {
        show(&redis, &slow)["state"] == "running"
    });

    std::fs::write(
        config_path(&w),
        config_for(&redis, "", "concurrency = 2", "noop"),
    )
    .unwrap();
    hangup(&w);
    let reloaded = wait_logged(&w, "config reloaded", 1);
    let new = digest_of(&w, &plugin("noop"));
    assert_ne!(old, new);
    let changed = reloaded[0]["changed"].as_str().unwrap_or_default();
    assert!(
        changed.contains(&format!("job `work` in queue `q`: plugin {old} -> {new}")),
        "{}",
        reloaded[0]
    );
    assert_eq!(
        show(&redis, &slow)["state"],
        "running",
        "the reload came before the slow attempt ended"
    );

    let fresh = enqueue(&redis, "work", "{}");
    let fresh = wait_final(&redis, &fresh, WAIT);
    assert_eq!(fresh["state"], "succeeded", "{fresh}");
    assert_eq!(fresh["plugin_digest"], new.as_str(), "{fresh}");
    let slow = wait_final(&redis, &slow, WAIT);
    assert_eq!(slow["state"], "succeeded", "{slow}");
    assert_eq!(slow["plugin_digest"], old.as_str(), "{slow}");
}

#[test]
fn a_broken_config_is_refused_with_its_line_and_the_old_one_keeps_serving() {
    let redis = Redis::start();
    let good = config_for(&redis, "", "concurrency = 2", "noop");
    let w = Ward::start(&good).ready();
    let old = digest_of(&w, &plugin("noop"));

    // A syntax error on line 3.
    std::fs::write(config_path(&w), "[redis]\nurl = \"x\"\nconcurrency = = 3\n").unwrap();
    hangup(&w);
    let refused = wait_logged(&w, "config reload refused", 1);
    let text = refused[0].to_string();
    assert_eq!(refused[0]["level"], "ERROR", "{text}");
    assert!(
        text.contains(&format!("{}:3:", config_path(&w).display())),
        "names the file and line: {text}"
    );

    // A plugin that does not exist.
    let missing = good.replace(
        &plugin("noop").display().to_string(),
        "/nonexistent/gone.wasm",
    );
    std::fs::write(config_path(&w), missing).unwrap();
    hangup(&w);
    let refused = wait_logged(&w, "config reload refused", 2);
    assert!(
        refused[1].to_string().contains("/nonexistent/gone.wasm"),
        "{}",
        refused[1]
    );
    assert!(lines(&w, "config reloaded").is_empty(), "{}", w.logs());

    let id = enqueue(&redis, "work", "{}");
    let done = wait_final(&redis, &id, WAIT);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["plugin_digest"], old.as_str(), "{done}");
}

#[test]
fn a_concurrency_change_is_named_as_needing_a_restart_and_not_applied() {
    let redis = Redis::start();
    let w = Ward::start(&config_for(&redis, "", "concurrency = 1", "flaky")).ready();
    std::fs::write(
        config_path(&w),
        config_for(&redis, "", "concurrency = 4", "flaky"),
    )
    .unwrap();
    hangup(&w);
    let warned = wait_logged(&w, "needs a restart", 1);
    let text = warned[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("queue `q`: concurrency"), "{text}");
    assert_eq!(warned[0]["level"], "WARN", "{}", warned[0]);
    wait_logged(&w, "config reloaded", 1);

    // Still one slot: the two jobs run one after the other.
    let a = enqueue(&redis, "work", r#"{"times":0,"sleep_ms":500}"#);
    let b = enqueue(&redis, "work", r#"{"times":0,"sleep_ms":500}"#);
    let a = wait_final(&redis, &a, WAIT);
    let b = wait_final(&redis, &b, WAIT);
    let (first, second) = if a["first_attempt_at_ms"].as_u64() <= b["first_attempt_at_ms"].as_u64()
    {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        second["first_attempt_at_ms"].as_u64().unwrap()
            >= first["last_attempt_at_ms"].as_u64().unwrap(),
        "the second started only after the first ended: {first} {second}"
    );
}

#[test]
fn ward_reload_finds_the_daemon_by_its_pid_file() {
    let redis = Redis::start();
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("ward.pid");
    let top = format!("[daemon]\npid_file = \"{}\"\n", pid_file.display());
    let w = Ward::start(&config_for(&redis, &top, "concurrency = 1", "flaky")).ready();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        w.pid().to_string()
    );
    std::fs::write(
        config_path(&w),
        config_for(&redis, &top, "concurrency = 1", "noop"),
    )
    .unwrap();
    let cfg = config_path(&w).display().to_string();
    let out = ward(&["reload", "--config", &cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_logged(&w, "config reloaded", 1);
    let id = enqueue(&redis, "work", "{}");
    let done = wait_final(&redis, &id, WAIT);
    assert_eq!(
        done["plugin_digest"],
        digest_of(&w, &plugin("noop")).as_str(),
        "{done}"
    );

    let text = std::fs::read_to_string(config_path(&w)).unwrap();
    w.stop();
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let cfg = pids.path().join("ward.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = ward(&["reload", "--config", &cfg.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is the daemon running?"),
        "{}",
        stderr(&out)
    );
}

/// `ward reload` with an operator token in `WARD_ADMIN_TOKEN`.
fn ward_reload_via_api(cfg: &Path, token: &str) -> std::process::Output {
    ward_command()
        .args([
            "reload",
            "--config",
            &cfg.display().to_string(),
            "--note",
            "new plugin",
        ])
        .env("WARD_ADMIN_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn ward_reload_through_the_admin_api_says_what_it_applied_or_why_it_refused() {
    use super::admin::client::{OPERATOR, VIEWER, admin_table, request, token_env};
    let redis = Redis::start();
    let port = free_port();
    let top = admin_table(port);
    let w = Ward::start_with_env(
        &config_for(&redis, &top, "concurrency = 1", "flaky"),
        &token_env(),
    )
    .ready();
    super::admin::client::wait_serving(port);
    let old = digest_of(&w, &plugin("flaky"));

    std::fs::write(
        config_path(&w),
        config_for(&redis, &top, "concurrency = 1", "noop"),
    )
    .unwrap();
    let out = ward_reload_via_api(&config_path(&w), OPERATOR.2);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let new = digest_of(&w, &plugin("noop"));
    assert!(
        said.contains(&format!("job `work` in queue `q`: plugin {old} -> {new}")),
        "{said}"
    );
    let id = enqueue(&redis, "work", "{}");
    assert_eq!(wait_final(&redis, &id, WAIT)["plugin_digest"], new.as_str());

    // A viewer may not; nothing is reloaded.
    let denied = request(port, "POST", "/v1/reload", Some(VIEWER.2), "{}");
    assert_eq!(denied.status, 403, "{}", denied.text);

    // A plugin that is not a component: the config reads well (the command
    // checks that much itself), the daemon refuses it, saying which, and the
    // old one keeps serving.
    let bad = w.dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not a component").unwrap();
    let text = config_for(&redis, &top, "concurrency = 1", "noop").replace(
        &plugin("noop").display().to_string(),
        &bad.display().to_string(),
    );
    std::fs::write(config_path(&w), text).unwrap();
    let out = ward_reload_via_api(&config_path(&w), OPERATOR.2);
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(why.contains("refused"), "{why}");
    assert!(why.contains(&bad.display().to_string()), "{why}");
    let id = enqueue(&redis, "work", "{}");
    assert_eq!(wait_final(&redis, &id, WAIT)["plugin_digest"], new.as_str());

    // Each reload through the API is on the audit trail, by the token's name.
    let trail = audit(&redis);
    let reloads: Vec<_> = trail.iter().filter(|e| e["action"] == "reload").collect();
    assert_eq!(reloads.len(), 2, "{trail:?}");
    assert!(reloads.iter().all(|e| e["by"] == OPERATOR.0), "{reloads:?}");
    assert_eq!(
        reloads
            .iter()
            .map(|e| e["count"].as_u64())
            .collect::<Vec<_>>(),
        [Some(1), Some(0)],
        "applied, then refused: {reloads:?}"
    );
}
