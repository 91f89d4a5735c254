//! The sandbox holds: hostile plugins (built from `plugins/hostile`) each
//! cost one attempt and end with the limit they hit; capabilities are only
//! what the config grants.

use std::time::{Duration, Instant};

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
const NO_RETRY: &str = "max_attempts = 1";

fn hostile(name: &str, extra: &str) -> String {
    job(name, "hostile", extra)
}

fn dead_with(redis: &Redis, id: &str) -> serde_json::Value {
    let s = wait_final(redis, id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    s
}

#[test]
fn a_memory_bomb_ends_with_memory_and_the_daemon_lives_on() {
    let redis = Redis::start();
    let cfg = config_with(
        &redis,
        2,
        NO_RETRY,
        &hostile("h", "memory_limit = \"32MiB\""),
    );
    let mut ward_proc = Ward::start(&cfg).ready();
    let id = enqueue(&redis, "h", r#"{"do":"alloc_forever"}"#);
    let s = dead_with(&redis, &id);
    assert_eq!(s["last_error"]["class"], "crash", "{s}");
    assert_eq!(s["last_error"]["code"], "memory", "{s}");
    assert!(
        s["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("32 MiB"),
        "{s}"
    );
    let ok = enqueue(&redis, "h", r#"{"do":"alloc","mb":4}"#);
    assert_eq!(
        wait_final(&redis, &ok, WAIT)["state"],
        "succeeded",
        "smaller jobs still fit"
    );
    assert!(ward_proc.is_running());
}

#[test]
fn deep_recursion_ends_with_stack() {
    let redis = Redis::start();
    let _ward = Ward::start(&config_with(&redis, 2, NO_RETRY, &hostile("h", ""))).ready();
    let s = dead_with(&redis, &enqueue(&redis, "h", r#"{"do":"recurse"}"#));
    assert_eq!(s["last_error"]["code"], "stack", "{s}");
    assert_eq!(s["dead_reason"], "crash", "{s}");
}

#[test]
fn a_fuel_limited_loop_ends_with_fuel_long_before_its_deadline() {
    let redis = Redis::start();
    let cfg = config_with(
        &redis,
        2,
        NO_RETRY,
        &hostile("h", "fuel = 20000000\ntimeout = \"60s\""),
    );
    let _ward = Ward::start(&cfg).ready();
    let started = Instant::now();
    let s = dead_with(&redis, &enqueue(&redis, "h", r#"{"do":"spin"}"#));
    assert_eq!(s["last_error"]["code"], "fuel", "{s}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fuel, not the 60 s deadline, ended it"
    );
}

#[test]
fn outbound_http_reaches_only_the_allow_list() {
    let stub = HttpStub::start(vec![(200, String::new(), "hello".into())]);
    let closed = free_port();
    let redis = Redis::start();
    let allow = format!(
        "http = {{ allow = [\"127.0.0.1:{}\"], timeout = \"5s\" }}",
        stub.port
    );
    let ward_proc = Ward::start(&config_with(&redis, 2, NO_RETRY, &hostile("h", &allow))).ready();

    let url = format!("http://127.0.0.1:{}/hook", stub.port);
    let ok = enqueue(
        &redis,
        "h",
        &format!(r#"{{"do":"http","method":"POST","url":"{url}"}}"#),
    );
    let s = wait_final(&redis, &ok, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["result"], "200", "{s}");
    let seen = stub.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].starts_with("POST /hook"), "{}", seen[0]);
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains(&format!("idempotency-key: {ok}")),
        "{}",
        seen[0]
    );

    let refused = enqueue(
        &redis,
        "h",
        &format!(r#"{{"do":"http","url":"http://127.0.0.1:{closed}/"}}"#),
    );
    let s = dead_with(&redis, &refused);
    assert_eq!(s["last_error"]["code"], "http-denied", "{s}");
    assert!(
        s["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied"),
        "{s}"
    );
    wait_for(Duration::from_secs(5), "the refusal in the log", || {
        ward_proc.log_lines().iter().any(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .contains("outbound HTTP refused")
                && l["authority"] == format!("127.0.0.1:{closed}").as_str()
                && l["job_id"] == refused.as_str()
        })
    });
    assert_eq!(stub.requests().len(), 1, "nothing reached the stub");
}

#[test]
fn files_and_environment_are_not_there_inside_the_plugin() {
    let redis = Redis::start();
    let ward_proc = Ward::start_with_env(
        &config_with(&redis, 2, NO_RETRY, &hostile("h", "")),
        &[("WARD_TEST_VISIBLE", "x")],
    )
    .ready();
    let s = dead_with(
        &redis,
        &enqueue(&redis, "h", r#"{"do":"read_file","path":"/etc/passwd"}"#),
    );
    assert!(
        s["last_error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read /etc/passwd"),
        "{s}"
    );
    let s = dead_with(
        &redis,
        &enqueue(&redis, "h", r#"{"do":"env","name":"WARD_TEST_VISIBLE"}"#),
    );
    let message = s["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("0 variables visible"), "{message}");
    drop(ward_proc);
}

#[test]
fn secrets_reach_only_the_job_types_granted_them_and_never_leak() {
    const VALUE: &str = "tok-9f8e7d6c5b4a";
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("FILE_TOKEN"), "from-a-file\n").unwrap();
    let redis = Redis::start();
    let jobs = hostile("a", "secrets = [\"WARD_TEST_TOKEN\"]")
        + &hostile("b", "")
        + &hostile("c", "secrets = [\"FILE_TOKEN\"]");
    let cfg = config_with(&redis, 2, NO_RETRY, &jobs);
    let ward_proc = Ward::start_with_env(
        &cfg,
        &[
            ("WARD_TEST_TOKEN", VALUE),
            ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
        ],
    )
    .ready();
    let ask = r#"{"do":"secret","name":"WARD_TEST_TOKEN"}"#;
    assert_eq!(
        wait_final(&redis, &enqueue(&redis, "a", ask), WAIT)["result"],
        "granted"
    );
    assert_eq!(
        wait_final(&redis, &enqueue(&redis, "b", ask), WAIT)["result"],
        "not granted"
    );
    let from_file = r#"{"do":"secret","name":"FILE_TOKEN"}"#;
    assert_eq!(
        wait_final(&redis, &enqueue(&redis, "c", from_file), WAIT)["result"],
        "granted"
    );

    let leak = enqueue(&redis, "a", r#"{"do":"leak","name":"WARD_TEST_TOKEN"}"#);
    let s = dead_with(&redis, &leak);
    assert_eq!(
        s["last_error"]["message"], "upstream rejected token [redacted]",
        "{s}"
    );
    let shown = ward(&["job", "show", "--redis", &redis.url(), "q", &leak, "--json"]);
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains(VALUE),
        "job history"
    );
    let dead = dead_letters(&redis);
    assert!(
        dead.iter().all(|d| d
            .values()
            .all(|v| !String::from_utf8_lossy(v).contains(VALUE))),
        "dead letters"
    );
    wait_for(Duration::from_secs(5), "the plugin's log lines", || {
        let logs = ward_proc.logs();
        logs.contains("the secret is [redacted]") && logs.contains("stdout sees [redacted]")
    });
    assert!(!ward_proc.logs().contains(VALUE), "the daemon's log");

    // A granted secret that is nowhere to be found stops the daemon at
    // start, and `ward config check` (systemd's ExecStartPre) says so first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.toml");
    std::fs::write(&path, &cfg).unwrap();
    let out = ward(&["config", "check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let why = "secret `WARD_TEST_TOKEN` is granted but not set";
    assert!(stderr(&out).contains(why), "{}", stderr(&out));
    let mut missing = Ward::start(&cfg);
    wait_for(Duration::from_secs(30), "the daemon to refuse", || {
        !missing.is_running()
    });
    assert!(missing.logs().contains(why), "{}", missing.logs());
}

#[test]
fn secrets_in_results_checkpoints_and_output_cut_at_the_cap_are_redacted() {
    const VALUE: &str = "tok-1a2b3c4d5e6f";
    let redis = Redis::start();
    let jobs = hostile(
        "a",
        "secrets = [\"WARD_TEST_TOKEN\"]\noutput_limit = \"64\"",
    );
    let ward_proc =
        Ward::start_with_env(&config(&redis, 2, &jobs), &[("WARD_TEST_TOKEN", VALUE)]).ready();
    // Attempt 1 saves the secret in its checkpoint and prints 60 bytes of
    // padding before it, so the 64-byte cap cuts the secret after `tok-`;
    // attempt 2 succeeds with the secret in its result.
    let id = enqueue(
        &redis,
        "a",
        r#"{"do":"leak_ok","name":"WARD_TEST_TOKEN","bytes":60}"#,
    );
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(
        s["result"], "token [redacted]; the checkpoint kept it: false",
        "the result is redacted, and so was the checkpoint the retry read"
    );
    let padding = "x".repeat(60);
    wait_for(Duration::from_secs(5), "the captured output", || {
        ward_proc.logs().contains(&format!("{padding}[redacted]"))
    });
    let logs = ward_proc.logs();
    assert!(
        !logs.contains(&format!("{padding}tok")),
        "nothing of the cut secret: {logs}"
    );
    let shown = ward(&["job", "show", "--redis", &redis.url(), "q", &id, "--json"]);
    assert!(!stdout(&shown).contains(VALUE), "{}", stdout(&shown));
}

#[test]
fn plugin_output_is_captured_bounded_and_tagged_with_the_job() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config_with(
        &redis,
        2,
        NO_RETRY,
        &hostile("h", "output_limit = \"4KiB\""),
    ))
    .ready();
    let id = enqueue(&redis, "h", r#"{"do":"print","bytes":1048576}"#);
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded");
    wait_for(Duration::from_secs(5), "the captured output", || {
        ward_proc
            .log_lines()
            .iter()
            .any(|l| l["stream"] == "stdout" && l["job_id"] == id.as_str())
    });
    let line = ward_proc
        .log_lines()
        .into_iter()
        .find(|l| l["stream"] == "stdout" && l["job_id"] == id.as_str())
        .unwrap();
    assert!(
        line["message"].as_str().unwrap().len() <= 4096,
        "kept at most the cap"
    );
    assert!(
        line["dropped_bytes"].as_u64().unwrap() >= 1_000_000,
        "{line}"
    );
}

#[test]
fn plugin_check_lists_imports_and_refuses_what_ward_cannot_run() {
    let out = ward(&["plugin", "check", plugin("hostile").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("wasi:http/outgoing-handler") && text.contains("ward:plugin/host"),
        "{text}"
    );
    assert!(text.contains("exports  handle"), "{text}");

    let alien = plugin("alien");
    let out = ward(&["plugin", "check", "--json", alien.to_str().unwrap()]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["imports"][0], "test:alien/beacon");
    assert!(
        stderr(&out).contains("test:alien/beacon"),
        "names the import: {}",
        stderr(&out)
    );

    // The daemon refuses it too, before touching Redis.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "{METRICS_ANY_PORT}[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"{}\"\n",
            alien.display()
        ),
    )
    .unwrap();
    let out = ward(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("test:alien/beacon"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn daemon_memory_stays_bounded_across_10000_allocating_attempts() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config_with(&redis, 8, NO_RETRY, &hostile("h", ""))).ready();
    let mut con = redis.con();
    // 2 MiB written per attempt: 20 GiB over the run, and a leak of any
    // attempt's memory (a slot not reset, an instance kept) would blow the
    // bound below many times over. 8 MiB proved no more and took 78 s
    // alone (2 MiB: 16 s), nearly all of it page faults.
    let push = |n: usize| xadd_many(&redis, n, "h", r#"{"do":"alloc","mb":2}"#);
    let drained = |con: &mut redis::Connection| {
        let (len, pending): (usize, usize) = redis::pipe()
            .cmd("XLEN")
            .arg("ward:{q}:jobs")
            .cmd("XPENDING")
            .arg("ward:{q}:jobs")
            .arg("ward")
            .query::<(usize, (usize, redis::Value, redis::Value, redis::Value))>(con)
            .map(|(l, p)| (l, p.0))
            .unwrap();
        len == 0 && pending == 0
    };
    push(1000);
    wait_for(Duration::from_secs(120), "the first 1,000 attempts", || {
        drained(&mut con)
    });
    let warm = rss_kib(ward_proc.pid());
    for _ in 0..9 {
        push(1000);
        wait_for(Duration::from_secs(120), "the next 1,000 attempts", || {
            drained(&mut con)
        });
    }
    let after = rss_kib(ward_proc.pid());
    let dead: usize = redis::cmd("XLEN")
        .arg("ward:{q}:dead")
        .query(&mut con)
        .unwrap();
    assert_eq!(dead, 0, "every attempt succeeded");
    println!("daemon RSS after 1,000 attempts: {warm} KiB; after 10,000: {after} KiB");
    assert!(
        after <= warm + 64 * 1024,
        "RSS grew from {warm} KiB to {after} KiB over 9,000 more attempts of a 2 MiB allocation"
    );
}
