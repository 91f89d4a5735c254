//! Fairness between tenants: a job type grouped by a field (`group_by`)
//! runs at most `group_concurrency` attempts of one group at once across
//! the fleet; another group's job starts within a bound that does not grow
//! with one group's backlog, whether the backlog came through
//! `ward_enqueue` (parked at enqueue, never in the stream) or plain `XADD`
//! (parked by the daemon in bulk reads); no job is lost or run twice on
//! the way.

use std::time::{Duration, Instant};

use ward_testkit::{
    Redis, Ward, config, enqueue_with, histories, job, queue_stream, runs_per_job, stderr,
    wait_final, wait_for, ward, xadd_pipe,
};

const WAIT: Duration = Duration::from_secs(60);

/// A job type `a` (flaky) grouped by `tenant`, at most `cap` in flight per
/// tenant, on a queue of `concurrency`.
fn grouped(redis: &Redis, concurrency: u32, cap: u32) -> String {
    config(
        redis,
        concurrency,
        &job(
            "a",
            "flaky",
            &format!("group_by = \"tenant\"\ngroup_concurrency = {cap}"),
        ),
    )
}

/// `n` plain `XADD`s of job `a` for `tenant`, each with an idempotency key
/// of its own; returns the job ids.
fn xadd_tenant(redis: &Redis, n: usize, tenant: &str, payload: &str) -> Vec<String> {
    let stream = queue_stream("q");
    let mut ids = Vec::with_capacity(n);
    let mut con = redis.con();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let key = format!("{tenant}-{i}");
            xadd_pipe(
                &mut pipe,
                &stream,
                &[
                    ("job", "a"),
                    ("payload", payload),
                    ("tenant", tenant),
                    ("idempotency_key", &key),
                ],
            );
        }
        let got: Vec<String> = pipe.query(&mut con).unwrap();
        ids.extend(got);
    }
    ids
}

/// The `(started_at, finished_at)` of every attempt that ran of each of
/// jobs `ids`, from their histories as `ward job show` tells them.
fn runs_of(redis: &Redis, ids: &[String]) -> Vec<Vec<(u64, u64)>> {
    histories(redis, ids)
        .iter()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|v| Some((v["started_at"].as_u64()?, v["finished_at"].as_u64()?)))
                .collect()
        })
        .collect()
}

/// The attempts that ran of job `id` (see [`runs_of`]).
fn attempts_run(redis: &Redis, id: &str) -> Vec<(u64, u64)> {
    runs_of(redis, &[id.to_string()]).remove(0)
}

/// How many of jobs `ids` have run an attempt.
fn ran_count(redis: &Redis, ids: &[String]) -> usize {
    runs_of(redis, ids).iter().filter(|r| !r.is_empty()).count()
}

/// The most intervals that overlap at any instant.
fn most_at_once(intervals: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    // An end before a start at the same ms: touching is not overlapping.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    usize::try_from(most).unwrap()
}

#[test]
fn group_concurrency_is_never_exceeded_across_two_daemons() {
    let redis = Redis::start();
    const CAP: usize = 2;
    let payload = r#"{"times":0,"sleep_ms":150}"#;
    let tenants = ["t1", "t2", "t3"];
    let ids: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| xadd_tenant(&redis, 12, t, payload))
        .collect();
    let cfg = grouped(&redis, 8, CAP as u32);
    let t0 = Instant::now();
    let (a, b) = (Ward::start(&cfg).ready(), Ward::start(&cfg).ready());
    for id in ids.iter().flatten() {
        let done = wait_final(&redis, id, WAIT);
        assert_eq!(done["state"], "succeeded");
        assert_eq!(done["attempts"], 1, "waiting for a slot spends no attempt");
    }
    // Woken as slots free (not on the 10 s recheck): 6 rounds of 150 ms
    // per tenant, with room for a slow machine.
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let mut parked = 0;
    for (tenant, ids) in tenants.iter().zip(&ids) {
        let runs: Vec<(u64, u64)> = ids.iter().flat_map(|id| attempts_run(&redis, id)).collect();
        assert_eq!(runs.len(), ids.len(), "one attempt ran per job");
        let most = most_at_once(&runs);
        assert!(most <= CAP, "tenant {tenant} had {most} attempts at once");
        assert_eq!(most, CAP, "tenant {tenant} used its slots");
        parked += ids
            .iter()
            .filter(|id| {
                redis::cmd("LRANGE")
                    .arg(format!("ward:{{q}}:job:{id}:history"))
                    .arg(0)
                    .arg(-1)
                    .query::<Vec<String>>(&mut redis.con())
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("group-busy"))
            })
            .count();
    }
    assert!(parked > 0, "some jobs waited for a slot");
    drop((a, b));
}

