//! The per-minute series: jobs a real daemon runs are counted in Redis
//! (`ward:{q}:series:<minute>`, flushed every few seconds, kept a day),
//! and the overview's and queue page's charts draw those counts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use ward_testkit::*;

use super::browser::Browser;
use super::{WAIT, base, config, run};
use crate::admin::client::{VIEWER, get_ok, token_env, wait_serving};

/// Every `ward:{q}:series:*` hash summed by field, with the shortest TTL
/// among them (ms).
fn series(redis: &Redis) -> (HashMap<String, u64>, Option<i64>) {
    let mut con = redis.con();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("ward:{q}:series:*")
        .query(&mut con)
        .unwrap();
    let mut sum = HashMap::new();
    let mut ttl = None;
    for k in keys {
        let h: HashMap<String, u64> = redis::cmd("HGETALL").arg(&k).query(&mut con).unwrap();
        for (f, n) in h {
            *sum.entry(f).or_default() += n;
        }
        let t: i64 = redis::cmd("PTTL").arg(&k).query(&mut con).unwrap();
        ttl = Some(ttl.map_or(t, |m: i64| m.min(t)));
    }
    (sum, ttl)
}

/// The sum of attribute `attr` over every element matching `css`.
async fn sum_attr(b: &Browser, css: &str, attr: &str) -> u64 {
    let mut total = 0;
    for e in b.client.find_all(Locator::Css(css)).await.unwrap() {
        let v = e.attr(attr).await.unwrap().unwrap_or_default();
        total += v
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{css} {attr}={v}"));
    }
    total
}

#[test]
fn jobs_a_daemon_runs_are_counted_per_minute_in_redis_and_charted_on_the_overview() {
    let redis = Redis::start();
    let port = free_port();
    let daemon = Ward::start_with_env(&config(&redis, port, true), &token_env()).ready();
    wait_serving(port);
    let mut ids: Vec<String> = (0..3)
        .map(|i| xadd(&redis, "echo", &format!("{{\"n\":{i}}}"), &[]))
        .collect();
    ids.extend((0..2).map(|_| xadd(&redis, "vault", r#"{"fail":"permanent"}"#, &[])));
    for id in &ids {
        wait_final(&redis, id, WAIT);
    }
    // Written by the daemon's flush within seconds, while it runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (sum, ttl) = loop {
        let (sum, ttl) = series(&redis);
        if sum.get("succeeded:echo") == Some(&3) && sum.get("dead:vault") == Some(&2) {
            break (sum, ttl);
        }
        assert!(
            Instant::now() < deadline,
            "the series never held the jobs: {sum:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sum.len(), 2, "nothing else counted: {sum:?}");
    let ttl = ttl.unwrap();
    assert!(
        ttl > 24 * 3600 * 1000 && ttl <= 25 * 3600 * 1000,
        "each minute is kept a day: {ttl} ms"
    );
    // The API reads the same counts.
    let api = get_ok(port, "/v1/queues/q/series?minutes=60", VIEWER.2);
    let minutes = api["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60, "{api}");
    let of = |job: &str, k: &str| -> u64 {
        minutes
            .iter()
            .filter_map(|m| m["jobs"][job][k].as_u64())
            .sum()
    };
    assert_eq!(
        (of("echo", "succeeded"), of("vault", "dead")),
        (3, 2),
        "{api}"
    );

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), VIEWER.2).await;
        let q = "#queues tr[data-queue=\"q\"]";
        let bars = format!("{q} svg.throughput g.minute");
        assert!(b.count(&bars).await >= 1);
        assert_eq!(sum_attr(&b, &bars, "data-succeeded").await, 3);
        assert_eq!(sum_attr(&b, &bars, "data-failed").await, 2);
        // Each failure-rate point is its minute's failed share.
        for e in b
            .client
            .find_all(Locator::Css(&format!("{q} svg.failures g.minute")))
            .await
            .unwrap()
        {
            let n = |a: &'static str| {
                let e = e.clone();
                async move { e.attr(a).await.unwrap().unwrap().parse::<u64>().unwrap() }
            };
            let (ok, failed, permille) = (
                n("data-succeeded").await,
                n("data-failed").await,
                n("data-permille").await,
            );
            assert_eq!(
                permille,
                (failed * 1000 + (ok + failed) / 2) / (ok + failed)
            );
        }
        let label = b.text(&format!("{q} td.throughput .chart-label")).await;
        assert!(label.starts_with("5 finished, 2 failed"), "{label}");
        assert_eq!(
            b.count("#queues tr[data-queue=\"mail\"] svg.throughput g.minute")
                .await,
            0,
            "nothing ran on mail"
        );
        // The queue's page charts each job type apart.
        b.goto(&format!("{}/ui/queues/q", base(port))).await;
        let row =
            |job: &str| format!("#job-type-charts tr[data-job=\"{job}\"] svg.throughput g.minute");
        assert_eq!(sum_attr(&b, &row("echo"), "data-succeeded").await, 3);
        assert_eq!(sum_attr(&b, &row("echo"), "data-failed").await, 0);
        assert_eq!(sum_attr(&b, &row("vault"), "data-failed").await, 2);
        // The page's policy still allows no script: the charts are inline SVG.
        let source = b.client.source().await.unwrap();
        assert!(
            source.contains("<svg") && !source.contains("<script"),
            "{source}"
        );
        b.quit().await;
    });
    assert!(daemon.stop().success());
}
