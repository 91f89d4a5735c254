//! APPLY's argument encoding against a real Redis, by property: whatever
//! mix of keyed, unkeyed and empty-keyed completions, of successes, retries,
//! deferrals and dead letters, fresh or retried, on queues that keep records
//! of successes or none, each completion is recorded exactly once, and none
//! is acknowledged without its record (issue 14, "Guards").

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use ward::job::{DeadReason, FailureClass, JobEntry, Outcome};
use ward::store::{Keys, Queue};
use ward::transition::{Completion, Deferral, Ran, Transition};
use ward_testkit::{Redis, create_group, lease_to};

#[derive(Debug, Clone, Copy)]
enum Key {
    None,
    Empty,
    Some,
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Succeed,
    RetryNow,
    RetryLater,
    Defer,
    Dead,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    key: Key,
    then: Then,
    /// A first delivery (its id is its entry id) or a retried job's.
    fresh: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let key = prop_oneof![Just(Key::None), Just(Key::Empty), Just(Key::Some)];
    let then = prop_oneof![
        Just(Then::Succeed),
        Just(Then::RetryNow),
        Just(Then::RetryLater),
        Just(Then::Defer),
        Just(Then::Dead),
    ];
    (key, then, any::<bool>()).prop_map(|(key, then, fresh)| Case { key, then, fresh })
}

/// The completion of case `c` for the delivery `entry_id`, job number `n`.
fn completion(c: Case, entry_id: &str, n: usize) -> Completion {
    let id = if c.fresh {
        entry_id.to_string()
    } else {
        format!("d1700000000000-{n}")
    };
    let entry = JobEntry {
        entry_id: entry_id.to_string(),
        id,
        job: "j".into(),
        payload: format!("payload {n}").into_bytes(),
        attempt: if c.fresh { 1 } else { 2 },
        idempotency_key: match c.key {
            Key::None => None,
            Key::Empty => Some(String::new()),
            Key::Some => Some(format!("key-{n}")),
        },
        checkpoint: None,
        first_at: (!c.fresh).then_some(1_700_000_000_000),
        last_delay_ms: None,
        lease_expiries: 0,
        key_claimed: false,
        extra: vec![("order_id".into(), n.to_string().into_bytes())],
    };
    let fail = || Outcome::failure(FailureClass::Transient, "down").with_code("http-503");
    let (outcome, transition) = match c.then {
        Then::Succeed => (Outcome::Success(b"ok".to_vec()), Transition::Succeed),
        Then::RetryNow => (
            fail(),
            Transition::Retry {
                delay: Duration::ZERO,
            },
        ),
        Then::RetryLater => (
            fail(),
            Transition::Retry {
                delay: Duration::from_secs(60),
            },
        ),
        Then::Defer => {
            let why = Deferral::BreakerOpen {
                upstream: "api".into(),
            };
            (
                why.recorded(Duration::from_secs(60)),
                Transition::Defer {
                    delay: Duration::from_secs(60),
                    why,
                },
            )
        }
        Then::Dead => (
            Outcome::failure(FailureClass::Permanent, "bad").with_code("http-400"),
            Transition::DeadLetter(DeadReason::Permanent),
        ),
    };
    let ran = Ran {
        plugin_digest: "digest".into(),
        idempotency_ttl: Duration::from_secs(600),
        started_ms: 1_700_000_000_001,
        first_at_ms: 1_700_000_000_000,
        finished_ms: 1_700_000_000_002,
        ..Ran::default()
    };
    Completion::new(entry, outcome, transition, ran)
}

/// Adds `n` entries to queue `q` and leases them to consumer `c`: pending.
fn leased(con: &mut redis::Connection, keys: &Keys, n: usize) -> Vec<String> {
    create_group(con, &keys.jobs);
    let ids: Vec<String> = (0..n)
        .map(|_| {
            redis::cmd("XADD")
                .arg(&keys.jobs)
                .arg("*")
                .arg("job")
                .arg("j")
                .query(con)
                .unwrap()
        })
        .collect();
    lease_to(con, &keys.jobs, "c", n);
    ids
}