/// Adds one `FCALL ward_enqueue` of job `a` for `tenant` to `pipe`, with
/// idempotency key `key`.
fn ward_enqueue_pipe(pipe: &mut redis::Pipeline, payload: &str, key: &str, tenant: &str) {
    pipe.cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg(queue_stream("q"))
        .arg("a")
        .arg(payload)
        .arg(key)
        .arg("")
        .arg("")
        .arg("")
        .arg("")
        .arg("")
        .arg("tenant")
        .arg(tenant);
}

/// `n` jobs of `tenant` through `ward_enqueue`, pipelined in chunks;
/// returns the job ids.
fn enqueue_tenant(redis: &Redis, n: usize, tenant: &str, payload: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let mut con = redis.con();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            ward_enqueue_pipe(&mut pipe, payload, &format!("{tenant}-{i}"), tenant);
        }
        let got: Vec<(String, String, u64)> = pipe.query(&mut con).unwrap();
        ids.extend(got.into_iter().map(|(id, status, _)| {
            assert_eq!(status, "created");
            id
        }));
    }
    ids
}

/// The Redis server's clock, Unix ms.
fn server_ms(redis: &Redis) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(&mut redis.con()).unwrap();
    s * 1000 + us / 1000
}

/// Jobs of tenant `tenant` waiting in their group's line.
fn waiting(redis: &Redis, tenant: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("ward:{{q}}:group-waiting:a:{tenant}"))
        .query(&mut redis.con())
        .unwrap()
}

/// Every attempt that ran of jobs `ids` (see [`runs_of`]).
fn all_runs(redis: &Redis, ids: &[String]) -> Vec<(u64, u64)> {
    runs_of(redis, ids).into_iter().flatten().collect()
}

#[test]
fn tenant_b_starts_within_a_bound_while_tenant_a_has_100000_queued() {
    let redis = Redis::start();
    const CAP: usize = 2;
    // Each of A's attempts takes 200 ms: first in, first out, B would wait
    // 100,000 x 200 ms / 2 (over 2 hours).
    let payload = r#"{"times":0,"sleep_ms":200}"#;
    let w = Ward::start(&grouped(&redis, 4, CAP as u32)).ready();
    let t = Instant::now();
    let flood = enqueue_tenant(&redis, 100_000, "A", payload);
    eprintln!("100,000 ward_enqueue calls took {:?}", t.elapsed());
    // Past its cap, A's jobs never entered the stream: they wait in A's line.
    let streamed = flood.iter().filter(|id| !id.starts_with('d')).count();
    eprintln!(
        "{streamed} of A's jobs went to the stream, {} wait in its line",
        waiting(&redis, "A")
    );
    // Its cap's worth, and a few more when an enqueue finds fewer than the
    // cap counted (e.g. while parked jobs come back on their recheck, which
    // takes more than 10 s of enqueueing on a slow machine): never the flood.
    assert!(streamed < 100, "{streamed} of A's jobs went to the stream");
    // The rest wait in A's line (less the few that ran meanwhile, at 2 at a
    // time, more on a slow machine).
    assert!(waiting(&redis, "A") >= 90_000);
    let at = server_ms(&redis);
    let single = enqueue_tenant(&redis, 1, "B", payload);
    let done = wait_final(&redis, &single[0], WAIT);
    assert_eq!(done["state"], "succeeded");
    let (started, _) = all_runs(&redis, &single)[0];
    let delay = started.saturating_sub(at);
    eprintln!("tenant B's job started {delay} ms after its enqueue, behind 100,000 of A's");
    // Its own run time is 200 ms; it waited for no more than a read.
    assert!(
        delay < 2_000,
        "tenant B's job started {delay} ms after its enqueue"
    );
    // A ran meanwhile, never more than its cap at once.
    let runs = all_runs(&redis, &flood[..5_000]);
    assert!(!runs.is_empty(), "A's jobs ran meanwhile");
    let most = most_at_once(&runs);
    assert!(most <= CAP, "tenant A had {most} attempts at once");
    drop(w);
}

