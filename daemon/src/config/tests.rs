//! Loading and validating whole config files: messages, lines, defaults.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::policy::{Jitter, RetryPolicy, TreatAs};
use crate::redact::FieldPath;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("/nonexistent/ward.toml"), text)
}

#[test]
fn unknown_key_names_line_and_key() {
    let err = load("[redis]\nurl = \"redis://127.0.0.1:1\"\nport = 5\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("/nonexistent/ward.toml:3:"), "{msg}");
    assert!(msg.contains("unknown field `port`"), "{msg}");
}

#[test]
fn syntax_error_names_line() {
    let err = load("[[queue]]\nname = \"a\"\nconcurrency = = 3\n").unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/ward.toml:3:"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load(
        "[[queue]]\nname = \"q\"\nconcurrency = 0\n\n[[job]]\nname = \"a\"\nqueue = \"nope\"\nplugin = \"missing.wasm\"\n",
    )
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 7, 8], "{problems:?}");
    assert!(problems[1].message.contains("defined: q"), "{problems:?}");
    assert!(problems[2].message.contains("missing.wasm"), "{problems:?}");
}

#[test]
fn threads_are_checked_and_default_to_one_less_than_the_cpus() {
    let err = load("[daemon]\nthreads = 0\n[[queue]]\nname = \"q\"\n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(problems[0].line, 2, "{problems:?}");
    assert!(
        problems[0].message.contains("use 1 to 1024"),
        "{problems:?}"
    );

    let cfg = load("[daemon]\nthreads = 3\n[[queue]]\nname = \"q\"\n").unwrap();
    assert_eq!(cfg.worker_threads(), 3);
    let cfg = load("[[queue]]\nname = \"q\"\n").unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert_eq!(cfg.worker_threads(), cpus.saturating_sub(1).max(1));
}

#[test]
fn profiler_is_perfmap_or_off_and_off_by_default() {
    let on = load("[daemon]\nprofiler = \"perfmap\"\n[[queue]]\nname = \"q\"\n").unwrap();
    assert!(on.perf_map);
    let off = load("[daemon]\nprofiler = \"off\"\n[[queue]]\nname = \"q\"\n").unwrap();
    assert!(!off.perf_map);
    assert!(!load("[[queue]]\nname = \"q\"\n").unwrap().perf_map);

    let err = load("[daemon]\nprofiler = \"jitdump\"\n[[queue]]\nname = \"q\"\n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(problems[0].line, 2, "{problems:?}");
    assert!(
        problems[0].message.contains("\"jitdump\"") && problems[0].message.contains("\"perfmap\""),
        "{problems:?}"
    );
}

#[test]
fn slot_pages_is_auto_unless_set_and_a_wrong_value_names_its_line() {
    let q = "[[queue]]\nname = \"q\"\n";
    assert_eq!(load(q).unwrap().slot_pages, SlotPages::Auto);
    for (text, want) in [
        ("keep", SlotPages::Keep),
        ("release", SlotPages::Release),
        ("auto", SlotPages::Auto),
    ] {
        let cfg = load(&format!("[daemon]\nslot_pages = \"{text}\"\n{q}")).unwrap();
        assert_eq!(cfg.slot_pages, want, "{text}");
    }
    let err = load(&format!("[daemon]\nslot_pages = \"free\"\n{q}")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 2: [daemon] slot_pages \"free\" is not one Ward knows"),
        "{msg}"
    );
}

#[test]
fn compile_cache_is_a_folder_beside_the_config_or_off() {
    let cfg = load("[daemon]\ncompile_cache = \"cache\"\n[[queue]]\nname = \"q\"\n").unwrap();
    let dir = cfg.compile_cache.unwrap();
    assert!(
        dir.ends_with("cache") && dir.is_absolute(),
        "{}",
        dir.display()
    );
    let cfg = load("[daemon]\ncompile_cache = \"off\"\n[[queue]]\nname = \"q\"\n").unwrap();
    assert_eq!(cfg.compile_cache, None);
    let err = load("[daemon]\ncompile_cache = \"\"\n[[queue]]\nname = \"q\"\n").unwrap_err();
    assert!(err.to_string().contains("compile_cache is empty"), "{err}");
}

#[test]
fn succeeded_ttl_is_whole_seconds_and_defaults_to_a_day() {
    let err = load("[[queue]]\nname = \"q\"\nsucceeded_ttl = \"1500ms\"\n").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(problems[0].line, 3, "{problems:?}");
    assert!(
        problems[0].message.contains("whole seconds"),
        "{problems:?}"
    );
    let cfg = load("[[queue]]\nname = \"q\"\nsucceeded_ttl = \"0s\"\n").unwrap();
    assert_eq!(cfg.queues[0].succeeded_ttl, Duration::ZERO);
    let cfg = load("[[queue]]\nname = \"q\"\n").unwrap();
    assert_eq!(cfg.queues[0].succeeded_ttl, defaults::SUCCEEDED_TTL);
    assert_eq!(defaults::SUCCEEDED_TTL, Duration::from_secs(15 * 60));
}

#[test]
fn a_schedule_names_a_valid_cron_and_a_job_of_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
    let load = |schedule: &str| {
        Config::from_toml(
            &dir.path().join("ward.toml"),
            &format!(
                "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n[[schedule]]\nname = \"s\"\n{schedule}\n"
            ),
        )
    };
    let cfg = load("cron = \"0 0 3 * * *\"\nqueue = \"q\"\njob = \"a\"\npayload = \"{}\"").unwrap();
    assert_eq!(cfg.schedules.len(), 1);
    assert_eq!(cfg.schedules[0].payload, b"{}");

    let cfg = load(
        "cron = \"30 3 * * *\"\ntimezone = \"Europe/Paris\"\nmissed = \"catch_up\"\ncatch_up_max = 2\noverlap = \"skip\"\nqueue = \"q\"\njob = \"a\"",
    )
    .unwrap();
    assert_eq!(cfg.schedules[0].tz, chrono_tz::Tz::Europe__Paris);
    assert_eq!(cfg.schedules[0].overlap, crate::schedule::Overlap::Skip);
    assert!(matches!(
        cfg.schedules[0].missed,
        crate::schedule::Missed::CatchUp { max: 2, .. }
    ));
    let err = load(
        "cron = \"* * * * *\"\ntimezone = \"Mars/Olympus\"\ncatch_up_max = 2\noverlap = \"never\"\nqueue = \"q\"\njob = \"a\"",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "Mars/Olympus",
        "catch_up_max only applies",
        "overlap `never`",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }

    let err = load("cron = \"every night\"\nqueue = \"q\"\njob = \"b\"").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].line, 9, "{problems:?}");
    assert!(problems[0].message.contains("five fields"), "{problems:?}");
    assert_eq!(problems[1].line, 11, "{problems:?}");
    assert!(
        problems[1].message.contains("no [[job]] of queue `q`"),
        "{problems:?}"
    );
}

