//! The queue page's search: by job id, idempotency key, job type and
//! correlation field.

use fantoccini::Locator;
use ward_testkit::*;

use super::browser::Browser;
use super::{base, config, run};
use crate::admin::client::{AdminProc, VIEWER};

#[test]
fn the_queue_page_finds_a_job_by_idempotency_key_type_or_field() {
    let redis = Redis::start();
    let port = free_port();
    let cfg = config(&redis, port, true);
    // `ward admin` alone: nothing runs, the jobs stay queued.
    let _api = AdminProc::start(&cfg, port);
    let keyed: Vec<String> = ["order-17", "order-18"]
        .iter()
        .map(|k| enqueue_with(&redis, &["--idempotency-key", k], "vault", "{}"))
        .collect();
    let echo = xadd(&redis, "echo", "{}", &[("tenant", "acme")]);
    xadd(&redis, "vault", "{}", &[("tenant", "other")]);

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), VIEWER.2).await;
        let page = format!("{}/ui/queues/q", base(port));
        // An idempotency key opens the page of the job that owns it.
        b.goto(&page).await;
        b.fill("#search-form input[name=key]", "order-18").await;
        b.click("#search-form button").await;
        assert_eq!(b.text("#job-id").await, keyed[1]);
        assert_eq!(b.text("#job-state").await, "queued");
        // A key no job owns says so.
        b.goto(&format!("{page}?key=order-99")).await;
        let error = b.text("#error").await;
        assert!(error.contains("owns idempotency key `order-99`"), "{error}");
        // A job type lists only its jobs.
        b.goto(&page).await;
        b.client
            .find(Locator::Css("#search-form select[name=job]"))
            .await
            .unwrap()
            .select_by_value("echo")
            .await
            .unwrap();
        b.click("#search-form button").await;
        b.wait_text("#jobs tbody", &echo).await;
        assert_eq!(b.count("#jobs tbody tr").await, 1);
        // A correlation field, with the type: only what matches both.
        b.goto(&format!("{page}?job=vault&field=tenant%3Dacme"))
            .await;
        b.text("#jobs").await;
        assert_eq!(b.count("#jobs tbody tr").await, 0);
        b.goto(&format!("{page}?field=tenant%3Dacme")).await;
        b.wait_text("#jobs tbody", &echo).await;
        assert_eq!(b.count("#jobs tbody tr").await, 1);
        // A job id opens its page.
        b.goto(&page).await;
        b.fill("#search-form input[name=id]", &keyed[0]).await;
        b.click("#search-form button").await;
        assert_eq!(b.text("#job-id").await, keyed[0]);
        b.quit().await;
    });
}
