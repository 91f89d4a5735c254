//! The dead letters counted by job type and error code above the list,
//! each group linked to its filtered list.

use ward_testkit::*;

use super::browser::Browser;
use super::{base, config, dead_lettered, run};
use crate::admin::client::{AdminProc, VIEWER, get_ok};

#[test]
fn dead_letters_are_grouped_by_job_type_and_code_with_counts_linking_to_the_list() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, false);
    let failing = |code: &str| format!(r#"{{"fail":"permanent","code":"{code}"}}"#);
    let (bad, down) = (failing("http-400"), failing("http-503"));
    let ids = dead_lettered(
        &redis,
        &cfg,
        &[
            ("vault", &bad),
            ("vault", &down),
            ("vault", &bad),
            ("nobody", "{}"),
            ("vault", &bad),
            ("vault", &down),
        ],
    );
    let _api = AdminProc::start(&cfg, port);
    let api = get_ok(port, "/v1/queues/q/dead/groups", VIEWER.2);
    assert_eq!(api["counted"], 6, "{api}");
    assert_eq!(
        (
            api["groups"][0]["code"].as_str(),
            api["groups"][0]["count"].as_u64()
        ),
        (Some("http-400"), Some(3)),
        "{api}"
    );

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), VIEWER.2).await;
        b.goto(&format!("{}/ui/queues/q/dead", base(port))).await;
        let row = |job: &str, code: &str| {
            format!("#dead-groups tr[data-job=\"{job}\"][data-code=\"{code}\"]")
        };
        assert_eq!(b.count("#dead-groups tbody tr").await, 3);
        assert_eq!(
            b.text(&format!("{} td.count", row("vault", "http-400")))
                .await,
            "3"
        );
        assert_eq!(
            b.text(&format!("{} td.count", row("vault", "http-503")))
                .await,
            "2"
        );
        let nobody = b
            .text("#dead-groups tr[data-job=\"nobody\"] td.count")
            .await;
        assert_eq!(nobody, "1", "a job type with no plugin");
        // The largest group first.
        let first = b.text("#dead-groups tbody tr td.mono").await;
        assert_eq!(first, "http-400");
        // A group's link lists exactly its dead letters.
        b.click(&format!("{} td a", row("vault", "http-503"))).await;
        b.wait_text("#dead-letters tbody", &ids[1]).await;
        assert_eq!(b.count("#dead-letters tbody tr").await, 2);
        let listed = b.text("#dead-letters tbody").await;
        assert!(
            listed.contains(&ids[5]) && !listed.contains(&ids[0]),
            "{listed}"
        );
        assert_eq!(
            b.count("#dead-groups tbody tr").await,
            1,
            "the summary follows the filter"
        );
        b.quit().await;
    });
}
