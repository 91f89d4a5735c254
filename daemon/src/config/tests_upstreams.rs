//! `[[upstream]]` tables and `max_backlog`: read, defaulted, checked with
//! their lines.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(top: &str, tail: &str) -> Result<Config, ConfigError> {
    Config::from_toml(
        Path::new("/nonexistent/ward.toml"),
        &format!("{top}\n[[queue]]\nname = \"q\"\n{tail}\n"),
    )
}

fn problems(err: ConfigError) -> Vec<(usize, String)> {
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected validation errors, got {err}");
    };
    problems.into_iter().map(|p| (p.line, p.message)).collect()
}

#[test]
fn an_upstream_table_is_read_with_its_defaults() {
    let cfg = load(
        "[defaults.breaker]\nfailures = 2",
        "max_backlog = 1000\n[[upstream]]\nname = \"api\"\nrate = 50\n[[upstream]]\nname = \"db\"\nrate = 5\nper = \"1m\"\nburst = 1\nconcurrency = 3\nopen_for = \"5s\"",
    )
    .unwrap();
    assert_eq!(cfg.queues[0].max_backlog, Some(1000));
    let api = &cfg.upstreams["api"];
    assert_eq!(
        api.rate,
        Some(RateLimit {
            rate: 50,
            per: Duration::from_secs(1),
            burst: 50
        }),
        "per defaults to 1s, burst to the rate"
    );
    assert_eq!(api.concurrency, None);
    assert_eq!(api.breaker.failures, 2, "the defaults' breaker settings");
    let db = &cfg.upstreams["db"];
    assert_eq!(db.concurrency, Some(3));
    assert_eq!(db.rate.map(|r| r.burst), Some(1));
    assert_eq!(db.breaker.open_for, Duration::from_secs(5));
    assert_eq!(db.breaker.failures, 2);
    assert!((db.rate.unwrap().per_ms() - 5.0 / 60_000.0).abs() < 1e-12);
    assert_eq!(load("", "").unwrap().queues[0].max_backlog, None);
}

#[test]
fn upstream_problems_are_reported_at_their_tables() {
    let err = load(
        "",
        "max_backlog = 0\n[[upstream]]\nname = \"a\"\nburst = 3\n[[upstream]]\nname = \"a\"\n[[upstream]]\nname = \"b\"\nrate = 0\nconcurrency = 0\nwindow = \"1ms\"\n[[upstream]]\nname = \"c d\"",
    )
    .unwrap_err();
    let got = problems(err);
    let at = |line: usize, text: &str| {
        assert!(
            got.iter().any(|(l, m)| *l == line && m.contains(text)),
            "no `{text}` at line {line}: {got:?}"
        );
    };
    at(4, "max_backlog 0 is out of range");
    at(5, "upstream `a`: per and burst need a rate");
    at(9, "upstream `a` is defined twice");
    at(10, "upstream `b`: rate 0 is out of range");
    at(10, "upstream `b`: concurrency 0 is out of range");
    at(10, "upstream `b`: window must be from 100ms");
    at(16, "[[upstream]] name `c d`");
    assert_eq!(got.len(), 7, "{got:?}");
}

#[test]
fn an_unknown_upstream_key_is_an_error_with_its_line() {
    let err = load("", "[[upstream]]\nname = \"a\"\nrate_limit = 5").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("/nonexistent/ward.toml:6:"), "{msg}");
    assert!(msg.contains("unknown field `rate_limit`"), "{msg}");
}
