//! The web admin screen in a real headless Chromium (Debian's `chromium`
//! over `chromedriver`, [`browser`]): real redis-server, real `ward run`
//! and `ward admin` processes with the real `flaky` and `echo` plugins.
//! The overview shows what Redis holds; a dead job is requeued from its
//! page with a note and the audit trail shows it; a viewer sees no action
//! and the server refuses a viewer's forged POST; a `<script>` payload is
//! text; a paused queue shows paused and resumes from the page.

mod browser;
mod charts;
mod daemons;
mod dead_groups;
mod edit;
mod search;

use std::future::Future;
use std::time::Duration;

use fantoccini::Locator;
use ward_testkit::*;

use crate::admin::client::{
    AdminProc, OPERATOR, VIEWER, admin_table, get_ok, post_form, token_env, wait_serving,
};
use browser::Browser;

const WAIT: Duration = Duration::from_secs(30);
/// A single attempt: the first failure is final.
const ONE_ATTEMPT: &str = "max_attempts = 1\njitter = \"none\"";
/// A payload field the `vault` job type redacts, and its secret value.
const SECRET: &str = "hunter2-web-s3cret";

/// Runs a test's body on a Tokio runtime (the WebDriver client is async;
/// the harness's helpers block, so the runtime has threads to spare).
fn run<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

/// Queue `q` with `vault` (flaky, `password` redacted, upstream `smtp`)
/// and, when `echo`, an `echo` job type; queue `mail` with `send` (echo);
/// the admin API and screen on `port`.
fn config(redis: &Redis, port: u16, echo: bool) -> String {
    let top = format!("{METRICS_ANY_PORT}\n{}", admin_table(port));
    let mut jobs = job(
        "vault",
        "flaky",
        "redact = [\"password\"]\nupstreams = [\"smtp\"]",
    );
    if echo {
        jobs.push_str(&job("echo", "echo", ""));
    }
    jobs.push_str(&format!(
        "[[upstream]]\nname = \"smtp\"\nrate = 100\nconcurrency = 3\n\n[[queue]]\nname = \"mail\"\n\n{}",
        job_table("send", "mail", &plugin("echo"), "")
    ));
    ward_testkit::Config::new(&redis.url())
        .top(&top)
        .retry(ONE_ATTEMPT)
        .jobs(&jobs)
        .render()
}

/// Runs `ward run` with `cfg` until each of `entries` (job type, payload)
/// is dead-lettered; their ids.
fn dead_lettered(redis: &Redis, cfg: &str, entries: &[(&str, &str)]) -> Vec<String> {
    let daemon = Ward::start_with_env(cfg, &token_env()).ready();
    let ids: Vec<String> = entries
        .iter()
        .map(|(job, payload)| xadd(redis, job, payload, &[]))
        .collect();
    for id in &ids {
        assert_eq!(wait_final(redis, id, WAIT)["state"], "dead", "{id}");
    }
    assert!(daemon.stop().success());
    ids
}

fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn count(redis: &Redis, cmd: &str, key: &str) -> u64 {
    redis::cmd(cmd).arg(key).query(&mut redis.con()).unwrap()
}

