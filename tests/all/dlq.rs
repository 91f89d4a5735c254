//! Dead letters an operator can work with: every field in the entry,
//! `ward dlq list|show|requeue|discard`, safe concurrent requeues,
//! retention, and redaction of secret payload fields.

use std::collections::HashMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

use crate::support::with_queue;

const WAIT: Duration = Duration::from_secs(30);

/// A single attempt: the first failure of any kind is final.
const ONE_ATTEMPT: &str = "max_attempts = 1\njitter = \"none\"";
/// Two attempts, no waiting between them.
const TWO_ATTEMPTS: &str = "max_attempts = 2\ninitial_delay = \"10ms\"\njitter = \"none\"";

/// `ward dlq <sub> --redis URL q <args>`.
pub(crate) fn dlq(redis: &Redis, sub: &str, args: &[&str]) -> Output {
    let url = redis.url();
    let mut all = vec!["dlq", sub, "--redis", url.as_str(), "q"];
    all.extend_from_slice(args);
    ward(&all)
}

/// Like [`dlq`], asserting success; returns stdout.
pub(crate) fn dlq_ok(redis: &Redis, sub: &str, args: &[&str]) -> String {
    let out = dlq(redis, sub, args);
    assert!(
        out.status.success(),
        "ward dlq {sub} {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn list_json(redis: &Redis, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&dlq_ok(redis, "list", &all)).unwrap();
    v.as_array().unwrap().clone()
}

fn ids_of(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_dead(redis: &Redis, id: &str) -> Value {
    let s = wait_final(redis, id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    s
}

/// The entries of `ward:{q}:jobs`, oldest first.
pub(crate) fn job_entries(redis: &Redis) -> Vec<(String, HashMap<String, Vec<u8>>)> {
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg("ward:{q}:jobs")
        .arg("-")
        .arg("+")
        .query(&mut redis.con())
        .unwrap();
    entries
        .into_iter()
        .map(|(id, f)| (id, f.into_iter().collect()))
        .collect()
}

fn record_field(redis: &Redis, id: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg(field)
        .query(&mut redis.con())
        .unwrap()
}

fn events(s: &Value, event: &str) -> Vec<Value> {
    s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == event)
        .cloned()
        .collect()
}

#[test]
fn a_permanent_failures_dead_letter_carries_everything_an_operator_needs() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("charge", "flaky", ""))).ready();
    let payload =
        r#"{"fail":"permanent","message":"card declined","code":"declined","upstream":"payments"}"#;
    let id = xadd(
        &redis,
        "charge",
        payload,
        &[
            ("idempotency_key", "charge-o-17"),
            ("user_id", "u-5"),
            ("order_id", "o-17"),
            ("request_id", "r-99"),
        ],
    );
    wait_dead(&redis, &id);

    let dead = dead_letters(&redis);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    for (field, want) in [
        ("id", id.as_str()),
        ("job", "charge"),
        ("queue", "q"),
        ("reason", "permanent"),
        ("class", "permanent"),
        ("code", "declined"),
        ("message", "card declined"),
        ("upstream", "payments"),
        ("attempts", "1"),
        ("entry", id.as_str()),
        ("payload", payload),
        ("idempotency_key", "charge-o-17"),
        ("user_id", "u-5"),
        ("order_id", "o-17"),
        ("request_id", "r-99"),
    ] {
        assert_eq!(text(d, field), want, "dead-letter field `{field}`");
    }
    let plugin = text(d, "plugin");
    assert!(
        plugin.len() == 64 && plugin.bytes().all(|b| b.is_ascii_hexdigit()),
        "plugin digest: {plugin}"
    );
    let first: u64 = text(d, "first_at").parse().expect("first_at is Unix ms");
    let last: u64 = text(d, "last_at").parse().expect("last_at is Unix ms");
    assert!(first > 1_600_000_000_000 && first <= last, "{first} {last}");

    // `dlq show` reads the same entry, by job id or by its dead-entry id.
    let shown: Value = serde_json::from_str(&dlq_ok(&redis, "show", &[&id, "--json"])).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["reason"], "permanent");
    assert_eq!(shown["code"], "declined");
    assert_eq!(shown["upstream"], "payments");
    assert_eq!(shown["attempts"], 1);
    assert_eq!(shown["idempotency_key"], "charge-o-17");
    assert_eq!(shown["extra"]["order_id"], "o-17");
    assert_eq!(shown["payload"], payload);
    assert_eq!(shown["plugin_digest"], plugin.as_str());
    assert_eq!(shown["first_attempt_at_ms"], first);
    assert_eq!(shown["history"].as_array().unwrap().len(), 1, "{shown}");
    let dead_id = shown["dead_id"].as_str().unwrap();
    let again: Value = serde_json::from_str(&dlq_ok(&redis, "show", &[dead_id, "--json"])).unwrap();
    assert_eq!(again["id"], id.as_str());

    let human = dlq_ok(&redis, "show", &[&id]);
    for want in [
        "permanent [declined]: card declined",
        "charge-o-17",
        "order_id",
        "o-17",
        "payments",
        "history",
    ] {
        assert!(human.contains(want), "`{want}` missing from:\n{human}");
    }
}

