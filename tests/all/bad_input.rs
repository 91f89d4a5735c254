//! Bad input gets a clear error: the message names the file (and line or
//! key) and what would be right, and `ward` exits non-zero.

use std::path::Path;
use std::time::Duration;

use ward_testkit::*;

fn write(dir: &Path, name: &str, text: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn run_fails(config: &str) -> String {
    let out = ward(&["run", "--config", config]);
    assert!(!out.status.success(), "ward run should fail for {config}");
    stderr(&out)
}

#[test]
fn a_missing_config_is_named() {
    let err = run_fails("/nonexistent/ward.toml");
    assert!(
        err.contains("cannot read config file /nonexistent/ward.toml"),
        "{err}"
    );
}

#[test]
fn a_toml_syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "ward.toml",
        b"[redis]\nurl = \"redis://127.0.0.1:1\"\n[[queue]\nname = \"q\"\n",
    );
    let err = run_fails(&cfg);
    assert!(err.contains(&format!("{cfg}:3:")), "{err}");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "ward.toml",
        b"[[queue]]\nname = \"q\"\nconcurency = 3\n",
    );
    let err = run_fails(&cfg);
    assert!(err.contains(&format!("{cfg}:3:")), "{err}");
    assert!(
        err.contains("unknown field `concurency`") && err.contains("concurrency"),
        "{err}"
    );
}