/// The state of each of `ids`, pipelined.
fn states(redis: &Redis, ids: &[String]) -> Vec<Option<String>> {
    ward_testkit::job_fields(redis, ids, "state")
}

#[test]
fn every_job_of_a_flood_through_ward_enqueue_runs_once_across_two_daemons() {
    let redis = Redis::start();
    const CAP: usize = 8;
    let cfg = grouped(&redis, 8, CAP as u32);
    let (a, b) = (Ward::start(&cfg).ready(), Ward::start(&cfg).ready());
    let payload = r#"{"times":0}"#;
    // 2,000: about 10 s of work on a 2-core machine (debug builds).
    let flood = enqueue_tenant(&redis, 2_000, "A", payload);
    let others: Vec<String> = ["B", "C"]
        .iter()
        .flat_map(|t| enqueue_tenant(&redis, 20, t, payload))
        .collect();
    let t0 = Instant::now();
    let all: Vec<String> = flood.iter().chain(&others).cloned().collect();
    // Generous: the figure is printed; what is checked is that every job
    // ends, once, within the cap.
    wait_for(Duration::from_secs(300), "every job ended", || {
        states(&redis, &all)
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    eprintln!(
        "2,040 jobs, A's 2,000 at most 8 at a time, ended in {:?}",
        t0.elapsed()
    );
    let attempts = ward_testkit::job_fields(&redis, &all, "attempts");
    assert!(
        attempts.iter().all(|a| a.as_deref() == Some("1")),
        "waiting in the line spends no attempt"
    );
    let runs = runs_per_job(&[&a, &b]);
    for id in &all {
        assert_eq!(
            runs.get(id),
            Some(&1),
            "job {id} ran {:?} times",
            runs.get(id)
        );
    }
    let mut runs = all_runs(&redis, &flood);
    let most = most_at_once(&runs);
    assert!(most <= CAP, "tenant A had {most} attempts at once");
    runs.sort_unstable();
    let gaps: Vec<u64> = runs
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].1))
        .collect();
    eprintln!(
        "A: most {most} at once; longest gap {:?} ms",
        gaps.iter().max()
    );
    drop((a, b));
}

#[test]
fn ward_enqueue_parks_a_busy_groups_jobs_and_each_freed_slot_brings_the_next_back() {
    let redis = Redis::start();
    let w = Ward::start(&grouped(&redis, 4, 1)).ready();
    let payload = r#"{"times":0,"sleep_ms":100}"#;
    // Through `ward enqueue --field`, which calls ward_enqueue.
    let ids: Vec<String> = (0..6)
        .map(|i| {
            let key = format!("k{i}");
            enqueue_with(
                &redis,
                &["--field", "tenant=acme", "--idempotency-key", &key],
                "a",
                payload,
            )
        })
        .collect();
    assert!(
        !ids[0].starts_with('d'),
        "the first job went to the stream: {}",
        ids[0]
    );
    assert!(
        ids[2..].iter().all(|id| id.starts_with('d')),
        "the later ones were parked: {ids:?}"
    );
    let parked: Option<u64> = redis::cmd("ZSCORE")
        .arg("ward:{q}:group-waiting:a:acme")
        .arg(&ids[5])
        .query(&mut redis.con())
        .unwrap();
    assert!(parked.is_some(), "a parked job waits in its group's line");
    for id in &ids {
        let done = wait_final(&redis, id, WAIT);
        assert_eq!(done["state"], "succeeded");
        assert_eq!(done["attempts"], 1, "waiting spends no attempt");
    }
    let mut runs = all_runs(&redis, &ids);
    runs.sort_unstable();
    assert_eq!(runs.len(), ids.len(), "one attempt each: {runs:?}");
    assert_eq!(most_at_once(&runs), 1, "one at a time");
    // Each brought back by the slot its predecessor freed, not by the
    // 10 s recheck.
    let gaps: Vec<u64> = runs
        .windows(2)
        .map(|w| w[1].0.saturating_sub(w[0].1))
        .collect();
    eprintln!("from one job's end to the next one's start: {gaps:?} ms");
    assert!(gaps.iter().all(|g| *g < 2_000), "{gaps:?}");
    drop(w);
}

