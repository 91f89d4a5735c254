//! Ward on a master that Redis Sentinels watch (one master, one replica,
//! three Sentinels, started by the harness): the core cases through the
//! Sentinels' address, and a failover in the middle of a run after which
//! the daemon carries on by itself, with the jobs lost or run twice counted;
//! the cost of `wait_replicas`; and the whole set-up over TLS.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ward_testkit::*;

use crate::cluster::{final_at, ward_on};

/// The queue's ready stream.
const JOBS: &str = "ward:{q}:jobs";

/// A daemon config for queue `q` naming the master by its Sentinels
/// (`[redis] sentinels = [...]` and `master_name`).
fn sentinel_config(s: &Sentinels, concurrency: u32, jobs: &str) -> String {
    let urls: Vec<String> = s.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let addr = s.address();
    Config::new(&addr)
        .retry("max_attempts = 3\ninitial_delay = \"20ms\"\njitter = \"none\"")
        .queue("q", &format!("concurrency = {concurrency}"))
        .jobs(jobs)
        .render()
        .replace(
            &format!("url = \"{addr}\""),
            &format!(
                "sentinels = [{}]\nmaster_name = \"{}\"",
                urls.join(", "),
                Sentinels::MASTER
            ),
        )
}

#[test]
fn jobs_run_on_the_master_the_sentinels_name() {
    let s = Sentinels::start();
    let addr = s.address();
    let jobs = job("noop", "noop", "") + &job("flaky", "flaky", "");
    let _daemon = Ward::start(&sentinel_config(&s, 4, &jobs)).ready();

    // Plain XADD and FCALL on the master; `ward enqueue` through the Sentinels.
    let mut master = s.master_con();
    let plain: String = redis::cmd("XADD")
        .arg(JOBS)
        .arg("*")
        .arg("job")
        .arg("noop")
        .query(&mut master)
        .unwrap();
    let (by_function, _, _): (String, String, u64) = redis::cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg(JOBS)
        .arg("noop")
        .arg("{}")
        .query(&mut master)
        .unwrap();
    let retried = ward_on(&addr, &["enqueue", "q", "flaky", r#"{"times":2}"#]);
    for (id, attempts) in [(plain.as_str(), 1), (&by_function, 1), (retried.trim(), 3)] {
        let j = final_at(&addr, id);
        assert_eq!(
            (j["state"].as_str(), j["attempts"].as_u64()),
            (Some("succeeded"), Some(attempts)),
            "{j}"
        );
    }
    // The replica has the function library too (it replicates).
    let replica = s.data.iter().find(|n| n.port != s.master_port()).unwrap();
    let libs: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("ward")
        .query(&mut replica.con())
        .unwrap();
    assert!(
        matches!(&libs, redis::Value::Array(l) if l.len() == 1),
        "{libs:?}"
    );

    // Dead letter and requeue, through the Sentinels' address.
    let dead = ward_on(&addr, &["enqueue", "q", "flaky", r#"{"fail":"permanent"}"#]);
    let dead = dead.trim();
    assert_eq!(final_at(&addr, dead)["state"], "dead");
    let out = ward_with_stdin(
        &[
            "dlq",
            "requeue",
            "--redis",
            &addr,
            "q",
            dead,
            "--payload",
            "-",
            "--by",
            "test",
        ],
        br#"{"times":0}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        Duration::from_secs(30),
        "the requeued job to succeed",
        || {
            let o = ward(&["job", "show", "--redis", &addr, "q", dead, "--json"]);
            serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .is_ok_and(|j| j["state"] == "succeeded")
        },
    );

    // Idempotent enqueue.
    let first = ward_on(
        &addr,
        &["enqueue", "--idempotency-key", "k1", "q", "noop", "{}"],
    );
    let again = ward(&[
        "enqueue",
        "--idempotency-key",
        "k1",
        "--redis",
        &addr,
        "q",
        "noop",
        "{}",
    ]);
    assert_eq!(stdout(&again).trim(), first.trim());
    assert!(stderr(&again).contains("duplicate"), "{}", stderr(&again));
}

/// How many of `ids` reached each state on the master now, by their
/// records (`missing` for none).
fn states(con: &mut redis::Connection, ids: &[String]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let mut p = redis::pipe();
        for id in chunk {
            p.hget(format!("ward:{{q}}:job:{id}"), "state");
        }
        let got: Vec<Option<String>> = p.query(con).unwrap();
        for s in got {
            *out.entry(s.unwrap_or_else(|| "missing".into()))
                .or_default() += 1;
        }
    }
    out
}

#[test]
fn a_failover_in_the_middle_of_a_run_is_followed_without_a_restart() {
    const N: usize = 5000;
    let mut s = Sentinels::start();
    let addr = s.address();
    let daemon = Ward::start(&sentinel_config(&s, 16, &job("flaky", "flaky", ""))).ready();
    let old = s.master_port();
    let mut master = s.master_con();
    let mut ids = Vec::with_capacity(N);
    for chunk in 0..N / 500 {
        let mut p = redis::pipe();
        for i in 0..500 {
            let n = chunk * 500 + i;
            p.cmd("XADD")
                .arg(JOBS)
                .arg("*")
                .arg("job")
                .arg("flaky")
                .arg("payload")
                .arg(r#"{"times":0}"#)
                .arg("n")
                .arg(n);
        }
        let got: Vec<String> = p.query(&mut master).unwrap();
        ids.extend(got);
    }
    // Kill the master (SIGKILL, by PID) once the run is well under way.
    wait_for(
        Duration::from_secs(60),
        "a fifth of the jobs to succeed",
        || {
            states(&mut master, &ids)
                .get("succeeded")
                .copied()
                .unwrap_or(0)
                >= N / 5
        },
    );
    let killed_at = Instant::now();
    s.data_node(old).kill();
    wait_for(
        Duration::from_secs(30),
        "the Sentinels to promote the replica",
        || s.master_port() != old,
    );
    let promoted_after = killed_at.elapsed();
    let mut master = s.master_con();
    // The daemon carries on by itself: the run finishes on the new master.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut st = states(&mut master, &ids);
    let at_promotion = st.get("succeeded").copied().unwrap_or(0);
    while st.get("succeeded") != Some(&N) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        st = states(&mut master, &ids);
    }
    let runs = runs_per_job(&[&daemon]);
    let never_ran = ids.iter().filter(|id| !runs.contains_key(*id)).count();
    let twice = ids
        .iter()
        .filter(|id| runs.get(*id).is_some_and(|n| *n > 1))
        .count();
    let lost = N - st.get("succeeded").copied().unwrap_or(0);
    println!(
        "Sentinel failover (master killed, replica promoted after {promoted_after:?}) in a run of {N} jobs: \
         lost {lost} (never ran: {never_ran}), ran twice {twice}; records on the new master: {st:?}"
    );
    // Replication is asynchronous, so a failover may lose what the old
    // master acknowledged and had not passed on (counted above, not
    // asserted); what must hold is that the run goes on by itself.
    assert!(
        lost == 0 || N - lost > at_promotion,
        "the run goes on on the new master: {at_promotion} then {st:?}"
    );
    // Twice at most: a job whose success the old master acknowledged but
    // had not passed on runs again on the new one, no more.
    assert!(runs.values().all(|n| *n <= 2), "no job ran three times");
    // Work goes on after the failover, on the new master.
    let after = ward_on(&addr, &["enqueue", "q", "flaky", r#"{"times":0}"#]);
    assert_eq!(final_at(&addr, after.trim())["state"], "succeeded");
    assert!(
        daemon.logs().contains("Redis Sentinel names a new master"),
        "the daemon says it followed the failover"
    );
}

/// Runs `n` jobs through a daemon with queue keys `queue_keys`; how long
/// from the first enqueue until all had succeeded.
fn timed_run(s: &Sentinels, n: usize, queue_keys: &str) -> Duration {
    let cfg = sentinel_config(s, 16, &job("noop", "noop", "")).replace(
        "concurrency = 16",
        &format!("concurrency = 16\n{queue_keys}"),
    );
    let daemon = Ward::start(&cfg).ready();
    let mut master = s.master_con();
    let started = Instant::now();
    let mut p = redis::pipe();
    for _ in 0..n {
        p.cmd("XADD").arg(JOBS).arg("*").arg("job").arg("noop");
    }
    let ids: Vec<String> = p.query(&mut master).unwrap();
    wait_for(Duration::from_secs(120), "the run to finish", || {
        states(&mut master, &ids).get("succeeded") == Some(&n)
    });
    let took = started.elapsed();
    assert!(daemon.stop().success());
    took
}

#[test]
fn wait_replicas_counts_an_outcome_only_once_a_replica_has_it() {
    const N: usize = 1000;
    let s = Sentinels::start();
    let plain = timed_run(&s, N, "");
    let waiting = timed_run(&s, N, "wait_replicas = 1");
    println!(
        "{N} noop jobs, one daemon, concurrency 16: {plain:?} without waiting, {waiting:?} with wait_replicas = 1 ({:.0} vs {:.0} jobs/s)",
        N as f64 / plain.as_secs_f64(),
        N as f64 / waiting.as_secs_f64()
    );
    // Asking for more replicas than there are: the outcome is applied on
    // the master, but the daemon does not count it and keeps sending it.
    let cfg = sentinel_config(&s, 4, &job("noop", "noop", ""))
        .replace("concurrency = 4", "concurrency = 4\nwait_replicas = 2");
    let daemon = Ward::start(&cfg).ready();
    let id = ward_on(&s.address(), &["enqueue", "q", "noop", "{}"]);
    assert_eq!(final_at(&s.address(), id.trim())["state"], "succeeded");
    wait_for(
        Duration::from_secs(10),
        "the daemon to say the replicas fell short",
        || {
            daemon
                .logs()
                .contains("1 of the 2 replicas of wait_replicas confirmed")
        },
    );
}

#[test]
fn the_daemon_and_the_tools_reach_the_master_through_sentinels_over_tls() {
    let s = Sentinels::start_with_tls();
    let ca = s.ca.clone().unwrap();
    let urls: Vec<String> = s.tls_urls().iter().map(|u| format!("\"{u}\"")).collect();
    let cfg = format!(
        "{METRICS_ANY_PORT}[redis]\nsentinels = [{}]\nmaster_name = \"{}\"\nca_file = \"{}\"\n\n[[queue]]\nname = \"q\"\n\n{}",
        urls.join(", "),
        Sentinels::MASTER,
        ca.display(),
        job("noop", "noop", "")
    );
    let cfg_file = s.dir.path().join("ward-tls.toml");
    std::fs::write(&cfg_file, &cfg).unwrap();
    let _daemon = Ward::start(&cfg).ready();
    let cfg_arg = cfg_file.display().to_string();
    let out = ward(&["enqueue", "--config", &cfg_arg, "q", "noop", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    // Read back over the master's plain port: the job ran through the TLS
    // daemon, which reached the master at the TLS port the Sentinels name.
    let mut master = s.master_con();
    wait_for(Duration::from_secs(30), "the job to succeed", || {
        let state: Option<String> = redis::cmd("HGET")
            .arg(format!("ward:{{q}}:job:{id}"))
            .arg("state")
            .query(&mut master)
            .unwrap();
        state.as_deref() == Some("succeeded")
    });
    // Without the CA, the Sentinels' certificate is not trusted.
    let address = format!(
        "rediss+sentinel://{}/{}",
        s.tls_urls()
            .iter()
            .map(|u| u.trim_start_matches("rediss://"))
            .collect::<Vec<_>>()
            .join(","),
        Sentinels::MASTER
    );
    let refused = ward(&["enqueue", "--redis", &address, "q", "noop", "{}"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot reach Redis"),
        "{}",
        stderr(&refused)
    );
}
