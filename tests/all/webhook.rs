//! The webhook plugin (`plugins/webhook`) against real receivers: a private
//! redis-server, the real `ward` daemon, and [`HttpStub`]s on 127.0.0.1
//! that the job types are allowed to reach.

use std::time::Duration;

use serde_json::Value;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
/// Fast retries, so a transient failure costs milliseconds; a receiver's
/// Retry-After still wins.
const RETRY: &str = "max_attempts = 3\ninitial_delay = \"20ms\"\njitter = \"none\"";
const TOKEN: &str = "whk-7c1d9e0f3a2b";

/// A `webhook` job type `name`, allowed to reach 127.0.0.1:`port`.
fn webhook(name: &str, port: u16, extra: &str) -> String {
    job(
        name,
        "webhook",
        &format!("http = {{ allow = [\"127.0.0.1:{port}\"], timeout = \"5s\" }}\n{extra}"),
    )
}

/// A payload POSTing `body` to `path` on 127.0.0.1:`port`.
fn payload(port: u16, path: &str, body: &str) -> String {
    format!(r#"{{"url":"http://127.0.0.1:{port}{path}","body":{body}}}"#)
}

fn ms(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn a_delivered_webhook_carries_its_key_type_body_and_token() {
    let stub = HttpStub::start(vec![(200, String::new(), "thanks".into())]);
    let redis = Redis::start();
    let jobs = webhook("hook", stub.port, "")
        + &webhook("signed", stub.port, "secrets = [\"WEBHOOK_TOKEN\"]");
    // A delivery is logged at debug (see the 503 test for the default).
    let ward_proc = Ward::start_with_env(
        &config_with(&redis, 4, RETRY, &jobs),
        &[
            ("WEBHOOK_TOKEN", TOKEN),
            ("RUST_LOG", "info,ward::plugin=debug"),
        ],
    )
    .ready();

    // No key given: the job id is the idempotency key; no token granted.
    let body = r#"{"event": "order.paid", "order": {"id": 17, "total": 12.50}}"#;
    let plain = enqueue(
        &redis,
        "hook",
        &format!(
            r#"{{"url":"http://127.0.0.1:{}/hook","body":{body},"headers":{{"X-Source":"ward"}}}}"#,
            stub.port
        ),
    );
    let s = wait_final(&redis, &plain, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    assert_eq!(s["result"], "thanks", "{s}");
    let got = stub.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, "POST /hook HTTP/1.1");
    assert_eq!(got[0].headers["idempotency-key"], plain);
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(got[0].headers["x-source"], "ward");
    assert!(
        !got[0].headers.contains_key("authorization"),
        "a job type not granted the token sends none: {:?}",
        got[0].headers
    );
    let sent = r#"{"event":"order.paid","order":{"id":17,"total":12.50}}"#;
    assert_eq!(
        got[0].body, sent,
        "the body, compact, key order and numbers as enqueued"
    );
    assert_eq!(got[0].headers["content-length"], sent.len().to_string());
    assert!(!got[0].headers.contains_key("transfer-encoding"));

    // A given key is forwarded as it is; the granted token goes along.
    let signed = enqueue_with(
        &redis,
        &["--idempotency-key", "order-17"],
        "signed",
        &payload(stub.port, "/signed", r#"{"n":1}"#),
    );
    let s = wait_final(&redis, &signed, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    let got = stub.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].line, "POST /signed HTTP/1.1");
    assert_eq!(got[1].headers["idempotency-key"], "order-17");
    assert_eq!(got[1].headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(got[1].body, r#"{"n":1}"#);

    // One log line per attempt, naming the method, host and status.
    wait_for(Duration::from_secs(5), "the plugin's log lines", || {
        let lines = ward_proc.log_lines();
        [&plain, &signed].iter().all(|id| {
            lines.iter().any(|l| {
                l["target"] == "ward::plugin"
                    && l["job_id"] == id.as_str()
                    && l["message"] == "POST 127.0.0.1: HTTP 200"
            })
        })
    });
    assert!(
        !ward_proc.logs().contains(TOKEN),
        "the token is never logged"
    );
    assert!(
        !ward_proc.logs().contains("order.paid"),
        "the body is never logged"
    );
}

#[test]
fn a_503_is_retried_and_the_next_attempt_delivers() {
    let stub = HttpStub::start(vec![
        (503, String::new(), "busy".into()),
        (200, String::new(), "ok".into()),
    ]);
    let redis = Redis::start();
    // The default log level (the harness's own is `ward=debug`).
    let ward_proc = Ward::start_with_env(
        &config_with(&redis, 4, RETRY, &webhook("hook", stub.port, "")),
        &[("RUST_LOG", "info")],
    )
    .ready();
    let id = enqueue(&redis, "hook", &payload(stub.port, "/hook", "{}"));
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    assert_eq!(s["attempts"], 2, "{s}");
    // At the default level the failed request is logged and the delivery
    // is not (a debug line).
    let plugin_lines = |ward_proc: &Ward| -> Vec<String> {
        ward_proc
            .log_lines()
            .iter()
            .filter(|l| l["target"] == "ward::plugin" && l["job_id"] == id.as_str())
            .map(|l| l["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    wait_for(Duration::from_secs(5), "the 503's log line", || {
        !plugin_lines(&ward_proc).is_empty()
    });
    assert_eq!(plugin_lines(&ward_proc), ["POST 127.0.0.1: HTTP 503"]);
    let h = history(&s);
    assert_eq!(h[0]["class"], "transient", "{s}");
    assert_eq!(h[0]["code"], "http-503", "{s}");
    assert_eq!(h[0]["upstream"], "127.0.0.1", "{s}");
    assert_eq!(h[1]["class"], "success", "{s}");
    let got = stub.received();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|r| r.headers["idempotency-key"] == id),
        "both attempts carry the same key"
    );
}

#[test]
fn a_429_with_retry_after_waits_as_long_as_the_receiver_asks() {
    let stub = HttpStub::start(vec![
        (429, "retry-after: 1\r\n".into(), "slow down".into()),
        (200, String::new(), "ok".into()),
    ]);
    let redis = Redis::start();
    let _ward = Ward::start(&config_with(
        &redis,
        4,
        RETRY,
        &webhook("hook", stub.port, ""),
    ))
    .ready();
    let id = enqueue(&redis, "hook", &payload(stub.port, "/hook", "{}"));
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    let h = history(&s);
    assert_eq!(h.len(), 2, "{s}");
    assert_eq!(h[0]["class"], "recoverable", "{s}");
    assert_eq!(h[0]["code"], "http-429", "{s}");
    assert_eq!(
        ms(&h[0], "delay_ms"),
        1000,
        "Retry-After, not the 20 ms backoff"
    );
    let gap = ms(&h[1], "started_at") - ms(&h[0], "finished_at");
    assert!(
        gap >= 1000,
        "attempt 2 started {gap} ms after attempt 1 ended"
    );
    assert!(ms(&h[1], "started_at") - ms(&h[0], "started_at") >= 1000);
}

#[test]
fn a_400_is_dead_after_exactly_one_attempt() {
    let stub = HttpStub::start(vec![(400, String::new(), "no such order".into())]);
    let redis = Redis::start();
    let _ward = Ward::start(&config_with(
        &redis,
        4,
        RETRY,
        &webhook("hook", stub.port, ""),
    ))
    .ready();
    let id = enqueue(&redis, "hook", &payload(stub.port, "/hook", "{}"));
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    assert_eq!(s["dead_reason"], "permanent", "{s}");
    assert_eq!(s["last_error"]["code"], "http-400", "{s}");
    assert_eq!(s["last_error"]["upstream"], "127.0.0.1", "{s}");
    assert_eq!(stub.requests().len(), 1);
}

#[test]
fn a_receiver_outside_the_allow_list_is_never_called() {
    let allowed = HttpStub::start(vec![(200, String::new(), String::new())]);
    let other = HttpStub::start(vec![(200, String::new(), String::new())]);
    let redis = Redis::start();
    let _ward = Ward::start(&config_with(
        &redis,
        4,
        RETRY,
        &webhook("hook", allowed.port, ""),
    ))
    .ready();
    let id = enqueue(&redis, "hook", &payload(other.port, "/hook", "{}"));
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    assert_eq!(s["last_error"]["code"], "http-denied", "{s}");
    assert!(other.requests().is_empty(), "the stub was not called");
    assert!(allowed.requests().is_empty());
}

#[test]
fn the_url_secret_stands_in_for_a_missing_url() {
    let stub = HttpStub::start(vec![(200, String::new(), String::new())]);
    let redis = Redis::start();
    let jobs = webhook("fixed", stub.port, "secrets = [\"WEBHOOK_URL\"]")
        + &webhook("hook", stub.port, "");
    let secret_url = format!("http://127.0.0.1:{}/from-secret/s3cret-path", stub.port);
    let ward_proc = Ward::start_with_env(
        &config_with(&redis, 4, RETRY, &jobs),
        &[("WEBHOOK_URL", secret_url.as_str())],
    )
    .ready();

    let id = enqueue(&redis, "fixed", r#"{"body":{"n":2}}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "succeeded", "{s}");
    let got = stub.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].line, "POST /from-secret/s3cret-path HTTP/1.1");
    assert!(
        !ward_proc.logs().contains("s3cret-path"),
        "the URL's path is not logged"
    );

    // Without the secret, a payload without `url` cannot be delivered.
    let id = enqueue(&redis, "hook", r#"{"body":{"n":2}}"#);
    let s = wait_final(&redis, &id, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    assert_eq!(s["attempts"], 1, "{s}");
    assert_eq!(s["last_error"]["code"], "invalid-payload", "{s}");
    assert_eq!(stub.received().len(), 1, "nothing more was sent");
}

#[test]
fn payloads_it_cannot_deliver_are_dead_at_once_as_invalid_payload() {
    let stub = HttpStub::start(vec![(200, String::new(), String::new())]);
    let redis = Redis::start();
    let _ward = Ward::start(&config_with(
        &redis,
        4,
        RETRY,
        &webhook("hook", stub.port, ""),
    ))
    .ready();
    let url = format!("http://127.0.0.1:{}/hook", stub.port);
    for bad in [
        "not json".to_string(),
        format!(r#"{{"url":"{url}"}}"#),
        format!(r#"{{"url":"{url}","body":{{}},"header":{{}}}}"#),
        format!(r#"{{"url":"{url}","body":{{}},"headers":{{"Idempotency-Key":"mine"}}}}"#),
        r#"{"url":"ftp://127.0.0.1/hook","body":{}}"#.to_string(),
    ] {
        let id = enqueue(&redis, "hook", &bad);
        let s = wait_final(&redis, &id, WAIT);
        assert_eq!(s["state"], "dead", "{bad}: {s}");
        assert_eq!(s["attempts"], 1, "{bad}: {s}");
        assert_eq!(s["dead_reason"], "permanent", "{bad}: {s}");
        assert_eq!(s["last_error"]["code"], "invalid-payload", "{bad}: {s}");
    }
    assert!(stub.requests().is_empty(), "nothing was sent");
}

#[test]
fn webhooks_to_one_receiver_reuse_pooled_connections() {
    let stub = UpstreamStub::keep_alive(Duration::from_millis(2));
    let redis = Redis::start();
    let allow = |extra: &str| {
        format!(
            "http = {{ allow = [\"127.0.0.1:{}\"], timeout = \"5s\"{extra} }}",
            stub.port
        )
    };
    let jobs = job("pooled", "webhook", &allow(""))
        + &job("unpooled", "webhook", &allow(", pool_max_idle = 0"));
    let concurrency = 8;
    let _ward = Ward::start(&config_with(&redis, concurrency, RETRY, &jobs)).ready();

    let n = 300;
    let body = payload(stub.port, "/hook", "{}");
    let ids = xadd_many(&redis, n, "pooled", &body);
    for id in &ids {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    assert_eq!(stub.requests(), n);
    let pooled = stub.connections();
    assert!(
        pooled <= 2 * concurrency as usize,
        "{n} requests with {concurrency} in flight opened {pooled} connections"
    );

    // The same jobs without a pool: a connection for every request.
    let ids = xadd_many(&redis, 50, "unpooled", &body);
    for id in &ids {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    assert_eq!(stub.connections() - pooled, 50);
}

/// A `webhook` job type `name` allowed to reach `stub`, with `extra` keys
/// in its `http` table.
fn https_hook(name: &str, stub: &HttpsStub, extra: &str) -> String {
    job(
        name,
        "webhook",
        &format!(
            "http = {{ allow = [\"127.0.0.1:{}\"], timeout = \"5s\"{extra} }}\n",
            stub.port
        ),
    )
}

#[test]
fn an_https_upstream_of_a_private_ca_is_reached_with_ca_file_over_http1_or_http2() {
    let stub = HttpsStub::start();
    let redis = Redis::start();
    let ca = format!(", ca_file = \"{}\"", stub.ca_file.display());
    let jobs = https_hook("untrusted", &stub, "")
        + &https_hook("h1", &stub, &ca)
        + &https_hook("h2", &stub, &format!("{ca}, http2 = true"));
    let ward_proc = Ward::start(&config_with(&redis, 4, "max_attempts = 1", &jobs)).ready();
    let body = format!(
        r#"{{"url":"https://127.0.0.1:{}/hook","body":{{"n":1}}}}"#,
        stub.port
    );

    // Mozilla's roots alone do not vouch for a private CA.
    let refused = enqueue(&redis, "untrusted", &body);
    let s = wait_final(&redis, &refused, WAIT);
    assert_eq!(s["state"], "dead", "{s}");
    let why = s["last_error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    assert!(why.contains("certificate"), "{s}\n{}", ward_proc.logs());
    assert!(stub.versions().is_empty(), "{:?}", stub.versions());

    // With the CA: HTTP/1.1 unless asked, over pooled connections.
    let run = |job: &str| {
        let ids: Vec<String> = (0..20).map(|_| enqueue(&redis, job, &body)).collect();
        for id in &ids {
            let s = wait_final(&redis, id, WAIT);
            assert_eq!(
                (s["state"].as_str(), s["result"].as_str()),
                (Some("succeeded"), Some("ok")),
                "{s}"
            );
        }
    };
    let before = stub.connections();
    run("h1");
    assert_eq!(stub.versions(), vec!["HTTP/1.1"; 20]);
    let h1_connections = stub.connections() - before;
    assert!(
        (1..=4).contains(&h1_connections),
        "{h1_connections} connections for 20 requests at concurrency 4"
    );

    // `http2 = true`: ALPN picks HTTP/2.
    let before = stub.connections();
    run("h2");
    assert_eq!(stub.versions()[20..], vec!["HTTP/2.0"; 20]);
    let h2_connections = stub.connections() - before;
    assert!(
        (1..=4).contains(&h2_connections),
        "{h2_connections} connections for 20 requests at concurrency 4"
    );
}

#[test]
fn over_http2_a_job_type_opens_as_many_connections_as_the_servers_stream_limit_calls_for() {
    // 250 attempts at once against a server that lets a connection carry
    // 100 streams: hyper-util's client alone would keep one connection and
    // queue 150 requests behind it.
    const AT_ONCE: usize = 250;
    // Held long enough for every attempt to start, even in a debug build
    // on a busy machine.
    let stub = HttpsStub::limited(Duration::from_secs(8), 100);
    let plain = HttpsStub::http1_only();
    let redis = Redis::start();
    let h2 = |stub: &HttpsStub| format!(", ca_file = \"{}\", http2 = true", stub.ca_file.display());
    let jobs = https_hook("h2", &stub, &h2(&stub)).replace("timeout = \"5s\"", "timeout = \"60s\"")
        + &https_hook("h1", &plain, &h2(&plain));
    let ward_proc = Ward::start(&config_with(
        &redis,
        AT_ONCE as u32,
        "max_attempts = 1",
        &jobs,
    ))
    .ready();
    let run = |job: &str, stub: &HttpsStub, n: usize| {
        let body = format!(
            r#"{{"url":"https://127.0.0.1:{}/hook","body":{{"n":1}}}}"#,
            stub.port
        );
        // One pipeline: enqueued one by one (a process each), the first
        // requests could be answered before the last were sent.
        let ids = xadd_many(&redis, n, job, &body);
        for id in &ids {
            let s = wait_final(&redis, id, WAIT);
            assert_eq!(
                (s["state"].as_str(), s["result"].as_str()),
                (Some("succeeded"), Some("ok")),
                "{s}\n{}",
                ward_proc.logs()
            );
        }
    };

    run("h2", &stub, AT_ONCE);
    assert_eq!(stub.versions(), vec!["HTTP/2.0"; AT_ONCE]);
    assert_eq!(
        stub.max_open(),
        AT_ONCE,
        "every attempt's request should be at the server at once"
    );
    let connections = stub.connections();
    assert!(
        (3..=6).contains(&connections),
        "{connections} connections for {AT_ONCE} streams at 100 per connection"
    );

    // Once finished, the connections are reused, not reopened.
    run("h2", &stub, 20);
    assert_eq!(stub.connections(), connections);

    // An upstream without HTTP/2 is reached over HTTP/1.1.
    run("h1", &plain, 10);
    assert_eq!(plain.versions(), vec!["HTTP/1.1"; 10]);
}