#[test]
fn ca_file_must_hold_a_certificate_and_goes_with_rediss() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), b"not a certificate").unwrap();
    let load = |redis: &str| {
        Config::from_toml(
            &dir.path().join("ward.toml"),
            &format!("[redis]\n{redis}\n[[queue]]\nname = \"q\"\n"),
        )
    };
    let err = load("url = \"redis://127.0.0.1:1\"\nca_file = \"junk.pem\"").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].message.contains("no PEM certificate"),
        "{problems:?}"
    );
    assert!(
        problems[1].message.contains("only used with a rediss://"),
        "{problems:?}"
    );
    let cfg = load("url = \"rediss://redis.internal:6380\"").unwrap();
    assert_eq!(cfg.redis_url, "rediss://redis.internal:6380");
    assert!(cfg.redis_ca.is_none());
}

#[test]
fn breaker_defaults_and_upstreams_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
    let load = |top: &str, job: &str| {
        Config::from_toml(
            &dir.path().join("ward.toml"),
            &format!(
                "{top}\n[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n{job}\n"
            ),
        )
    };
    let cfg = load("", "upstreams = [\"api\", \"db\", \"api\"]").unwrap();
    assert_eq!(cfg.breaker, BreakerPolicy::default());
    assert_eq!(cfg.queues[0].jobs["a"].upstreams, vec!["api", "db"]);
    let cfg = load(
        "[defaults.breaker]\nfailures = 2\nwindow = \"10s\"\nopen_for = \"1m\"",
        "",
    )
    .unwrap();
    assert_eq!(
        cfg.breaker,
        BreakerPolicy {
            failures: 2,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(60)
        }
    );
    let err = load("[defaults.breaker]\nfailures = 0", "upstreams = [\"a b\"]").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].message.contains("failures 0"), "{problems:?}");
    assert!(
        problems[1].message.contains("upstream name `a b`"),
        "{problems:?}"
    );
}