#[test]
fn dlq_list_shows_the_newest_first_and_filters_by_job_reason_and_time() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let a = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]);
    wait_dead(&redis, &a);
    let b = xadd(&redis, "flaky", r#"{"fail":"transient"}"#, &[]);
    wait_dead(&redis, &b);
    let c = xadd(&redis, "send-fax", "{}", &[]);
    wait_dead(&redis, &c);
    let d = xadd(
        &redis,
        "flaky",
        r#"{"fail":"permanent","code":"gone"}"#,
        &[],
    );
    wait_dead(&redis, &d);
    drop(ward_proc);

    let all = list_json(&redis, &[]);
    assert_eq!(
        ids_of(&all),
        [d.as_str(), c.as_str(), b.as_str(), a.as_str()],
        "newest first"
    );
    assert_eq!(all[2]["reason"], "budget exhausted: attempts");
    assert_eq!(all[2]["attempts"], 3);
    assert_eq!(
        ids_of(&list_json(&redis, &["--job", "flaky"])),
        [d.as_str(), b.as_str(), a.as_str()]
    );
    assert_eq!(
        ids_of(&list_json(&redis, &["--reason", "BUDGET"])),
        [b.as_str()]
    );
    assert_eq!(
        ids_of(&list_json(&redis, &["--reason", "no plugin"])),
        [c.as_str()]
    );
    assert_eq!(
        ids_of(&list_json(&redis, &["--job", "flaky", "--reason", "perm"])),
        [d.as_str(), a.as_str()]
    );
    assert_eq!(
        ids_of(&list_json(&redis, &["--limit", "2"])),
        [d.as_str(), c.as_str()]
    );
    assert_eq!(list_json(&redis, &["--since", "1h"]).len(), 4);
    let since_c = all[1]["dead_at_ms"].as_u64().unwrap();
    let at =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(since_c))
            .to_string();
    assert_eq!(
        ids_of(&list_json(&redis, &["--since", &at])),
        [d.as_str(), c.as_str()],
        "--since {at}"
    );

    let human = dlq_ok(&redis, "list", &[]);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 5, "{human}");
    for col in ["ID", "JOB", "REASON", "ATTEMPTS", "LAST ERROR", "DEAD AT"] {
        assert!(lines[0].contains(col), "{human}");
    }
    assert!(
        lines[1].starts_with(&d) && lines[1].contains("[gone]"),
        "{human}"
    );
    assert!(
        lines[2].contains("send-fax") && lines[2].contains("no-plugin"),
        "{human}"
    );
    let none = dlq_ok(&redis, "list", &["--job", "nothing"]);
    assert!(
        none.contains("no dead letters in queue `q` matching job `nothing`"),
        "{none}"
    );

    // Bad input is explained.
    let bad = dlq(&redis, "list", &["--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("`yesterday` is neither a duration")
            && stderr(&bad).contains("RFC 3339"),
        "{}",
        stderr(&bad)
    );
    let url = redis.url();
    let unknown = ward(&["dlq", "list", "--redis", &url, "nosuchqueue"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("queue `nosuchqueue` not found"),
        "{}",
        stderr(&unknown)
    );
    let missing = dlq(&redis, "show", &["1-1"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no dead letter for job `1-1` in queue `q`"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn requeue_after_a_fix_runs_the_job_afresh_with_an_audit_record() {
    let redis = Redis::start();
    // Broken: one attempt only, and the job fails its first attempt.
    let broken = Ward::start(&config_with(
        &redis,
        4,
        ONE_ATTEMPT,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    let payload = r#"{"fail":"transient","times":1}"#;
    let id = xadd(&redis, "flaky", payload, &[("order_id", "o-3")]);
    let s = wait_dead(&redis, &id);
    assert_eq!(s["dead_reason"], "budget exhausted: attempts", "{s}");
    broken.stop();

    let out = dlq_ok(
        &redis,
        "requeue",
        &[&id, "--by", "alice", "--note", "raised max_attempts to 2"],
    );
    assert!(out.contains(&format!("requeued  {id}")), "{out}");
    assert!(dead_letters(&redis).is_empty(), "the dead letter is gone");

    // A fresh job: attempt 1, no first_at, the payload and correlation ids.
    let entries = job_entries(&redis);
    assert_eq!(entries.len(), 1);
    let e = &entries[0].1;
    assert_eq!(text(e, "ward:id"), id);
    assert_eq!(text(e, "job"), "flaky");
    assert_eq!(text(e, "ward:attempt"), "1");
    assert_eq!(text(e, "payload"), payload);
    assert_eq!(text(e, "order_id"), "o-3");
    assert!(!e.contains_key("ward:first_at"), "{e:?}");
    let s = show(&redis, &id);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("queued"), Some(0)),
        "{s}"
    );
    assert!(
        s["last_error"].is_null() && s["dead_reason"].is_null(),
        "{s}"
    );

    // Fixed: two attempts; attempt 1 fails as before, attempt 2 succeeds.
    let _fixed = Ward::start(&config_with(
        &redis,
        4,
        TWO_ATTEMPTS,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 2, "the budget was reset: {s}");
    assert_eq!(s["result"], "ok attempt 2", "{s}");
    let requeued = events(&s, "requeued");
    assert_eq!(requeued.len(), 1, "{s}");
    assert_eq!(requeued[0]["by"], "alice");
    assert_eq!(requeued[0]["note"], "raised max_attempts to 2");
    assert!(requeued[0]["at"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        s["history"].as_array().unwrap().len(),
        4,
        "the dead attempt, the requeue and the two new attempts: {s}"
    );
    let human = ward(&["job", "show", "--redis", &redis.url(), "q", &id]);
    assert!(
        stdout(&human).contains("requeued by alice: raised max_attempts to 2"),
        "{}",
        stdout(&human)
    );

    // Nothing left to requeue, and saying so is an error.
    let again = dlq(&redis, "requeue", &[&id]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("is not in the dead-letter stream: it is `succeeded`"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn two_operators_requeuing_the_same_job_at_once_run_it_once() {
    let redis = Redis::start();
    let broken = Ward::start(&config_with(
        &redis,
        4,
        ONE_ATTEMPT,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    let ids: Vec<String> = (0..3)
        .map(|_| xadd(&redis, "flaky", r#"{"fail":"transient","times":1}"#, &[]))
        .collect();
    for id in &ids {
        wait_dead(&redis, id);
    }
    wait_for(Duration::from_secs(5), "the log to be flushed", || {
        runs_per_job(&[&broken]).values().sum::<usize>() >= 3
    });
    let runs_before = runs_per_job(&[&broken]);
    broken.stop();

    let url = redis.url();
    for id in &ids {
        let spawn = || {
            ward_command()
                .args(["dlq", "requeue", "--redis", &url, "q", id])
                .env("USER", "bob")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(
            won.len(),
            1,
            "exactly one requeue of {id} succeeds: {:?}",
            outs.iter()
                .map(|o| (stdout(o), stderr(o)))
                .collect::<Vec<_>>()
        );
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        let said = format!("{}\n{}", stdout(lost), stderr(lost));
        assert!(said.contains("already requeued or discarded"), "{said}");
    }
    assert_eq!(job_entries(&redis).len(), 3, "one new entry per job");

    let fixed = Ward::start(&config_with(
        &redis,
        4,
        TWO_ATTEMPTS,
        &job("flaky", "flaky", ""),
    ))
    .ready();
    for id in &ids {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        let requeued = events(&s, "requeued");
        assert_eq!(requeued.len(), 1, "one requeue recorded: {s}");
        assert_eq!(requeued[0]["by"], "bob", "--by defaults to $USER");
    }
    wait_for(Duration::from_secs(5), "the log to be flushed", || {
        runs_per_job(&[&fixed]).values().sum::<usize>() >= 6
    });
    std::thread::sleep(Duration::from_millis(300));
    let runs_after = runs_per_job(&[&fixed]);
    for id in &ids {
        assert_eq!(runs_before.get(id), Some(&1), "{id} died on attempt 1");
        assert_eq!(
            runs_after.get(id),
            Some(&2),
            "{id} ran once after the requeue (a failing attempt and its retry), not twice"
        );
    }
}

#[test]
fn requeue_all_takes_the_filters_and_says_how_many() {
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let flaky: Vec<String> = (0..2)
        .map(|_| xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]))
        .collect();
    let fax = xadd(&redis, "send-fax", "{}", &[]);
    for id in flaky.iter().chain([&fax]) {
        wait_dead(&redis, id);
    }
    ward_proc.stop();

    let with_ids = dlq(&redis, "requeue", &[&fax, "--job", "send-fax"]);
    assert!(!with_ids.status.success());
    assert!(
        stderr(&with_ids).contains("for --all"),
        "{}",
        stderr(&with_ids)
    );

    let out = dlq_ok(&redis, "requeue", &["--all", "--job", "send-fax"]);
    assert!(
        out.contains("requeuing 1 dead letter(s) of queue `q` matching job `send-fax`"),
        "{out}"
    );
    assert!(out.contains(&format!("requeued  {fax}")), "{out}");
    assert_eq!(ids_of(&list_json(&redis, &[])).len(), 2);

    let out = dlq_ok(&redis, "requeue", &["--all"]);
    assert!(
        out.contains("no filter given: requeuing all 2 dead letter(s) of queue `q`"),
        "{out}"
    );
    assert!(out.contains("requeued 2 job(s)"), "{out}");
    assert!(dead_letters(&redis).is_empty());
    let entries = job_entries(&redis);
    let mut requeued: Vec<String> = entries.iter().map(|(_, e)| text(e, "ward:id")).collect();
    requeued.sort();
    let mut want: Vec<String> = flaky.iter().chain([&fax]).cloned().collect();
    want.sort();
    assert_eq!(requeued, want);
    let none = dlq_ok(&redis, "requeue", &["--all"]);
    assert!(none.contains("requeuing all 0"), "{none}");
}

#[test]
fn discard_leaves_a_discarded_job_with_the_note() {
    let redis = Redis::start();
    let _ward = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]);
    wait_dead(&redis, &id);
    let out = dlq_ok(
        &redis,
        "discard",
        &[
            &id,
            "--reason",
            "customer cancelled the order",
            "--by",
            "carol",
        ],
    );
    assert!(out.contains(&format!("discarded  {id}")), "{out}");
    assert!(dead_letters(&redis).is_empty());

    let s = show(&redis, &id);
    assert_eq!(s["state"], "discarded", "{s}");
    let discarded = events(&s, "discarded");
    assert_eq!(discarded.len(), 1, "{s}");
    assert_eq!(discarded[0]["by"], "carol");
    assert_eq!(discarded[0]["note"], "customer cancelled the order");
    assert_eq!(
        record_field(&redis, &id, "discard_note").as_deref(),
        Some("customer cancelled the order")
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("ward:{{q}}:job:{id}"))
        .query(&mut redis.con())
        .unwrap();
    assert!(ttl > 0, "a discarded record expires in time: ttl {ttl}");

    // A second discard, or a requeue, finds nothing to act on.
    for sub in ["discard", "requeue"] {
        let again = dlq(&redis, sub, &[&id]);
        assert!(!again.status.success(), "{sub}");
        assert!(
            stderr(&again).contains("it is `discarded`"),
            "{}",
            stderr(&again)
        );
    }
    let missing = dlq(&redis, "discard", &["1-1"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no dead letter for job `1-1` in queue `q`"),
        "{}",
        stderr(&missing)
    );

    // Every try is on the audit trail, with what it changed.
    let trail = audit(&redis);
    let summary: Vec<(&str, &str, u64)> = trail
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("discard", id.as_str(), 1),
            ("discard", id.as_str(), 0),
            ("requeue", id.as_str(), 0),
            ("discard", "1-1", 0),
        ],
        "{trail:?}"
    );
    assert_eq!(trail[0]["by"], "carol");
    assert_eq!(trail[0]["via"], "cli");
    assert_eq!(trail[0]["queue"], "q");
    assert_eq!(trail[0]["note"], "customer cancelled the order");
}

#[test]
fn redacted_fields_never_reach_the_dead_letter_or_the_log_but_a_requeue_runs_with_them() {
    let redis = Redis::start();
    let jobs = job(
        "vault",
        "flaky",
        "redact = [\"password\", \"/card/number\"]",
    ) + &job("plain", "flaky", "");
    let cfg = config_queue(&redis, 4, FAST_RETRY, "dead_payload_max = 300", &jobs);
    let ward_proc = Ward::start(&cfg).ready();

    // flaky rejects the unknown fields: a permanent `invalid-payload` failure.
    let payload = r#"{"fail":"permanent","password":"hunter2-s3cret","card":{"number":"4111-9999-SECRET","exp":"12/30"}}"#;
    let id = xadd(&redis, "vault", payload, &[("user_id", "u-1")]);
    wait_dead(&redis, &id);
    let not_json = xadd(&redis, "vault", "password=hunter2-s3cret", &[]);
    wait_dead(&redis, &not_json);
    let big = format!(r#"{{"fail":"permanent","pad":"{}"}}"#, "x".repeat(400));
    let big_id = xadd(&redis, "plain", &big, &[]);
    wait_dead(&redis, &big_id);

    let dead = dead_letters(&redis);
    let by_id = |id: &str| dead.iter().find(|d| text(d, "id") == id).unwrap();
    let shown: Value = serde_json::from_slice(&by_id(&id)["payload"]).unwrap();
    assert_eq!(shown["password"], "[redacted]");
    assert_eq!(shown["card"]["number"], "[redacted]");
    assert_eq!(shown["card"]["exp"], "12/30", "only the named fields go");
    assert_eq!(text(by_id(&id), "user_id"), "u-1");
    assert!(
        text(by_id(&not_json), "payload")
            .starts_with("[redacted: payload is not JSON, 23 bytes, sha256 "),
        "{}",
        text(by_id(&not_json), "payload")
    );
    assert_eq!(
        text(by_id(&big_id), "payload"),
        format!(
            "[payload too large: {} bytes, sha256 {}; the full payload is in the job record ward:{{q}}:job:{big_id}]",
            big.len(),
            sha256_hex(big.as_bytes())
        )
    );
    // The record keeps the originals.
    assert_eq!(
        record_field(&redis, &id, "payload").as_deref(),
        Some(payload)
    );
    assert_eq!(
        record_field(&redis, &big_id, "payload").as_deref(),
        Some(big.as_str())
    );

    // No secret anywhere an operator reads: the dead-letter stream, the
    // daemon's log, `ward dlq list/show`.
    let mut stream_text = String::new();
    for d in &dead {
        for v in d.values() {
            stream_text.push_str(&String::from_utf8_lossy(v));
        }
    }
    let listed = dlq_ok(&redis, "list", &["--json"]);
    let shown_human = dlq_ok(&redis, "show", &[&id]);
    let shown_json = dlq_ok(&redis, "show", &[&id, "--json"]);
    wait_for(Duration::from_secs(5), "the log to mention the job", || {
        ward_proc.logs().contains(&id)
    });
    let log = ward_proc.logs();
    for secret in ["hunter2-s3cret", "4111-9999-SECRET"] {
        for (place, haystack) in [
            ("dead-letter stream", &stream_text),
            ("daemon log", &log),
            ("dlq list", &listed),
            ("dlq show", &shown_human),
            ("dlq show --json", &shown_json),
        ] {
            assert!(
                !haystack.contains(secret),
                "`{secret}` found in the {place}"
            );
        }
    }

    // A requeue runs with the original payload, not the redacted one.
    ward_proc.stop();
    dlq_ok(&redis, "requeue", &[&id]);
    let entries = job_entries(&redis);
    assert_eq!(text(&entries[0].1, "payload"), payload);
}

fn sha256_hex(bytes: &[u8]) -> String {
    ward::redact::sha256_hex(bytes)
}

#[test]
fn a_second_requeue_or_discard_of_the_same_dead_letter_changes_nothing() {
    use ward::store::{DeadLetterAct, Resolution};
    let redis = Redis::start();
    let ward_proc = Ward::start(&config(&redis, 4, &job("flaky", "flaky", ""))).ready();
    let id = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]);
    wait_dead(&redis, &id);
    let orphan = redis::cmd("XADD")
        .arg("ward:{q}:jobs")
        .arg("*")
        .arg("payload")
        .arg("no job field")
        .query::<String>(&mut redis.con())
        .unwrap();
    wait_dead(&redis, &orphan);
    ward_proc.stop();
    let listed = list_json(&redis, &["--job", "flaky"]);
    let dead_id = listed[0]["dead_id"].as_str().unwrap().to_string();

    with_queue(&redis, async |q| {
        assert!(matches!(
            q.requeue_dead(&DeadLetterAct { dead_id: &dead_id, job_id: "1-1", by: "x", note: "" }).await.unwrap(),
            Resolution::Refused(why) if why.contains("is of job")
        ));
        assert!(matches!(
            q.requeue_dead(&DeadLetterAct {
                dead_id: &dead_id,
                job_id: &id,
                by: "a",
                note: ""
            })
            .await
            .unwrap(),
            Resolution::Done(Some(_))
        ));
        assert_eq!(
            q.requeue_dead(&DeadLetterAct {
                dead_id: &dead_id,
                job_id: &id,
                by: "b",
                note: ""
            })
            .await
            .unwrap(),
            Resolution::Gone
        );
        assert_eq!(
            q.discard_dead(&DeadLetterAct {
                dead_id: &dead_id,
                job_id: &id,
                by: "c",
                note: ""
            })
            .await
            .unwrap(),
            Resolution::Gone
        );
    });
    assert_eq!(job_entries(&redis).len(), 1, "requeued once");
    let s = show(&redis, &id);
    assert_eq!(s["state"], "queued", "{s}");
    assert_eq!(events(&s, "requeued").len(), 1, "{s}");
    assert!(events(&s, "discarded").is_empty(), "{s}");

    // A malformed entry names no job type: requeuing it is refused, and it
    // stays in the dead-letter stream to be discarded.
    let refused = dlq(&redis, "requeue", &[&orphan]);
    assert!(!refused.status.success());
    assert!(
        stdout(&refused).contains("malformed entry that names no job type"),
        "{}",
        stdout(&refused)
    );
    assert_eq!(ids_of(&list_json(&redis, &[])), [orphan.as_str()]);
    dlq_ok(&redis, "discard", &[&orphan]);
    assert!(dead_letters(&redis).is_empty());
}

/// `(count, by)` of each "trimmed dead letters" log line.
fn trim_logs(w: &Ward) -> Vec<(u64, String)> {
    w.log_lines()
        .iter()
        .filter(|l| l["message"] == "trimmed dead letters")
        .map(|l| {
            assert_eq!(l["queue"], "q", "{l}");
            (
                l["count"].as_u64().unwrap(),
                l["by"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn dead_len(redis: &Redis) -> usize {
    redis::cmd("XLEN")
        .arg("ward:{q}:dead")
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn retention_keeps_the_newest_dead_letters_up_to_dead_max_len() {
    let redis = Redis::start();
    let keys = "dead_max_len = 2\ndead_trim_interval = \"200ms\"";
    let cfg = config_queue(&redis, 1, FAST_RETRY, keys, &job("flaky", "flaky", ""));
    let ward_proc = Ward::start(&cfg).ready();
    let ids: Vec<String> = (0..5)
        .map(|_| xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]))
        .collect();
    for id in &ids {
        wait_dead(&redis, id);
    }
    wait_for(WAIT, "retention to trim to 2 entries", || {
        dead_len(&redis) == 2
    });
    assert_eq!(
        ids_of(&list_json(&redis, &[])),
        [ids[4].as_str(), ids[3].as_str()],
        "the newest stay"
    );
    wait_for(Duration::from_secs(5), "the trim to be logged", || {
        trim_logs(&ward_proc).iter().map(|(n, _)| n).sum::<u64>() >= 3
    });
    let logged = trim_logs(&ward_proc);
    assert!(logged.iter().all(|(_, by)| by == "len"), "{logged:?}");
    assert_eq!(logged.iter().map(|(n, _)| n).sum::<u64>(), 3, "{logged:?}");

    // The records of trimmed dead letters expire, and say why they will.
    for id in &ids[..3] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("ward:{{q}}:job:{id}"))
            .query(&mut redis.con())
            .unwrap();
        assert!(ttl > 0, "record of {id} has ttl {ttl}");
        let s = show(&redis, id);
        assert_eq!(s["state"], "dead", "{s}");
        assert_eq!(events(&s, "trimmed")[0]["why"], "dead_max_len", "{s}");
        let gone = dlq(&redis, "show", &[id]);
        assert!(
            stderr(&gone).contains("retention removed it (dead_max_len)"),
            "{}",
            stderr(&gone)
        );
    }
    for id in &ids[3..] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("ward:{{q}}:job:{id}"))
            .query(&mut redis.con())
            .unwrap();
        assert_eq!(ttl, -1, "a dead letter still listed keeps its record");
    }
}

#[test]
fn retention_removes_dead_letters_older_than_dead_max_age() {
    let redis = Redis::start();
    let keys = "dead_max_age = \"2s\"\ndead_trim_interval = \"100ms\"";
    let cfg = config_queue(&redis, 4, FAST_RETRY, keys, &job("flaky", "flaky", ""));
    let ward_proc = Ward::start(&cfg).ready();
    let id = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]);
    wait_dead(&redis, &id);
    let dead_at = list_json(&redis, &[])[0]["dead_at_ms"].as_u64().unwrap();
    wait_for(WAIT, "retention to remove the old dead letter", || {
        dead_len(&redis) == 0
    });
    let now = ward::store::now_ms();
    assert!(
        now >= dead_at + 2000,
        "removed {} ms after it was dead-lettered, before dead_max_age",
        now - dead_at
    );
    wait_for(Duration::from_secs(5), "the trim to be logged", || {
        !trim_logs(&ward_proc).is_empty()
    });
    assert_eq!(trim_logs(&ward_proc), vec![(1, "age".to_string())]);
    assert_eq!(
        events(&show(&redis, &id), "trimmed")[0]["why"],
        "dead_max_age"
    );
}

/// `requeue --all` over dead letters whose payloads add up to far more than
/// the command may hold: it pages through them, so its peak RSS stays well
/// under the total, and still requeues every one exactly once, with the
/// same lines as ever.
#[test]
fn requeue_all_holds_one_page_of_dead_letters_not_all_of_them() {
    const N: usize = 3000;
    let redis = Redis::start();
    let payload = "x".repeat(60 << 10);
    let mut con = redis.con();
    for chunk in 0..N / 500 {
        let mut p = redis::pipe();
        for i in chunk * 500..(chunk + 1) * 500 {
            let id = format!("big-{i}");
            p.cmd("HSET")
                .arg(format!("ward:{{q}}:job:{id}"))
                .arg(&["job", "noop", "state", "dead", "payload", "{}"][..])
                .ignore();
            p.cmd("XADD")
                .arg("ward:{q}:dead")
                .arg("*")
                .arg(
                    &[
                        "id",
                        id.as_str(),
                        "job",
                        "noop",
                        "queue",
                        "q",
                        "reason",
                        "permanent",
                    ][..],
                )
                .arg("payload")
                .arg(&payload)
                .ignore();
        }
        let () = p.query(&mut con).unwrap();
    }
    let total_kib = (N * payload.len() / 1024) as u64;
    let url = redis.url();
    let child = ward_command()
        .args(["dlq", "requeue", "--redis", &url, "q", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(hwm) = proc_status_kib(pid, "VmHWM") {
            peak = peak.max(hwm);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = child.wait_with_output().unwrap();
    let peak = watcher.join().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "no filter given: requeuing all {N} dead letter(s)"
        )),
        "{}",
        text.lines().next().unwrap_or("")
    );
    assert!(
        text.contains(&format!("requeued {N} job(s)")),
        "{}",
        text.lines().last().unwrap_or("")
    );
    let mut ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("requeued  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "each dead letter requeued once");
    assert!(dead_letters(&redis).is_empty());
    assert_eq!(job_entries(&redis).len(), N);
    assert!(
        peak > 0 && peak < total_kib / 3,
        "peak RSS {peak} KiB against {total_kib} KiB of dead-letter payloads"
    );
}