#[test]
fn a_plugin_path_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "ward.toml",
        b"[[queue]]\nname = \"q\"\n\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"plugins/nope.wasm\"\n",
    );
    let err = run_fails(&cfg);
    let expected = dir.path().join("plugins/nope.wasm").display().to_string();
    assert!(err.contains(&expected), "names the resolved path: {err}");
    assert!(err.contains("line 7"), "{err}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(dir.path(), "garbage.wasm", b"this is not wasm");
    // A valid core module, but not a component.
    let core = write(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    for plugin in [&garbage, &core] {
        let cfg = write(
            dir.path(),
            "ward.toml",
            format!("[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"{plugin}\"\n{METRICS_ANY_PORT}").as_bytes(),
        );
        let err = run_fails(&cfg);
        assert!(
            err.contains(plugin.as_str()) && err.contains("not a WebAssembly component"),
            "{err}"
        );
    }
}

#[test]
fn a_component_of_another_world_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest valid component: no exports at all, so no `handle`.
    let empty = write(dir.path(), "empty.wasm", b"\0asm\x0d\0\x01\0");
    let cfg = write(
        dir.path(),
        "ward.toml",
        format!(
            "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"{empty}\"\n{METRICS_ANY_PORT}"
        )
        .as_bytes(),
    );
    let err = run_fails(&cfg);
    assert!(
        err.contains(empty.as_str())
            && err.contains("does not fit the ward:plugin/job-plugin world"),
        "{err}"
    );
    assert!(err.contains("handle"), "says what is missing: {err}");
    // `ward config check` says the same without needing Redis.
    let out = ward(&["config", "check", "--config", &cfg]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("job-plugin world"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_check_accepts_a_good_config_and_prints_plugin_digests() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "ward.toml",
        format!(
            "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"{}\"\n",
            plugin("noop").display()
        )
        .as_bytes(),
    );
    let out = ward(&["config", "check", "--config", &cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("q/a") && stdout(&out).contains("sha256"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn unreachable_redis_at_start_is_reported_and_retried_until_it_comes() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{METRICS_ANY_PORT}[redis]\nurl = \"redis://127.0.0.1:{port}\"\n[[queue]]\nname = \"q\"\n{}",
        job("noop", "noop", "")
    );
    let _ = dir;
    let mut ward_proc = Ward::start(&cfg);
    wait_for(
        Duration::from_secs(30),
        "a clear message about Redis",
        || ward_proc.logs().contains("cannot reach Redis"),
    );
    assert!(
        ward_proc.logs().contains(&format!("127.0.0.1:{port}")),
        "names the address"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(ward_proc.is_running(), "keeps retrying instead of exiting");
    // Redis comes up: the daemon connects and runs jobs.
    let redis = Redis::start_on(port);
    let ward_proc = ward_proc.ready();
    let out = ward(&["enqueue", "--redis", &redis.url(), "q", "noop", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = wait_final(&redis, &stdout(&out), Duration::from_secs(30));
    assert_eq!(s["state"], "succeeded");
    drop(ward_proc);
}

#[test]
fn enqueue_to_an_unreachable_redis_fails_clearly() {
    let port = free_port();
    let out = ward(&[
        "enqueue",
        "--redis",
        &format!("redis://127.0.0.1:{port}"),
        "q",
        "a",
        "{}",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("cannot reach Redis at redis://127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}

/// Every duration key, one per line, each set to 300 million years: a value
/// Redis (i64 ms expiries) and tokio (`Instant + Duration`) cannot honour.
/// `config check` must name each key at its line, not accept the file.
#[test]
fn durations_redis_or_tokio_cannot_represent_are_refused_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "\"300000000y\"";
    let lines = [
        "[[queue]]".to_string(),
        "name = \"q\"".into(),
        format!("lease = {huge}"),
        format!("succeeded_ttl = {huge}"),
        format!("dead_max_age = {huge}"),
        format!("dead_trim_interval = {huge}"),
        "dead_payload_max = 9223372036854775807".into(),
        "[[job]]".into(),
        "name = \"a\"".into(),
        "queue = \"q\"".into(),
        format!("plugin = \"{}\"", plugin("noop").display()),
        format!("timeout = {huge}"),
        format!("idempotency_ttl = {huge}"),
        format!("http = {{ allow = [\"example.com:443\"], timeout = {huge} }}"),
        "[defaults.retry]".into(),
        format!("max_elapsed = {huge}"),
        format!("initial_delay = {huge}"),
        format!("max_delay = {huge}"),
        format!("recoverable_initial_delay = {huge}"),
        "[metrics]".into(),
        format!("sample_interval = {huge}"),
        "[alerts]".into(),
        format!("window = {huge}"),
        format!("cooldown = {huge}"),
        format!("group_wait = {huge}"),
    ];
    let cfg = write(dir.path(), "ward.toml", lines.join("\n").as_bytes());
    let out = ward(&["config", "check", "--config", &cfg]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&cfg), "names the file: {err}");
    for (i, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !line.contains("300000000y") && key != "dead_payload_max" {
            continue;
        }
        let key = if key == "http" { "http.timeout" } else { key };
        let at = format!("line {}: ", i + 1);
        assert!(
            err.lines().any(|l| l.contains(&at) && l.contains(key)),
            "`{key}` is named at line {}: {err}",
            i + 1
        );
    }
    // Breaker periods have no span of their own: named at their table.
    let cfg = write(
        dir.path(),
        "breaker.toml",
        format!(
            "[[queue]]\nname = \"q\"\n[defaults.breaker]\nwindow = {huge}\nopen_for = {huge}\n"
        )
        .as_bytes(),
    );
    let err = stderr(&ward(&["config", "check", "--config", &cfg]));
    for key in ["window", "open_for"] {
        assert!(
            err.lines()
                .any(|l| l.contains("line 3: ") && l.contains(key)),
            "{key}: {err}"
        );
    }
    // The bound itself is accepted: ten years is a sensible idempotency TTL.
    let cfg = write(
        dir.path(),
        "fine.toml",
        format!(
            "[[queue]]\nname = \"q\"\ndead_max_age = \"3650d\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"{}\"\nidempotency_ttl = \"3650d\"\n",
            plugin("noop").display()
        )
        .as_bytes(),
    );
    let out = ward(&["config", "check", "--config", &cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `/dev/null` and `.` exist, but are no plugin: the message says what they
/// are instead of claiming they do not exist (config check and plugin check).
#[test]
fn a_plugin_path_that_is_not_a_regular_file_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    for (plugin, what) in [("/dev/null", "not a regular file"), (".", "is a directory")] {
        let cfg = write(
            dir.path(),
            "ward.toml",
            format!("[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"{plugin}\"\n")
                .as_bytes(),
        );
        let out = ward(&["config", "check", "--config", &cfg]);
        assert!(!out.status.success(), "{plugin}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("line 6") && err.contains(what),
            "{plugin}: {err}"
        );
        assert!(!err.contains("does not exist"), "{plugin}: {err}");
        let out = ward(&["plugin", "check", plugin]);
        assert!(!out.status.success(), "{plugin}: {}", stdout(&out));
        assert!(stderr(&out).contains(what), "{plugin}: {}", stderr(&out));
    }
}