#[test]
fn bad_duration_is_explained() {
    let err = load(
        "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"x\"\ntimeout = \"ten\"\n",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(":7:") && msg.contains("\"30s\""), "{msg}");
}

/// Loads `text` from a folder that holds the plugin `p.wasm`.
fn with_plugin(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
    Config::from_toml(&dir.path().join("ward.toml"), text)
}

fn job_with(retry_defaults: &str, job_retry: &str) -> Result<Config, ConfigError> {
    with_plugin(&format!(
        "[defaults.retry]\n{retry_defaults}\n[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n{job_retry}\n"
    ))
}

#[test]
fn job_retry_overrides_defaults_field_by_field() {
    let cfg = job_with(
        "max_attempts = 4\ninitial_delay = \"100ms\"\njitter = \"none\"",
        "retry = { max_attempts = 9, on_crash = \"transient\" }",
    )
    .unwrap();
    let p = cfg.queues[0].jobs["a"].retry;
    assert_eq!(p.max_attempts, 9, "the job's own value wins");
    assert_eq!(
        p.initial_delay,
        Duration::from_millis(100),
        "inherited from [defaults.retry]"
    );
    assert_eq!(p.jitter, Jitter::None);
    assert_eq!(p.crash_as, TreatAs::Transient);
    assert_eq!(
        p.max_delay,
        RetryPolicy::default().max_delay,
        "built-in default"
    );
}

#[test]
fn nonsense_retry_values_are_rejected_with_reasons() {
    let err = job_with(
        "multiplier = 0.5",
        "retry = { max_attempts = 0, initial_delay = \"10s\", max_delay = \"1s\" }",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("[defaults.retry]: multiplier 0.5"), "{msg}");
    assert!(msg.contains("job `a`: retry: max_attempts is 0"), "{msg}");
    assert!(
        msg.contains("max_delay 1s is less than initial_delay 10s"),
        "{msg}"
    );
    let err = job_with("jitter = \"fullish\"", "")
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2:") && err.contains("decorrelated"), "{err}");
}

fn with_queue_keys(queue_keys: &str, job_keys: &str) -> Result<Config, ConfigError> {
    with_plugin(&format!(
        "[defaults]\ndead_payload_max = 1000\n[[queue]]\nname = \"q\"\n{queue_keys}\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n{job_keys}\n"
    ))
}

#[test]
fn dead_letter_keys_are_read_and_default_sensibly() {
    let cfg = with_queue_keys("", "").unwrap();
    let dead = &cfg.queues[0].dead;
    assert!(!dead.has_retention(), "no retention unless asked for");
    assert_eq!(dead.payload_max, 1000, "inherited from [defaults]");
    assert_eq!(dead.trim_interval, DEFAULT_DEAD_TRIM_INTERVAL);
    assert!(cfg.queues[0].jobs["a"].redact.is_empty());

    let cfg = with_queue_keys(
        "dead_max_len = 500\ndead_max_age = \"7d\"\ndead_trim_interval = \"1s\"\ndead_payload_max = 10",
        "redact = [\"password\", \"/card/number\"]",
    )
    .unwrap();
    let dead = &cfg.queues[0].dead;
    assert_eq!(dead.max_len, Some(500));
    assert_eq!(dead.max_age, Some(Duration::from_secs(7 * 86400)));
    assert_eq!(dead.trim_interval, Duration::from_secs(1));
    assert_eq!(dead.payload_max, 10, "the queue's own value wins");
    assert_eq!(
        cfg.queues[0].jobs["a"].redact,
        vec![
            FieldPath::Key("password".into()),
            FieldPath::Pointer("/card/number".into())
        ]
    );
}