/// Checks that completion `c` of case `case` was recorded exactly once.
fn check_recorded(
    con: &mut redis::Connection,
    keys: &Keys,
    case: Case,
    c: &Completion,
    keep: bool,
) {
    let id = c.job_id();
    let record: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.record(id))
        .query(con)
        .unwrap();
    let state = record.get("state").map(String::as_str);
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&keys.dead)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap();
    let dead_of_id = dead
        .iter()
        .filter(|(_, f)| f.get("id").map(String::as_str) == Some(id))
        .count();
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&keys.jobs)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap();
    let requeued = entries
        .iter()
        .filter(|(_, f)| f.get("ward:id").map(String::as_str) == Some(id))
        .count();
    let delayed: Option<f64> = redis::cmd("ZSCORE")
        .arg(&keys.delayed)
        .arg(id)
        .query(con)
        .unwrap();
    let what = format!("{case:?} {id}: record {record:?}");
    match case.then {
        Then::Succeed if keep => assert_eq!(state, Some("succeeded"), "{what}"),
        Then::Succeed => assert!(
            record.is_empty(),
            "a queue keeping no records keeps none: {what}"
        ),
        Then::RetryNow => {
            assert_eq!((state, requeued), (Some("queued"), 1), "{what}");
        }
        Then::RetryLater | Then::Defer => {
            assert_eq!(state, Some("retrying"), "{what}");
            assert!(delayed.is_some(), "{what}");
        }
        Then::Dead => {
            assert_eq!((state, dead_of_id), (Some("dead"), 1), "{what}");
        }
    }
    if !matches!(case.then, Then::RetryNow) {
        assert_eq!(requeued, 0, "{what}");
    }
    if !matches!(case.then, Then::Dead) {
        assert_eq!(dead_of_id, 0, "{what}");
    }
    if let (Key::Some, Then::Succeed) = (case.key, case.then) {
        let mark: Option<String> = redis::cmd("GET")
            .arg(keys.idempotency(c.idempotency_key().unwrap()))
            .query(con)
            .unwrap();
        assert!(
            mark.is_some_and(|m| m.starts_with(&format!("{id} done "))),
            "{what}"
        );
    }
}

#[test]
fn every_completion_is_recorded_exactly_once_or_left_pending() {
    let redis = Redis::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 40,
        ..ProptestConfig::default()
    });
    let round = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &(prop::collection::vec(case(), 1..8), any::<bool>()),
            |(cases, keep)| {
                let round = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let keys = Keys::new(&format!("p{round}"));
                let mut con = redis.con();
                let entry_ids = leased(&mut con, &keys, cases.len());
                let batch: Vec<Completion> = cases
                    .iter()
                    .zip(&entry_ids)
                    .enumerate()
                    .map(|(n, (c, e))| completion(*c, e, round * 100 + n))
                    .collect();
                let ttl = if keep {
                    Duration::from_secs(600)
                } else {
                    Duration::ZERO
                };
                let (first, again) = rt.block_on(async {
                    let con = ward::store::connect(&redis.url(), Duration::from_secs(1))
                        .await
                        .unwrap();
                    let queue = Queue::new(keys.clone(), con).with_succeeded_ttl(ttl);
                    let first = queue.apply(&batch).await.unwrap().took;
                    // A batch re-sent after a lost reply changes nothing twice.
                    let again = queue.apply(&batch).await.unwrap().took;
                    (first, again)
                });
                prop_assert_eq!(first, vec![true; batch.len()]);
                prop_assert_eq!(again, vec![false; batch.len()]);
                let pending: Vec<redis::Value> = redis::cmd("XPENDING")
                    .arg(&keys.jobs)
                    .arg("ward")
                    .query(&mut con)
                    .unwrap();
                prop_assert_eq!(pending.first(), Some(&redis::Value::Int(0)));
                for (case, c) in cases.iter().zip(&batch) {
                    check_recorded(&mut con, &keys, *case, c, keep);
                }
                let empty_key: bool = redis::cmd("EXISTS")
                    .arg(keys.idempotency(""))
                    .query(&mut con)
                    .unwrap();
                prop_assert!(!empty_key, "an empty key is no key");
                Ok(())
            },
        )
        .unwrap();
}

/// APPLY runs as a prepared EVALSHA; a Redis that does not have the script
/// (a fresh or restarted one, or after `SCRIPT FLUSH`) gets it loaded, and
/// the call goes through instead of failing with NOSCRIPT.
#[test]
fn apply_loads_its_script_into_a_redis_that_lost_it() {
    let redis = Redis::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys = Keys::new("flushed");
    let mut con = redis.con();
    let entry_ids = leased(&mut con, &keys, 2);
    let case = Case {
        key: Key::None,
        then: Then::Succeed,
        fresh: true,
    };
    let batch: Vec<Completion> = entry_ids
        .iter()
        .enumerate()
        .map(|(n, e)| completion(case, e, n))
        .collect();
    let script_count = |con: &mut redis::Connection| -> usize {
        let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("number_of_cached_scripts:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    assert_eq!(script_count(&mut con), 0, "a fresh Redis has no scripts");
    let took = rt.block_on(async {
        let c = ward::store::connect(&redis.url(), Duration::from_secs(1))
            .await
            .unwrap();
        let queue = Queue::new(keys.clone(), c).with_succeeded_ttl(Duration::from_secs(600));
        let first = queue.apply(&batch[..1]).await.unwrap().took;
        redis::cmd("SCRIPT").arg("FLUSH").exec(&mut con).unwrap();
        let second = queue.apply(&batch[1..]).await.unwrap().took;
        (first, second)
    });
    assert_eq!(took, (vec![true], vec![true]));
    assert_eq!(script_count(&mut con), 1, "APPLY was loaded again");
    for c in &batch {
        check_recorded(&mut con, &keys, case, c, true);
    }
}
