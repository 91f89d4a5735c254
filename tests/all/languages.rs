//! The example plugins written in Python, JavaScript and C, each run through
//! the real daemon: real redis-server, real `ward` binary, components built
//! by `scripts/build-lang-plugins`. The three do the same work on the same
//! payloads, so one table of cases covers them all, byte for byte.

use std::time::Duration;

use ward_testkit::*;

/// How long the daemon may take to start. It compiles each plugin first, and
/// a debug-built daemon compiling the 18 MB Python or 12 MB JavaScript
/// component takes about a minute on a 2-core machine, longer while other
/// tests compile theirs.
const START: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(60);

/// The job record's `result` field, as raw bytes.
fn result_bytes(redis: &Redis, id: &str) -> Vec<u8> {
    redis::cmd("HGET")
        .arg(format!("ward:{{q}}:job:{id}"))
        .arg("result")
        .query(&mut redis.con())
        .unwrap()
}

/// How a case must end.
#[derive(Clone, Copy)]
enum Outcome {
    /// Succeeded on this attempt with exactly these result bytes.
    Succeeded { attempts: u64, result: &'static str },
    /// Dead after one attempt: a permanent failure, code `invalid-record`,
    /// whose message contains this.
    Invalid { message: &'static str },
}

/// Every plugin gets every case.
const CASES: &[(&str, Outcome)] = &[
    (
        r#"{"email":"Ada@Example.com","name":" Ada Lovelace ","simulate":"none"}"#,
        Outcome::Succeeded {
            attempts: 1,
            result: r#"{"email":"ada@example.com","name":"Ada Lovelace","attempt":1}"#,
        },
    ),
    // Fails twice (transient, http-503 from crm), then succeeds.
    (
        r#"{"email":"Grace@Navy.MIL","name":"Grace Hopper","simulate":"upstream-503"}"#,
        Outcome::Succeeded {
            attempts: 3,
            result: r#"{"email":"grace@navy.mil","name":"Grace Hopper","attempt":3}"#,
        },
    ),
    // Only ASCII letters are lower-cased and only ASCII whitespace trimmed;
    // other text passes through as UTF-8, quotes and controls are escaped
    // the same way in every language; unknown fields are ignored.
    (
        r#"{"name":"\tZoë \"Z\" \u0001\n","email":"ZOË@Example.COM","tags":[1,{"a":null}]}"#,
        Outcome::Succeeded {
            attempts: 1,
            result: r#"{"email":"zoË@example.com","name":"Zoë \"Z\" \u0001","attempt":1}"#,
        },
    ),
    (
        r#"{"email":"ada.example.com","name":"Ada"}"#,
        Outcome::Invalid { message: "email" },
    ),
    (
        r#"{"email":"ada@example.com","name":"   "}"#,
        Outcome::Invalid { message: "name" },
    ),
    (
        r#"{"email":"ada@example.com","name":"Ada","simulate":"upstream-504"}"#,
        Outcome::Invalid {
            message: "simulate",
        },
    ),
    (
        r#"{"email":"ada@example.com","name":"Ada""#,
        Outcome::Invalid {
            message: "not valid JSON",
        },
    ),
    (
        r#"["ada@example.com","Ada"]"#,
        Outcome::Invalid {
            message: "JSON object",
        },
    ),
];

/// A record whose ignored field `deep` nests `levels` arrays.
fn nested(levels: usize) -> String {
    format!(
        r#"{{"email":"a@b.c","name":"A","deep":{}{}}}"#,
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

/// [`CASES`], and the nesting limit: 256 levels in all, the record
/// included, in every language (CPython would crash a few thousand down).
fn cases() -> Vec<(String, Outcome)> {
    let mut cases: Vec<(String, Outcome)> =
        CASES.iter().map(|(p, o)| ((*p).to_owned(), *o)).collect();
    cases.push((
        nested(255),
        Outcome::Succeeded {
            attempts: 1,
            result: r#"{"email":"a@b.c","name":"A","attempt":1}"#,
        },
    ));
    cases.push((
        nested(256),
        Outcome::Invalid {
            message: "deeper than 256 levels",
        },
    ));
    cases
}

/// Runs every case through `plugin` (`<target>/plugins/<plugin>.wasm`)
/// under job type `job_type`, on a daemon of its own.
///
/// One job at a time: the daemon's instance pool allows 8 core instances
/// per concurrency slot, and a componentize-py component needs 14, so
/// attempts of Python jobs that overlap can fail to instantiate.
fn run_cases(job_type: &str, plugin: &str) {
    build_lang_plugins();
    let redis = Redis::start();
    let mut daemon = Ward::start(&config(&redis, 4, &job(job_type, plugin, "")));
    wait_for(START, "ward to compile the plugin and start", || {
        assert!(daemon.is_running(), "ward exited:\n{}", daemon.logs());
        daemon.logs().contains("ward is running")
    });

    let mut ids = Vec::new();
    let mut attempts_total = 0;
    for (payload, outcome) in cases() {
        let id = enqueue(&redis, job_type, &payload);
        let s = wait_final(&redis, &id, WAIT);
        let context = format!("{plugin}, payload {payload}: {s}");
        match outcome {
            Outcome::Succeeded { attempts, result } => {
                assert_eq!(s["state"], "succeeded", "{context}");
                assert_eq!(s["attempts"], attempts, "{context}");
                // Exactly these bytes (the text first, for a readable diff).
                let stored = result_bytes(&redis, &id);
                assert_eq!(String::from_utf8_lossy(&stored), result, "{context}");
                assert_eq!(stored, result.as_bytes(), "{context}");
                assert_eq!(s["result"], result, "{context}");
                if attempts > 1 {
                    // The failures before the success are remembered.
                    assert_eq!(s["last_error"]["class"], "transient", "{context}");
                    assert_eq!(s["last_error"]["code"], "http-503", "{context}");
                    assert_eq!(s["last_error"]["upstream"], "crm", "{context}");
                }
                attempts_total += attempts;
                // Each example reports progress once the record is valid
                // (ward:plugin@0.2.0); written within a quarter second.
                wait_for(Duration::from_secs(5), "its progress report", || {
                    show(&redis, &id)["progress"]["percent"] == 50
                });
                let shown = show(&redis, &id);
                assert_eq!(shown["progress"]["message"], "record is valid", "{context}");
            }
            Outcome::Invalid { message } => {
                assert_eq!(s["state"], "dead", "{context}");
                assert_eq!(s["attempts"], 1, "{context}");
                assert!(
                    s["progress"].is_null(),
                    "no progress before it is valid: {context}"
                );
                assert_eq!(s["last_error"]["class"], "permanent", "{context}");
                assert_eq!(s["last_error"]["code"], "invalid-record", "{context}");
                let said = s["last_error"]["message"].as_str().unwrap_or_default();
                assert!(said.contains(message), "{context}");
                let dead = dead_letters(&redis);
                let d = dead
                    .iter()
                    .find(|d| text(d, "id") == id)
                    .unwrap_or_else(|| panic!("no dead letter: {context}"));
                assert_eq!(text(d, "reason"), "permanent", "{context}");
                assert_eq!(text(d, "code"), "invalid-record", "{context}");
                assert_eq!(text(d, "payload"), payload, "{context}");
                attempts_total += 1;
            }
        }
        ids.push(id);
    }

    // The plugin called the host's `log` once per attempt, and the daemon
    // tagged each line with the job.
    let expected_prefix = format!("{plugin}: attempt ");
    let plugin_lines = || {
        daemon
            .log_lines()
            .into_iter()
            .filter(|l| l["target"] == "ward::plugin")
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(5), "the log to be flushed", || {
        plugin_lines().len() as u64 >= attempts_total
    });
    let lines = plugin_lines();
    assert_eq!(lines.len() as u64, attempts_total, "{lines:?}");
    for line in &lines {
        assert_eq!(line["level"], "INFO", "{line}");
        let message = line["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(&expected_prefix), "{line}");
        assert!(ids.iter().any(|id| line["job_id"] == id.as_str()), "{line}");
    }
    let retried = &ids[1];
    let runs = lines.iter().filter(|l| l["job_id"] == retried.as_str());
    assert_eq!(runs.count(), 3, "one line per attempt of {retried}");
}

#[test]
fn python_example_transforms_retries_and_refuses_records() {
    run_cases("py", "python-example");
}

#[test]
fn js_example_transforms_retries_and_refuses_records() {
    run_cases("js", "js-example");
}

#[test]
fn c_example_transforms_retries_and_refuses_records() {
    run_cases("c", "c-example");
}