#[test]
fn the_overview_shows_every_queue_and_the_counts_redis_holds() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let permanent = r#"{"fail":"permanent"}"#;
    let dead_ids = dead_lettered(&redis, &cfg, &[("vault", permanent), ("vault", permanent)]);
    // `ward admin` alone: nothing runs, so what Redis holds stays put.
    let _api = AdminProc::start(&cfg, port);
    for i in 0..3 {
        let order = format!("o-{i}");
        xadd(
            &redis,
            "vault",
            r#"{"fail":"transient"}"#,
            &[("order_id", &order)],
        );
    }
    enqueue_with(&redis, &["--delay", "1h"], "vault", permanent);
    lease_to(&mut redis.con(), "ward:{q}:jobs", "test-consumer", 1);
    let _: String = redis::cmd("XADD")
        .arg("ward:{mail}:jobs")
        .arg("*")
        .arg("job")
        .arg("send")
        .arg("payload")
        .arg("{}")
        .query(&mut redis.con())
        .unwrap();
    let (dead, delayed) = (
        count(&redis, "XLEN", "ward:{q}:dead"),
        count(&redis, "ZCARD", "ward:{q}:delayed"),
    );
    assert_eq!((dead, delayed), (2, 1));

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), VIEWER.2).await;
        let cell =
            |queue: &str, class: &str| format!("#queues tr[data-queue=\"{queue}\"] td.{class}");
        assert_eq!(b.text(&cell("q", "ready")).await, "2");
        assert_eq!(b.text(&cell("q", "leased")).await, "1");
        assert_eq!(b.text(&cell("q", "delayed")).await, delayed.to_string());
        assert_eq!(b.text(&cell("q", "dead")).await, dead.to_string());
        assert_eq!(b.text(&cell("q", "paused")).await, "no");
        assert_eq!(b.text(&cell("mail", "ready")).await, "1");
        assert_eq!(b.text(&cell("mail", "dead")).await, "0");
        let row = b.text("#queues tr[data-queue=\"q\"]").await;
        assert!(row.contains("test-consumer (1 in flight"), "{row}");
        // The page and the API read the same numbers.
        let api = get_ok(port, "/v1/queues/q", VIEWER.2);
        assert_eq!(api["jobs"]["ready"], 2, "{api}");
        assert_eq!(api["jobs"]["leased"], 1, "{api}");
        // An unknown page is an HTML 404, not the API's JSON.
        b.goto(&format!("{}/ui/nothing/here", base(port))).await;
        assert!(b.text("#error").await.contains("no such page"));
        b.goto(&format!("{}/ui/", base(port))).await;
        // The queue's link leads to its page.
        b.click("#queues tr[data-queue=\"q\"] td a").await;
        assert_eq!(b.text("#queue-name").await, "q");
        assert_eq!(b.text("#dead").await, "2");
        // Its jobs by state and by correlation field, as `ward job list`.
        assert_eq!(b.count("#jobs tbody tr").await, 3, "2 queued, 1 delayed");
        b.client
            .find(Locator::Css("#search-form select[name=state]"))
            .await
            .unwrap()
            .select_by_value("running")
            .await
            .unwrap();
        b.click("#search-form button").await;
        b.wait_text("main", "(showing running)").await;
        assert_eq!(b.count("#jobs tbody tr").await, 1);
        b.goto(&format!("{}/ui/queues/q?field=order_id%3Do-2", base(port)))
            .await;
        let found = b.text("#jobs tbody").await;
        assert!(
            found.contains("order_id=o-2") && !found.contains("o-1"),
            "{found}"
        );
        // An id opens its job's page.
        b.goto(&format!("{}/ui/queues/q?id={}", base(port), dead_ids[0]))
            .await;
        assert_eq!(b.text("#job-state").await, "dead");
        b.quit().await;
    });
}

