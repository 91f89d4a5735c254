//! Edit-and-requeue of one dead letter from its job's page: the payload in
//! a text box, a required note, operators only; the job runs with the new
//! payload and the audit trail shows the note (via=web).

use ward_testkit::*;

use super::browser::Browser;
use super::{WAIT, base, config, dead_lettered, post_form, run};
use crate::admin::client::{OPERATOR, token_env, wait_serving};

#[test]
fn a_dead_job_edited_and_requeued_from_its_page_runs_with_the_new_payload() {
    let redis = Redis::start();
    let port = free_port();
    // No `echo` job type yet: the job is dead-lettered as unknown ...
    let ids = dead_lettered(
        &redis,
        &config(&redis, port, false),
        &[("echo", r#"{"to":"old@example.com"}"#)],
    );
    let id = &ids[0];
    // ... then a daemon that has it serves the screen.
    let daemon = Ward::start_with_env(&config(&redis, port, true), &token_env()).ready();
    wait_serving(port);
    let note = "wrong address: fixed to new@example.com";
    let edited = "{\n  \"to\": \"new@example.com\"\n}";

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), OPERATOR.2).await;
        let page = format!("{}/ui/queues/q/jobs/{id}", base(port));
        b.goto(&page).await;
        assert_eq!(b.text("#job-state").await, "dead");
        let shown = b
            .client
            .find(fantoccini::Locator::Css("#edit-payload"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shown, r#"{"to":"old@example.com"}"#, "the payload to edit");
        // A note-less edit sent by hand (the browser would not send one:
        // the field is required) is refused and changes nothing.
        let cookie = b.session_cookie().await;
        let csrf = b
            .client
            .find(fantoccini::Locator::Css("#edit-form input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        let origin = base(port);
        let (status, _) = post_form(
            port,
            &format!("/ui/queues/q/dead/{id}/edit"),
            &[
                ("Cookie", &format!("ward_session={cookie}")),
                ("Origin", &origin),
            ],
            &format!("csrf={csrf}&payload=x&note=+"),
        );
        assert_eq!(status, 303, "back to the job page, with the error");
        b.goto(&page).await;
        b.wait_text("#flash", "a note is required").await;
        assert_eq!(b.text("#job-state").await, "dead");
        assert!(audit(&redis).is_empty());

        b.fill("#edit-payload", edited).await;
        b.fill("#edit-form input[name=note]", note).await;
        b.click("#edit-form button").await;
        b.wait_text("#flash", "requeued with the edited payload")
            .await;
        let done = wait_final(&redis, id, WAIT);
        assert_eq!(done["state"], "succeeded", "{done}");
        // `echo` returns its payload: it ran with the edited one, with the
        // form's CRLF line breaks read back as LF.
        assert_eq!(done["result"], edited, "{done}");
        b.goto(&page).await;
        b.wait_text("#job-state", "succeeded").await;
        assert_eq!(b.text("#result").await, edited);
        let history = b.text("#history").await;
        assert!(history.contains("(with a new payload)"), "{history}");
        assert!(history.contains(note), "{history}");
        assert_eq!(b.count("#edit-form").await, 0, "nothing left to edit");
        b.goto(&format!("{}/ui/audit", base(port))).await;
        let audit_page = b.text("#audit").await;
        assert!(
            audit_page.contains(note) && audit_page.contains("edit"),
            "{audit_page}"
        );
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
        (Some("edit"), Some(OPERATOR.0), Some("web"), Some(note))
    );
    let detail: serde_json::Value =
        serde_json::from_str(trail[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        detail["payload_size"].as_u64(),
        Some(edited.len() as u64),
        "the new payload's size, LF line breaks: {detail}"
    );
    assert!(detail["old_payload_sha256"].is_string(), "{detail}");
    assert!(daemon.stop().success());
}