#[test]
fn nonsense_dead_letter_values_are_all_reported() {
    let err = with_queue_keys(
        "dead_max_len = 0\ndead_max_age = \"0s\"\ndead_trim_interval = \"0s\"\ndead_payload_max = -1",
        "redact = [\"card/number\", \"\"]",
    )
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    let text: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(problems.len(), 6, "{text:#?}");
    assert!(text[0].contains("dead_max_len 0"), "{text:#?}");
    assert!(
        text[1].contains("dead_max_age must be more than 0"),
        "{text:#?}"
    );
    assert!(text[2].contains("dead_trim_interval"), "{text:#?}");
    assert!(text[3].contains("dead_payload_max -1"), "{text:#?}");
    assert!(
        text[4].contains("job `a`: redact") && text[4].contains("\"/card/number\""),
        "{text:#?}"
    );
    assert_eq!(problems[0].line, 5);
}

#[test]
fn sandbox_keys_are_validated() {
    let err = job_with(
        "",
        "memory_limit = \"12 parsecs\"\nfuel = 0\nhttp = { allow = [\"no-port.example\"] }\nsecrets = [\"../etc\"]",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("memory_limit: invalid size"), "{err}");
    assert!(err.contains("fuel 0"), "{err}");
    assert!(err.contains("not host:port"), "{err}");
    assert!(err.contains("secret name `../etc`"), "{err}");
}

#[test]
fn reuse_instance_defaults_to_a_fresh_instance_and_rejects_zero() {
    let job = |cfg: &Config| cfg.queues[0].jobs["a"].reuse_instance;
    assert_eq!(job(&job_with("", "").unwrap()), 1);
    assert_eq!(job(&job_with("", "reuse_instance = 500").unwrap()), 500);
    let err = job_with("", "reuse_instance = 0").unwrap_err().to_string();
    assert!(
        err.contains("reuse_instance 0 is out of range; use 1 (a fresh instance per attempt"),
        "{err}"
    );
}

#[test]
fn concurrency_goes_past_the_old_4096_cap() {
    let cfg = with_plugin("[[queue]]\nname = \"q\"\nconcurrency = 10000\n").unwrap();
    assert_eq!(cfg.queues[0].concurrency, 10_000);
    let err = with_plugin("[[queue]]\nname = \"q\"\nconcurrency = 100001\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("use 1 to 100000"), "{err}");
}

#[test]
fn queue_names_with_braces_are_rejected() {
    assert!(check_name("a}b").is_some());
    assert!(check_name("emails").is_none());
}

#[test]
fn plugin_paths_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
    let cfg = Config::from_toml(
        &dir.path().join("ward.toml"),
        "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n",
    )
    .unwrap();
    assert_eq!(cfg.queues[0].jobs["a"].plugin, dir.path().join("p.wasm"));
    assert_eq!(cfg.queues[0].concurrency, DEFAULT_CONCURRENCY);
    assert_eq!(cfg.redis_url, DEFAULT_REDIS_URL);
}

#[test]
fn a_webhook_format_is_one_of_the_known_shapes() {
    let ok = load(
        "[[queue]]\nname = \"q\"\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:9093/api/v2/alerts\"\nformat = \"alertmanager\"\n",
    )
    .unwrap();
    assert_eq!(
        ok.obs.alerts.webhooks[0].format,
        crate::config::observability::WebhookFormat::Alertmanager
    );
    let err = load("[[queue]]\nname = \"q\"\n[[alerts.webhook]]\nurl = \"http://127.0.0.1:1/\"\nformat = \"teams\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "line 5: [[alerts.webhook]] format `teams` is not one of ward, slack, alertmanager"
        ),
        "{err}"
    );
}