#[test]
fn a_dead_job_requeued_from_its_page_with_a_note_succeeds_and_the_audit_shows_the_note() {
    let redis = Redis::start();
    let port = free_port();
    // No `echo` job type yet: the job is dead-lettered as unknown...
    let ids = dead_lettered(
        &redis,
        &config(&redis, port, false),
        &[("echo", r#"{"hello":"web"}"#)],
    );
    let id = &ids[0];
    // ... then a daemon that has it serves the screen.
    let daemon = Ward::start_with_env(&config(&redis, port, true), &token_env()).ready();
    wait_serving(port);
    let note = "echo is deployed now; requeue from the screen";

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        let after_login = b.client.current_url().await.unwrap();
        assert_eq!(after_login.path(), "/ui/");
        assert!(!after_login.as_str().contains(OPERATOR.2));
        b.goto(&format!("{}/ui/queues/q/jobs/{id}", base(port)))
            .await;
        assert_eq!(b.text("#job-state").await, "dead");
        b.fill("#requeue-form input[name=note]", note).await;
        b.click("#requeue-form button").await;
        b.wait_text("#flash", "requeued").await;
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
        b.goto(&format!("{}/ui/queues/q/jobs/{id}", base(port)))
            .await;
        b.wait_text("#job-state", "succeeded").await;
        let history = b.text("#history").await;
        assert!(history.contains("requeued"), "{history}");
        assert!(history.contains("success"), "{history}");
        // The audit page shows it too.
        b.goto(&format!("{}/ui/audit", base(port))).await;
        let audit_page = b.text("#audit").await;
        assert!(audit_page.contains(note), "{audit_page}");
        b.quit().await;
    });

    let trail = audit(&redis);
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(
        (
            trail[0]["action"].as_str(),
            trail[0]["by"].as_str(),
            trail[0]["via"].as_str(),
            trail[0]["note"].as_str()
        ),
        (Some("requeue"), Some(OPERATOR.0), Some("web"), Some(note))
    );
    let text = stdout(&ward(&["audit", "--redis", &redis.url()]));
    assert!(text.contains(note), "{text}");
    // The login is logged by the token's name, never its value.
    let logs = daemon.logs();
    assert!(logs.contains("web screen: logged in"), "{logs}");
    assert!(
        !logs.contains(OPERATOR.2),
        "the token is in the daemon's log"
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_viewer_sees_no_action_and_the_server_refuses_a_forged_post() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let payload = format!(r#"{{"fail":"permanent","message":"{SECRET}-free message"}}"#);
    let secret_payload = format!(r#"{{"fail":"permanent","password":"{SECRET}"}}"#);
    let ids = dead_lettered(
        &redis,
        &cfg,
        &[("vault", &payload), ("vault", &secret_payload)],
    );
    let _api = AdminProc::start(&cfg, port);
    let pages = [
        "/ui/".to_string(),
        "/ui/queues/q".to_string(),
        "/ui/queues/q/dead".to_string(),
        format!("/ui/queues/q/jobs/{}", ids[0]),
        "/ui/breakers".to_string(),
        "/ui/audit".to_string(),
    ];

    let (cookie, csrf) = {
        let mut got = (String::new(), String::new());
        run(async {
            let b = Browser::start().await;
            // An operator sees the actions...
            b.login(&base(port), OPERATOR.2).await;
            b.goto(&format!("{}/ui/queues/q/jobs/{}", base(port), ids[0]))
                .await;
            assert_eq!(b.text("#job-state").await, "dead");
            assert_eq!(
                b.count("form.action").await,
                3,
                "requeue, edit-and-requeue and discard"
            );
            b.click("header form button").await;
            b.text("#token").await;
            // ... a viewer none, on any page.
            b.login(&base(port), VIEWER.2).await;
            for page in &pages {
                b.goto(&format!("{}{page}", base(port))).await;
                b.text("main").await;
                assert_eq!(
                    b.count("form.action").await,
                    0,
                    "{page}: {}",
                    b.body_text().await
                );
                assert_eq!(
                    b.count("button[name=requeue], button[name=resume], button[name=pause], button[name=edit], textarea")
                        .await,
                    0
                );
            }
            assert!(b.text("#who").await.contains("viewer"));
            // A viewer's job page masks the redacted field.
            b.goto(&format!("{}/ui/queues/q/jobs/{}", base(port), ids[1]))
                .await;
            let shown = b.text("#payload").await;
            assert!(
                !shown.contains(SECRET) && shown.contains("[redacted]"),
                "{shown}"
            );
            let source = b.client.source().await.unwrap();
            assert!(
                !source.contains(SECRET),
                "the secret is somewhere on the page"
            );
            let csrf = b
                .client
                .find(Locator::Css("input[name=csrf]"))
                .await
                .unwrap()
                .attr("value")
                .await
                .unwrap()
                .unwrap();
            got = (b.session_cookie().await, csrf);
            b.quit().await;
        });
        got
    };

    // The viewer's own session, its CSRF token and the right Origin: a
    // request as valid as can be but for the role. Refused, nothing changes.
    let headers = [
        ("Cookie", format!("ward_session={cookie}")),
        ("Origin", base(port)),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = format!("csrf={csrf}&note=forged");
    for path in [
        format!("/ui/queues/q/dead/{}/requeue", ids[0]),
        format!("/ui/queues/q/dead/{}/discard", ids[0]),
        "/ui/queues/q/pause".to_string(),
        "/ui/queues/q/dead/bulk".to_string(),
        "/ui/queues/q/breakers/smtp/open".to_string(),
    ] {
        let (status, raw) = post_form(
            port,
            &path,
            &headers,
            &format!("{body}&op=discard&job=vault&for=1h"),
        );
        assert_eq!(status, 403, "{path}: {raw}");
        assert!(raw.contains("viewer role"), "{raw}");
    }
    assert_eq!(count(&redis, "XLEN", "ward:{q}:dead"), 2);
    assert_eq!(count(&redis, "XLEN", "ward:audit"), 0);
    assert_eq!(
        get_ok(port, "/v1/queues/q", VIEWER.2)["paused"],
        serde_json::json!([])
    );
    for id in &ids {
        assert_eq!(show(&redis, id)["state"], "dead");
    }
}

#[test]
fn an_operators_post_from_another_site_or_without_the_csrf_token_is_refused() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let ids = dead_lettered(&redis, &cfg, &[("vault", r#"{"fail":"permanent"}"#)]);
    let _api = AdminProc::start(&cfg, port);
    let mut got = (String::new(), String::new());
    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        let csrf = b
            .client
            .find(Locator::Css("input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        got = (b.session_cookie().await, csrf);
        b.quit().await;
    });
    let (cookie, csrf) = got;
    let cookie = format!("ward_session={cookie}");
    let path = format!("/ui/queues/q/dead/{}/discard", ids[0]);
    let good = format!("csrf={csrf}&note=why");
    for (headers, body, why) in [
        (
            vec![
                ("Cookie", cookie.as_str()),
                ("Origin", "http://evil.example"),
            ],
            good.as_str(),
            "Origin",
        ),
        (
            vec![("Cookie", cookie.as_str())],
            good.as_str(),
            "no Origin",
        ),
        (
            vec![
                ("Cookie", cookie.as_str()),
                ("Referer", "http://evil.example/x"),
            ],
            good.as_str(),
            "Referer",
        ),
        (
            vec![("Cookie", cookie.as_str()), ("Origin", &base(port))],
            "csrf=wrong&note=why",
            "CSRF",
        ),
        (
            vec![("Cookie", cookie.as_str()), ("Origin", &base(port))],
            "note=why",
            "CSRF",
        ),
    ] {
        let (status, raw) = post_form(port, &path, &headers, body);
        assert_eq!(status, 403, "{why}: {raw}");
    }
    // No session at all.
    let (status, _) = post_form(port, &path, &[("Origin", &base(port))], &good);
    assert_eq!(status, 401);
    assert_eq!(count(&redis, "XLEN", "ward:{q}:dead"), 1);
    assert_eq!(count(&redis, "XLEN", "ward:audit"), 0);
    // The same request from the screen's origin goes through.
    let (status, raw) = post_form(
        port,
        &path,
        &[("Cookie", &cookie), ("Origin", &base(port))],
        &good,
    );
    assert_eq!(status, 303, "{raw}");
    assert_eq!(count(&redis, "XLEN", "ward:{q}:dead"), 0);
}

#[test]
fn a_script_in_a_payload_renders_as_text_and_runs_nothing() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let script = "<script>alert(1)</script>";
    let payload = format!(r#"{{"fail":"permanent","message":"{script}","code":"<b>x</b>"}}"#);
    let ids = dead_lettered(&redis, &cfg, &[("vault", &payload)]);
    let _api = AdminProc::start(&cfg, port);
    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        for page in [
            "/ui/queues/q/dead".to_string(),
            format!("/ui/queues/q/jobs/{}", ids[0]),
        ] {
            b.goto(&format!("{}{page}", base(port))).await;
            let text = b.text("main").await;
            assert!(text.contains(script), "{page}: {text}");
            assert!(text.contains("<b>x</b>"), "{page}: {text}");
            assert_eq!(b.count("main script, main b").await, 0, "{page}");
            assert!(
                b.client.get_alert_text().await.is_err(),
                "an alert opened on {page}"
            );
            let source = b.client.source().await.unwrap();
            assert!(
                source.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{source}"
            );
        }
        assert!(b.text("#payload").await.contains(script));
        b.quit().await;
    });
}

#[test]
fn a_paused_queue_shows_as_paused_and_resumes_from_the_page() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let _api = AdminProc::start(&cfg, port);
    let paused = ward(&[
        "pause",
        "q",
        "--note",
        "smtp maintenance",
        "--redis",
        &redis.url(),
    ]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        let cell = b.text("#queues tr[data-queue=\"q\"] td.paused").await;
        assert!(
            cell.contains("queue paused") && cell.contains("smtp maintenance"),
            "{cell}"
        );
        b.goto(&format!("{}/ui/queues/q", base(port))).await;
        assert_eq!(b.text("#queue-state").await, "paused");
        assert!(b.text("#pauses").await.contains("smtp maintenance"));
        // The note is required: an empty one is refused and changes nothing.
        b.click("#pauses button[name=resume]").await;
        assert_eq!(b.text("#queue-state").await, "paused");
        b.fill("#pauses input[name=note]", "maintenance over").await;
        b.click("#pauses button[name=resume]").await;
        b.wait_text("#flash", "Resumed queue q").await;
        assert_eq!(b.text("#queue-state").await, "running");
        // And pause again from the page, for a job type.
        b.client
            .find(Locator::Css("#pause-form select"))
            .await
            .unwrap()
            .select_by_value("vault")
            .await
            .unwrap();
        b.fill("#pause-form input[name=note]", "vault misbehaves")
            .await;
        b.click("#pause-form button").await;
        b.wait_text("#flash", "Paused job type vault").await;
        assert_eq!(b.text("#queue-state").await, "paused: vault");
        b.quit().await;
    });
    let q = get_ok(port, "/v1/queues/q", VIEWER.2);
    assert_eq!(q["paused"][0]["target"], "vault", "{q}");
    let trail = audit(&redis);
    let actions: Vec<(&str, &str)> = trail
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["note"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("pause", "smtp maintenance"),
            ("resume", "maintenance over"),
            ("pause", "vault misbehaves")
        ]
    );
}

#[test]
fn a_bulk_discard_by_filter_counts_first_and_touches_exactly_the_matching_dead_letters() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let smtp = r#"{"fail":"permanent","code":"smtp-421"}"#;
    let http = r#"{"fail":"permanent","code":"http-500"}"#;
    let ids = dead_lettered(
        &redis,
        &cfg,
        &[
            ("vault", smtp),
            ("vault", http),
            ("vault", smtp),
            ("vault", smtp),
            ("vault", http),
        ],
    );
    let _api = AdminProc::start(&cfg, port);
    let note = "smtp relay rejected them; the mails were resent by hand";
    // The API's list filters by code as the screen's does (one function).
    let listed = get_ok(port, "/v1/queues/q/dead?code=smtp-421", VIEWER.2);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        b.goto(&format!("{}/ui/queues/q/dead", base(port))).await;
        b.fill("#filter-form input[name=code]", "smtp-421").await;
        b.click("#filter-form button").await;
        b.wait_text("#dead-letters", "smtp-421").await;
        assert_eq!(b.count("#dead-letters tbody tr").await, 3);
        b.client
            .find(Locator::Css("#bulk-form select"))
            .await
            .unwrap()
            .select_by_value("discard")
            .await
            .unwrap();
        b.click("#bulk-form button").await;
        // The confirmation shows how many a dry run counted; nothing changed yet.
        let counted = b.text("#count").await;
        assert!(
            counted.starts_with("3 dead letter(s) match: code `smtp-421`"),
            "{counted}"
        );
        assert_eq!(count(&redis, "XLEN", "ward:{q}:dead"), 5);
        b.fill("#confirm-form input[name=note]", note).await;
        b.click("#confirm-form button").await;
        b.wait_text("#flash", "Discarded 3 of 3").await;
        b.quit().await;
    });
    assert_eq!(count(&redis, "XLEN", "ward:{q}:dead"), 2);
    let states: Vec<String> = ids
        .iter()
        .map(|id| show(&redis, id)["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states,
        ["discarded", "dead", "discarded", "discarded", "dead"]
    );
    let trail = audit(&redis);
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(
        (
            trail[0]["action"].as_str(),
            trail[0]["count"].as_u64(),
            trail[0]["note"].as_str()
        ),
        (Some("discard"), Some(3), Some(note))
    );
}