#[test]
fn ward_enqueue_refuses_bad_correlation_fields_and_adds_nothing() {
    let redis = Redis::start();
    let w = Ward::start(&grouped(&redis, 1, 1)).ready();
    let mut con = redis.con();
    let call = |fields: &[&str]| -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("ward_enqueue")
            .arg(1)
            .arg(queue_stream("q"))
            .arg("a")
            .arg("{}");
        for a in ["", "", "", "", "", ""] {
            cmd.arg(a);
        }
        for f in fields {
            cmd.arg(*f);
        }
        cmd.query(&mut redis.con())
    };
    for (fields, says) in [
        (&["tenant"][..], "name value pairs"),
        (&["ward:x", "1"][..], "starts with ward:"),
        (&["job", "b"][..], "argument of its own"),
        (&["t", "1", "t", "2"][..], "given twice"),
    ] {
        let err = call(fields).unwrap_err().to_string();
        assert!(err.contains(says), "{fields:?}: {err}");
        assert!(err.contains("nothing was added"), "{err}");
    }
    let len: usize = redis::cmd("XLEN")
        .arg(queue_stream("q"))
        .query(&mut con)
        .unwrap();
    let delayed: usize = redis::cmd("ZCARD")
        .arg("ward:{q}:delayed")
        .query(&mut con)
        .unwrap();
    assert_eq!((len, delayed), (0, 0), "nothing was added");
    let out = ward(&[
        "enqueue",
        "--redis",
        &redis.url(),
        "--field",
        "tenant",
        "q",
        "a",
        "{}",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NAME=VALUE"), "{}", stderr(&out));
    drop(w);
}

#[test]
fn another_tenants_job_starts_soon_behind_ten_thousand_plain_xadds_of_one_tenant() {
    let redis = Redis::start();
    // Plain XADDs cannot be routed at enqueue: the daemon reads past A's
    // jobs once, parking them in reads that grow to 512 entries.
    let flood = xadd_tenant(&redis, 10_000, "A", r#"{"times":0,"sleep_ms":50}"#);
    let single = xadd_tenant(&redis, 1, "B", r#"{"times":0,"sleep_ms":50}"#);
    let w = Ward::start(&grouped(&redis, 4, 2)).ready();
    let t0 = Instant::now();
    let done = wait_final(&redis, &single[0], WAIT);
    let waited = t0.elapsed();
    assert_eq!(done["state"], "succeeded");
    let flood_ran = ran_count(&redis, &flood);
    eprintln!(
        "tenant B's job finished {waited:?} after the daemon was ready ({:.0} of A's jobs parked a second); {flood_ran} of A's {} had run",
        flood.len() as f64 / waited.as_secs_f64(),
        flood.len()
    );
    // B waited for the pass over A's backlog, not for A's backlog to run
    // (first in, first out: 10,000 jobs of 50 ms, 2 at a time, 4 minutes).
    assert!(
        flood_ran < flood.len() / 10,
        "{flood_ran} of tenant A's jobs ran before tenant B's one"
    );
    // Bulk parking: about 3,800 parks a second here alone (debug build),
    // 600 to 1,400 on a loaded machine; first in, first out would take
    // 250 s.
    assert!(
        waited < Duration::from_secs(60),
        "tenant B's job waited {waited:?} behind tenant A's flood"
    );
    drop(w);
}

/// The daemon's published grouping of job type `a`, as `ward_enqueue`
/// reads it.
fn published(redis: &Redis) -> Option<String> {
    redis::cmd("HGET")
        .arg("ward:{q}:grouping")
        .arg("a")
        .query(&mut redis.con())
        .unwrap()
}

#[test]
fn a_reload_tells_ward_enqueue_the_new_grouping() {
    let redis = Redis::start();
    let w = Ward::start(&grouped(&redis, 4, 1)).ready();
    assert_eq!(published(&redis).as_deref(), Some("1 tenant"));
    let reload = |cfg: String| {
        std::fs::write(w.dir.path().join("ward.toml"), cfg).unwrap();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &w.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP failed");
    };
    reload(grouped(&redis, 4, 3));
    wait_for(WAIT, "the new cap published", || {
        published(&redis).as_deref() == Some("3 tenant")
    });
    // No grouping any more: ward_enqueue parks nothing.
    reload(config(&redis, 4, &job("a", "flaky", "")));
    wait_for(WAIT, "the grouping withdrawn", || {
        published(&redis).is_none()
    });
    let ids = enqueue_tenant(&redis, 5, "acme", r#"{"times":0,"sleep_ms":1000}"#);
    assert!(
        ids.iter().all(|id| !id.starts_with('d')),
        "every job went to the stream: {ids:?}"
    );
    drop(w);
}