#[test]
fn a_cluster_or_sentinels_become_one_redis_address() {
    let load = |redis: &str| {
        Config::from_toml(
            Path::new("ward.toml"),
            &format!("[redis]\n{redis}\n[[queue]]\nname = \"q\"\n"),
        )
    };
    let cfg = load("cluster = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7001\"]").unwrap();
    assert_eq!(cfg.redis_url, "redis+cluster://10.0.0.1:7000,10.0.0.2:7001");
    let cfg =
        load("sentinels = [\"redis://s1:26379\", \"redis://s2:26379\"]\nmaster_name = \"main\"")
            .unwrap();
    assert_eq!(cfg.redis_url, "redis+sentinel://s1:26379,s2:26379/main");
    let problems = |redis: &str| {
        let err = load(redis).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        problems
    };
    let p = problems("url = \"redis://h:1\"\ncluster = [\"redis://a:1\"]");
    assert!(p[0].message.contains("both url and cluster"), "{p:?}");
    assert_eq!(p[0].line, 2, "{p:?}");
    let p = problems("sentinels = [\"redis://s:26379\"]");
    assert!(p[0].message.contains("needs master_name"), "{p:?}");
    let p = problems("master_name = \"main\"");
    assert!(p[0].message.contains("only used with sentinels"), "{p:?}");
    let p = problems("cluster = [\"redis://a:1\", \"rediss://b:2\"]");
    assert!(
        p[0].message
            .contains("[redis] cluster mixes redis:// and rediss://"),
        "{p:?}"
    );
    let p = problems("cluster = []");
    assert!(p[0].message.contains("is empty"), "{p:?}");
    let p = problems(
        "cluster = [\"redis://a:1\"]\nsentinels = [\"redis://s:26379\"]\nmaster_name = \"m\"",
    );
    assert!(
        p[0].message.contains("both a cluster and sentinels"),
        "{p:?}"
    );
}

#[test]
fn tracing_is_off_unless_an_http_endpoint_is_given() {
    let q = "[[queue]]\nname = \"q\"\n";
    assert_eq!(load(q).unwrap().obs.tracing, None);
    let on = load(&format!(
        "{q}[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/\"\n"
    ))
    .unwrap();
    let t = on.obs.tracing.unwrap();
    assert_eq!(t.traces_url, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(t.service_name, "ward");
    let err = load(&format!(
        "{q}[tracing]\notlp_endpoint = \"https://otel.example:4318\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("line 4") && err.contains("not an http:// URL"),
        "{err}"
    );
}

#[test]
fn queue_alert_conditions_have_defaults_and_zero_turns_a_stall_off() {
    let cfg = load("[[queue]]\nname = \"a\"\n\n[[queue]]\nname = \"b\"\nmax_wait = \"5m\"\nstall_after = \"0s\"\n").unwrap();
    let (a, b) = (&cfg.queues[0], &cfg.queues[1]);
    assert_eq!(
        (a.max_wait, a.stall_after),
        (None, Some(Duration::from_secs(600)))
    );
    assert_eq!(
        (b.max_wait, b.stall_after),
        (Some(Duration::from_secs(300)), None)
    );
    let err = load("[[queue]]\nname = \"a\"\nmax_wait = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_wait must be more than 0"), "{err}");
}

#[test]
fn wait_replicas_is_one_to_sixteen_and_off_by_default() {
    let load = |keys: &str| with_queue_keys(keys, "");
    assert_eq!(load("").unwrap().queues[0].wait_replicas, 0);
    assert_eq!(
        load("wait_replicas = 2").unwrap().queues[0].wait_replicas,
        2
    );
    for bad in [
        "wait_replicas = 0",
        "wait_replicas = 17",
        "wait_replicas = -1",
    ] {
        let err = load(bad).unwrap_err().to_string();
        assert!(
            err.contains("wait_replicas") && err.contains("1 to 16"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn an_http_ca_file_must_be_readable_and_hold_usable_certificates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
    std::fs::write(dir.path().join("junk.pem"), b"not a certificate").unwrap();
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    std::fs::write(dir.path().join("broken.pem"), broken).unwrap();
    let load = |http: &str| {
        Config::from_toml(
            &dir.path().join("ward.toml"),
            &format!(
                "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\nhttp = {{ allow = [\"api.internal:443\"], {http} }}\n"
            ),
        )
    };
    for (file, why) in [
        ("missing.pem", "cannot read it"),
        ("junk.pem", "holds no PEM certificate"),
        ("broken.pem", "certificate 1 of 1"),
    ] {
        let err = load(&format!("ca_file = \"{file}\"")).unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = &problems[0].message;
        assert!(message.contains(why), "{file}: {message}");
        assert!(
            message.contains(&format!(
                "job `a`: http.ca_file {}",
                dir.path().join(file).display()
            )),
            "{message}"
        );
        assert_eq!(problems[0].line, 7, "{problems:?}");
    }
    let cfg = load("http2 = true").unwrap();
    let http = &cfg.queues[0].jobs["a"].http;
    assert!(http.http2);
    assert!(http.extra_roots.0.is_empty());
    assert!(
        !load("timeout = \"5s\"").unwrap().queues[0].jobs["a"]
            .http
            .http2
    );
}