#[test]
fn an_operator_forces_a_breaker_open_and_closed_from_the_page() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(&config(&redis, port, false), port);
    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        b.goto(&format!("{}/ui/breakers", base(port))).await;
        assert!(b.text("#upstreams").await.contains("smtp"));
        b.fill("#upstreams input[name=note]", "smtp provider incident")
            .await;
        b.click("#upstreams button").await;
        b.wait_text("#flash", "is open").await;
        assert!(b.text("#breakers").await.contains("open"));
        b.fill("#upstreams input[name=note]", "incident over").await;
        b.click("#upstreams button").await;
        b.wait_text("#flash", "is closed").await;
        b.quit().await;
    });
    let trail = audit(&redis);
    let notes: Vec<&str> = trail.iter().map(|e| e["note"].as_str().unwrap()).collect();
    assert_eq!(
        notes,
        ["smtp provider incident", "incident over"],
        "{trail:?}"
    );
}

/// Regenerates the screenshots of `docs/web.md` (`docs/img/web-*.png`)
/// from a real run: a daemon, a few dead letters, a paused job type and an
/// open breaker, seen by an operator in headless Chromium. Run with
/// `cargo test -p ward --test all -- --ignored web::screenshots`.
#[test]
#[ignore = "writes docs/img/web-*.png; run with --ignored to regenerate them"]
fn screenshots_of_the_main_screens() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, true);
    let ids = dead_lettered(
        &redis,
        &cfg,
        &[
            (
                "vault",
                r#"{"fail":"permanent","code":"smtp-550","message":"mailbox unavailable: no such user"}"#,
            ),
            (
                "vault",
                r#"{"fail":"permanent","code":"smtp-421","message":"service not available, closing channel"}"#,
            ),
            (
                "vault",
                r#"{"fail":"permanent","code":"smtp-421","message":"service not available, closing channel"}"#,
            ),
        ],
    );
    let daemon = Ward::start_with_env(&cfg, &token_env()).ready();
    wait_serving(port);
    for i in 0..3 {
        enqueue_with(
            &redis,
            &["--delay", "1h"],
            "echo",
            &format!(r#"{{"order":{i}}}"#),
        );
    }
    let url = redis.url();
    let steps: [&[&str]; 2] = [
        &[
            "pause",
            "q",
            "--job",
            "vault",
            "--note",
            "smtp relay down, INC-4711",
            "--redis",
            &url,
        ],
        &[
            "breakers",
            "open",
            "--redis",
            &url,
            "q",
            "smtp",
            "--for",
            "30m",
            "--note",
            "provider incident",
        ],
    ];
    for args in steps {
        let out = ward(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    // Every daemon honours the pause within a second: the next jobs wait.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..4 {
        xadd(
            &redis,
            "vault",
            r#"{"fail":"transient"}"#,
            &[("order_id", &format!("o-{i}"))],
        );
    }
    // Some work done, for the charts (flushed within five seconds).
    let echoed: Vec<String> = (0..12)
        .map(|i| xadd(&redis, "echo", &format!(r#"{{"n":{i}}}"#), &[]))
        .collect();
    for id in &echoed {
        wait_final(&redis, id, WAIT);
    }
    std::thread::sleep(Duration::from_secs(6));
    let img = workspace().join("docs/img");
    std::fs::create_dir_all(&img).unwrap();
    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        let shots = [
            ("web-overview.png", "/ui/".to_string()),
            ("web-queue.png", "/ui/queues/q".to_string()),
            ("web-job.png", format!("/ui/queues/q/jobs/{}", ids[0])),
            ("web-dead.png", "/ui/queues/q/dead".to_string()),
            ("web-breakers.png", "/ui/breakers".to_string()),
            ("web-audit.png", "/ui/audit".to_string()),
            ("web-daemons.png", "/ui/daemons".to_string()),
        ];
        for (file, page) in shots {
            b.goto(&format!("{}{page}", base(port))).await;
            b.text("main").await;
            let png = b.client.screenshot().await.unwrap();
            std::fs::write(img.join(file), png).unwrap();
        }
        b.quit().await;
    });
    assert!(daemon.stop().success());
}

#[test]
fn an_operator_cancels_a_waiting_job_from_its_page_and_a_viewer_cannot() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let _api = AdminProc::start(&cfg, port);
    let id = enqueue_with(&redis, &["--delay", "1h"], "vault", "{}");
    let page = format!("{}/ui/queues/q/jobs/{id}", base(port));
    run(async {
        let viewer = Browser::start().await;
        viewer.login(&base(port), VIEWER.2).await;
        viewer.goto(&page).await;
        assert_eq!(
            viewer.count("#cancel-form").await,
            0,
            "no cancel for a viewer"
        );
        viewer.quit().await;

        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        b.goto(&page).await;
        b.fill("#cancel-form input[name=note]", "order withdrawn")
            .await;
        b.click("#cancel-form button[name=cancel]").await;
        b.wait_text("#flash", "cancelled (it was delayed)").await;
        assert_eq!(b.count("#cancel-form").await, 0, "nothing left to cancel");
        b.quit().await;
    });
    assert_eq!(show(&redis, &id)["state"], "cancelled");
    let trail = audit(&redis);
    assert_eq!(
        (
            trail[0]["action"].as_str(),
            trail[0]["via"].as_str(),
            trail[0]["note"].as_str()
        ),
        (Some("cancel"), Some("web"), Some("order withdrawn")),
        "{trail:?}"
    );
}

#[test]
fn an_operator_pauses_resumes_and_fires_a_schedule_from_its_page() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(&crate::admin::config(&redis, port), port);
    let page = format!("{}/ui/schedules", base(port));
    run(async {
        let viewer = Browser::start().await;
        viewer.login(&base(port), VIEWER.2).await;
        viewer.goto(&page).await;
        let row = viewer
            .text("#schedules tr[data-schedule=\"nightly\"]")
            .await;
        assert!(
            row.contains("0 0 3 1 1 *") && row.contains("vault"),
            "{row}"
        );
        assert_eq!(
            viewer.count("#schedules form").await,
            0,
            "no action for a viewer"
        );
        viewer.quit().await;

        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        b.goto(&page).await;
        b.fill(
            "tr[data-schedule=\"nightly\"] form:nth-of-type(1) input[name=note]",
            "quiet week",
        )
        .await;
        b.click("tr[data-schedule=\"nightly\"] button[name=pause]")
            .await;
        b.wait_text("#flash", "Schedule nightly paused").await;
        let row = b.text("#schedules tr[data-schedule=\"nightly\"]").await;
        assert!(
            row.contains("paused by") && row.contains("quiet week"),
            "{row}"
        );
        b.fill(
            "tr[data-schedule=\"nightly\"] form:nth-of-type(1) input[name=note]",
            "back",
        )
        .await;
        b.click("tr[data-schedule=\"nightly\"] button[name=resume]")
            .await;
        b.wait_text("#flash", "Schedule nightly resumed").await;
        b.fill(
            "tr[data-schedule=\"nightly\"] form:nth-of-type(2) input[name=note]",
            "rerun tonight's",
        )
        .await;
        b.click("tr[data-schedule=\"nightly\"] button[name=fire]")
            .await;
        b.wait_text("#flash", "Schedule nightly fired: job").await;
        b.quit().await;
    });
    let queued: usize = redis::cmd("XLEN")
        .arg("ward:{q}:jobs")
        .query(&mut redis.con())
        .unwrap();
    assert_eq!(queued, 1, "fire now enqueued one job");
    let trail = audit(&redis);
    let actions: Vec<&str> = trail.iter().filter_map(|e| e["action"].as_str()).collect();
    for want in ["schedule-pause", "schedule-resume", "schedule-fire"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    assert!(trail.iter().all(|e| e["via"] == "web"), "{trail:?}");
}
