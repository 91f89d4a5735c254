//! `[[job]]` `result_ttl`, `result_max_bytes` and `then`: defaults, and
//! every problem at its line.

use std::time::Duration;

use super::*;

/// Loads queue `q` with job types `jobs` (`(name, extra keys)`), from a
/// folder that holds their plugin `p.wasm`.
fn load(jobs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
    let mut text = String::from("[[queue]]\nname = \"q\"\n[[queue]]\nname = \"other\"\n");
    for (name, extra) in jobs {
        let queue = if *name == "elsewhere" { "other" } else { "q" };
        text.push_str(&format!(
            "[[job]]\nname = \"{name}\"\nqueue = \"{queue}\"\nplugin = \"p.wasm\"\n{extra}\n"
        ));
    }
    Config::from_toml(&dir.path().join("ward.toml"), &text)
}

fn problems(jobs: &[(&str, &str)]) -> Vec<Problem> {
    match load(jobs) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn job<'a>(cfg: &'a Config, name: &str) -> &'a JobConfig {
    &cfg.queues[0].jobs[name]
}

#[test]
fn results_default_to_the_record_and_64_kib_and_then_to_none() {
    let cfg = load(&[("a", "")]).unwrap();
    let a = job(&cfg, "a");
    assert_eq!(a.results.ttl, None);
    assert_eq!(a.results.max_bytes, 64 << 10);
    assert_eq!(a.then, None);
    let cfg = load(&[
        (
            "a",
            "result_ttl = \"1h\"\nresult_max_bytes = \"1KiB\"\nthen = \"b\"",
        ),
        ("b", "result_max_bytes = \"0\""),
    ])
    .unwrap();
    let a = job(&cfg, "a");
    assert_eq!(a.results.ttl, Some(Duration::from_secs(3600)));
    assert_eq!(a.results.max_bytes, 1024);
    assert_eq!(a.then.as_deref(), Some("b"));
    assert_eq!(job(&cfg, "b").results.max_bytes, 0);
}

#[test]
fn bad_result_keys_are_errors_at_their_line() {
    let p = problems(&[("a", "result_ttl = \"500ms\"\nresult_max_bytes = \"1GiB\"")]);
    let lines: Vec<usize> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, [9, 10], "{p:?}");
    assert!(
        p[0].message.contains("result_ttl must be at least 1s"),
        "{p:?}"
    );
    assert!(
        p[1].message
            .contains("job `a`: result_max_bytes `1GiB` is out of range"),
        "{p:?}"
    );
}

#[test]
fn then_must_name_a_job_type_of_the_same_queue_and_never_loop() {
    let p = problems(&[("a", "then = \"nope\""), ("b", "")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, 9);
    assert!(
        p[0].message
            .contains("then = \"nope\" names no job type of queue `q` (its job types: a, b)"),
        "{p:?}"
    );
    let p = problems(&[("a", "then = \"elsewhere\""), ("elsewhere", "")]);
    assert!(p[0].message.contains("same queue"), "{p:?}");
    let p = problems(&[("a", "then = \"b\""), ("b", "then = \"a\"")]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].message.contains("never ends (a -> b -> a)"), "{p:?}");
    let p = problems(&[("a", "then = \"a\"")]);
    assert!(p[0].message.contains("(a -> a)"), "{p:?}");
}

#[test]
fn batch_retention_defaults_to_a_week_and_0s_keeps_ledgers() {
    let load_q = |keys: &str| {
        Config::from_toml(
            std::path::Path::new("/nonexistent/ward.toml"),
            &format!("[[queue]]\nname = \"q\"\n{keys}\n"),
        )
        .unwrap()
    };
    assert_eq!(
        load_q("").queues[0].batch_retention,
        Some(Duration::from_secs(7 * 24 * 3600))
    );
    assert_eq!(
        load_q("batch_retention = \"2h\"").queues[0].batch_retention,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(
        load_q("batch_retention = \"0s\"").queues[0].batch_retention,
        None
    );
}
