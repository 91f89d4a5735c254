//! Ward on a Redis Cluster (three masters with one replica each, started by
//! the harness): enqueue by plain `XADD` and by `FCALL ward_enqueue` through
//! a client that starts on a node that does not own the queue's slot,
//! success, retry through the delayed set, dead letter and requeue,
//! idempotent dedupe, a breaker shared by two daemons, a schedule firing
//! once, `ward_enqueue` put back on a master that lost it, a master killed
//! in the middle of a run (lost and repeated jobs printed), and the whole
//! cluster over TLS.

use std::time::{Duration, Instant};

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// The queue the tests use; `ward:{q}:…` lives on one master.
const JOBS: &str = "ward:{q}:jobs";

/// A daemon config for queue `q` on `cluster`, naming it by its seed nodes
/// (`[redis] cluster = [...]`), with `jobs` and `retry`.
fn cluster_config(cluster: &Cluster, retry: &str, jobs: &str) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let addr = cluster.address();
    Config::new(&addr)
        .retry(retry)
        .queue("q", "concurrency = 4")
        .jobs(jobs)
        .render()
        .replace(
            &format!("url = \"{addr}\""),
            &format!("cluster = [{}]", seeds.join(", ")),
        )
}

/// `ward <args…> --redis <address>`, asserting success; its stdout.
pub(crate) fn ward_on(addr: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--redis", addr]);
    let out = ward(&all);
    assert!(out.status.success(), "ward {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// `ward <args…>` on `cluster`, asserting success; its stdout.
fn ward_ok(cluster: &Cluster, args: &[&str]) -> String {
    ward_on(&cluster.address(), args)
}

/// Waits until job `id` of queue `q` at `addr` is `succeeded` or `dead`;
/// its JSON.
pub(crate) fn final_at(addr: &str, id: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_for(WAIT, &format!("job {id} to finish"), || {
        let out = ward(&["job", "show", "q", id, "--json", "--redis", addr]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap();
        }
        matches!(last["state"].as_str(), Some("succeeded" | "dead"))
    });
    last
}

/// [`final_at`] on `cluster`.
fn final_on(cluster: &Cluster, id: &str) -> serde_json::Value {
    final_at(&cluster.address(), id)
}

/// A cluster client that knows only the master on `port` at first (it
/// learns the rest, and follows `MOVED`).
fn client_from(port: u16) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{port}")])
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn jobs_enqueued_through_a_node_without_the_queue_run_retry_dead_letter_and_dedupe() {
    let cluster = Cluster::start();
    let jobs = job("noop", "noop", "") + &job("flaky", "flaky", "");
    let daemon = Ward::start(&cluster_config(&cluster, ONE_RETRY, &jobs)).ready();
    let other = cluster.other_master(JOBS);
    assert_ne!(other, cluster.master_of(JOBS));

    // The other master refuses the queue's keys: its slot is elsewhere.
    let refused: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(JOBS)
        .arg("*")
        .arg("job")
        .arg("noop")
        .query(&mut cluster.node_on(other).con());
    let e = refused.unwrap_err();
    assert_eq!(e.code(), Some("MOVED"), "{e}");
    // Every master has the function library, so FCALL finds it anywhere.
    for port in cluster.masters() {
        let libs: redis::Value = redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg("ward")
            .query(&mut cluster.node_on(port).con())
            .unwrap();
        assert!(
            matches!(&libs, redis::Value::Array(l) if l.len() == 1),
            "master {port} has no ward library: {libs:?}"
        );
    }

    // A client starting on the other master follows the redirects.
    let mut con = client_from(other);
    let plain: String = redis::cmd("XADD")
        .arg(JOBS)
        .arg("*")
        .arg("job")
        .arg("noop")
        .arg("payload")
        .arg("{}")
        .query(&mut con)
        .unwrap();
    let (by_function, status, _): (String, String, u64) = redis::cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg(JOBS)
        .arg("noop")
        .arg("{}")
        .query(&mut con)
        .unwrap();
    assert_eq!(status, "created");
    for id in [&plain, &by_function] {
        let s = final_on(&cluster, id);
        assert_eq!(
            (s["state"].as_str(), s["attempts"].as_u64()),
            (Some("succeeded"), Some(1)),
            "{s}"
        );
    }

    // Retry through the delayed set: two transient failures, then success.
    let retried = ward_ok(
        &cluster,
        &["enqueue", "q", "flaky", r#"{"fail":"transient","times":2}"#],
    );
    let s = final_on(&cluster, retried.trim());
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("succeeded"), Some(3)),
        "{s}"
    );

    // Dead letter, then `ward dlq requeue` runs it afresh.
    let dead = ward_ok(
        &cluster,
        &["enqueue", "q", "flaky", r#"{"fail":"permanent","times":1}"#],
    );
    let dead = dead.trim();
    let s = final_on(&cluster, dead);
    assert_eq!(s["state"], "dead", "{s}");
    let listed: serde_json::Value =
        serde_json::from_str(&ward_ok(&cluster, &["dlq", "list", "q", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], dead, "{listed}");
    // Requeued with a payload that no longer asks it to fail.
    let out = ward_with_stdin(
        &[
            "dlq",
            "requeue",
            "--redis",
            &cluster.address(),
            "q",
            dead,
            "--payload",
            "-",
            "--by",
            "test",
            "--note",
            "fixed",
        ],
        br#"{"times":0}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("requeued  {dead}")),
        "{}",
        stdout(&out)
    );
    let s = final_on(&cluster, dead);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{s}"
    );

    // Idempotent enqueue: the same key twice is one job.
    let first = ward_ok(
        &cluster,
        &["enqueue", "--idempotency-key", "order-7", "q", "noop", "{}"],
    );
    let addr = cluster.address();
    let again = ward(&[
        "enqueue",
        "--idempotency-key",
        "order-7",
        "--redis",
        &addr,
        "q",
        "noop",
        "{}",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim(), first.trim());
    assert!(stderr(&again).contains("duplicate"), "{}", stderr(&again));
    let s = final_on(&cluster, first.trim());
    assert_eq!(s["state"], "succeeded", "{s}");

    let errors: Vec<serde_json::Value> = daemon
        .log_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "no errors on a cluster: {errors:?}");
}

/// Transient failures retry once, quickly.
const ONE_RETRY: &str = "max_attempts = 3\ninitial_delay = \"20ms\"\njitter = \"none\"";

/// `ward breakers q --json` on `cluster`.
fn breakers_on(cluster: &Cluster) -> serde_json::Value {
    serde_json::from_str(&ward_ok(cluster, &["breakers", "q", "--json"])).unwrap()
}

#[test]
fn a_breaker_opened_through_one_daemon_holds_jobs_back_for_both() {
    let cluster = Cluster::start();
    let jobs = job("flaky", "flaky", "upstreams = [\"api\"]");
    let cfg = cluster_config(
        &cluster,
        "max_attempts = 10\ninitial_delay = \"20ms\"\njitter = \"none\"",
        &jobs,
    )
    .replace(
        "[defaults.retry]",
        "[defaults.breaker]\nfailures = 3\nwindow = \"60s\"\nopen_for = \"4s\"\n\n[defaults.retry]",
    );
    let a = Ward::start(&cfg).ready();
    let b = Ward::start(&cfg).ready();
    let failing: Vec<String> = (0..3)
        .map(|_| {
            ward_ok(&cluster, &["enqueue", "q", "flaky", r#"{"times":1}"#])
                .trim()
                .to_string()
        })
        .collect();
    wait_for(WAIT, "the breaker of `api` to open", || {
        breakers_on(&cluster).as_array().is_some_and(|b| {
            b.iter()
                .any(|l| l["upstream"] == "api" && l["state"] == "open")
        })
    });
    // Each daemon reads the shared state every 500 ms (breaker::REFRESH).
    std::thread::sleep(Duration::from_secs(1));
    // Several jobs, so that both daemons lease some while it is open.
    let held: Vec<String> = (0..6)
        .map(|_| {
            ward_ok(&cluster, &["enqueue", "q", "flaky", r#"{"times":0}"#])
                .trim()
                .to_string()
        })
        .collect();
    for id in &held {
        let s = final_on(&cluster, id);
        assert_eq!(
            (s["state"].as_str(), s["attempts"].as_u64()),
            (Some("succeeded"), Some(1)),
            "{s}"
        );
        assert!(
            s["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["code"] == "breaker-open"),
            "held back by the shared breaker: {s}"
        );
    }
    for id in &failing {
        assert_eq!(final_on(&cluster, id)["state"], "succeeded");
    }
    let ran = runs_per_job(&[&a, &b]);
    assert!(
        held.iter().all(|id| ran.get(id) == Some(&1)),
        "each held job ran once: {ran:?}"
    );
    let deferred_by =
        |w: &Ward| w.logs().contains("breaker-open") || w.logs().contains("breaker open");
    assert!(
        deferred_by(&a) || deferred_by(&b),
        "a daemon deferred a job"
    );
}

#[test]
fn a_schedule_fires_once_per_time_across_two_daemons() {
    let cluster = Cluster::start();
    let cfg = cluster_config(&cluster, ONE_RETRY, &job("flaky", "flaky", ""))
        + "\n[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\nqueue = \"q\"\njob = \"flaky\"\npayload = '{\"times\":0,\"key\":true}'\n";
    let started = std::time::Instant::now();
    let daemons: Vec<Ward> = (0..2).map(|_| Ward::start(&cfg).ready()).collect();
    std::thread::sleep(Duration::from_secs(6));
    for d in daemons {
        assert!(d.stop().success());
    }
    let seconds = started.elapsed().as_secs();
    // KEYS on the queue's master alone: every key of `q` lives there.
    let mut owner = cluster.node_on(cluster.master_of(JOBS)).con();
    let mut keys = |pattern: &str| -> Vec<String> {
        redis::cmd("KEYS").arg(pattern).query(&mut owner).unwrap()
    };
    let fired = keys("ward:{q}:idem:schedule:tick:*");
    let records: Vec<String> = keys("ward:{q}:job:*")
        .into_iter()
        .filter(|k| !k.ends_with(":history"))
        .collect();
    assert!(
        fired.len() >= 4 && fired.len() as u64 <= seconds + 1,
        "one fire per second over {seconds} s: {fired:?}"
    );
    assert_eq!(
        records.len(),
        fired.len(),
        "one job per fire time: {fired:?} {records:?}"
    );
}

#[test]
fn ward_enqueue_is_loaded_again_on_a_master_that_lost_it() {
    let cluster = Cluster::start();
    let _daemon = Ward::start(&cluster_config(
        &cluster,
        ONE_RETRY,
        &job("noop", "noop", ""),
    ))
    .ready();
    // A master without the library, as a new master after a resharding
    // or a replica promoted before it had synced would be.
    let bare = cluster.other_master(JOBS);
    let _: String = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut cluster.node_on(bare).con())
        .unwrap();
    let has_ward = || {
        let libs: redis::Value = redis::cmd("FUNCTION")
            .arg("LIST")
            .arg("LIBRARYNAME")
            .arg("ward")
            .query(&mut cluster.node_on(bare).con())
            .unwrap();
        matches!(&libs, redis::Value::Array(l) if l.len() == 1)
    };
    assert!(!has_ward());
    // The daemon's periodic check (every 5 s) puts it back.
    wait_for(
        Duration::from_secs(15),
        "ward_enqueue on every master again",
        has_ward,
    );
    // A queue whose slot that master owns can be fed through it.
    let mut con = client_from(bare);
    let (_, status, _): (String, String, u64) = redis::cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg(JOBS)
        .arg("noop")
        .arg("{}")
        .query(&mut con)
        .unwrap();
    assert_eq!(status, "created");
}

#[test]
fn the_library_pings_the_cluster_and_reads_the_memory_of_the_queue_master() {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = ward::store::Store::connect(&cluster.address(), Duration::from_secs(1))
            .await
            .unwrap();
        store.ping().await.unwrap();
        let q = store.queue("q");
        // INFO has no key: it is sent to the master of the queue's slot.
        let m = q.memory().await.unwrap();
        assert!(m.used_bytes > 0, "{m:?}");
        assert_eq!(m.policy, "noeviction");
        q.load_functions().await.unwrap();
        assert!(
            !q.ensure_functions().await.unwrap(),
            "every master has them"
        );
        let id = q.enqueue("noop", b"{}").await.unwrap();
        assert!(!id.is_empty());
    });
}

/// What became of each of `ids` on the master behind `con`: how many are
/// `succeeded`, and which were lost (neither a record nor a stream entry:
/// the enqueue itself never reached the new master).
fn outcome(con: &mut redis::Connection, ids: &[String]) -> (usize, Vec<String>) {
    let mut succeeded = 0;
    let mut lost = Vec::new();
    for chunk in ids.chunks(500) {
        let mut p = redis::pipe();
        for id in chunk {
            p.hget(format!("ward:{{q}}:job:{id}"), "state");
            p.cmd("XRANGE").arg(JOBS).arg(id).arg(id);
        }
        let got: Vec<(Option<String>, Vec<redis::Value>)> = p.query(con).unwrap();
        for (id, (state, entry)) in chunk.iter().zip(got) {
            match state.as_deref() {
                Some("succeeded") => succeeded += 1,
                None if entry.is_empty() => lost.push(id.clone()),
                _ => {}
            }
        }
    }
    (succeeded, lost)
}

#[test]
fn a_master_killed_in_the_middle_of_a_run_is_replaced_and_the_daemon_carries_on() {
    const N: usize = 5000;
    let mut cluster = Cluster::start();
    // A short lease, so that deliveries the new master still counts as
    // pending (their acknowledgement died with the old one) are reclaimed
    // within the test's time.
    let cfg = cluster_config(&cluster, ONE_RETRY, &job("flaky", "flaky", ""))
        .replace("concurrency = 4", "concurrency = 16\nlease = \"2s\"");
    let mut daemon = Ward::start(&cfg).ready();
    let pid = daemon.pid();
    let owner = cluster.master_of(JOBS);
    let mut con = cluster.node_on(owner).con();
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N / 500 {
        let mut p = redis::pipe();
        for _ in 0..500 {
            p.cmd("XADD")
                .arg(JOBS)
                .arg("*")
                .arg("job")
                .arg("flaky")
                .arg("payload")
                .arg(r#"{"times":0}"#);
        }
        let got: Vec<String> = p.query(&mut con).unwrap();
        ids.extend(got);
    }
    // Polled every 300 ms: each look reads all N records.
    wait_for(
        Duration::from_secs(60),
        "a fifth of the jobs to succeed",
        || {
            std::thread::sleep(Duration::from_millis(300));
            outcome(&mut con, &ids).0 >= N / 5
        },
    );
    let killed_at = Instant::now();
    cluster.node_mut(owner).kill();
    // The replica had finished its first sync (`Cluster::start` waits for
    // it) and may always stand (validity factor 0), so with a one-second
    // node timeout it takes over within seconds.
    wait_for(
        Duration::from_secs(30),
        "a replica to take over the queue's slot, as every node sees it",
        || {
            let masters = cluster.masters();
            masters.len() == 3 && !masters.contains(&owner)
        },
    );
    let promoted_after = killed_at.elapsed();
    let mut con = cluster.node_on(cluster.master_of(JOBS)).con();
    let (at_promotion, _) = outcome(&mut con, &ids);
    // Every job the new master knows of must finish by the daemon's own
    // doing: no restart, no operator.
    let deadline = Instant::now() + Duration::from_secs(45);
    let (mut done, mut lost) = (at_promotion, Vec::new());
    while done + lost.len() < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        (done, lost) = outcome(&mut con, &ids);
    }
    let finished = done + lost.len() == N;
    let runs = runs_per_job(&[&daemon]);
    let twice = ids
        .iter()
        .filter(|id| runs.get(*id).is_some_and(|n| *n > 1))
        .count();
    println!(
        "cluster failover (the queue's master killed, its replica promoted after {promoted_after:?}) \
         in a run of {N} jobs: {at_promotion} had succeeded on the new master at promotion; \
         lost {} (enqueued but gone from the new master), ran twice {twice}",
        lost.len()
    );
    assert!(
        finished,
        "every job not lost with the old master succeeds on the new one: {done} succeeded, {} lost, of {N}",
        lost.len()
    );
    assert!(
        daemon.is_running(),
        "the daemon carried on without a restart"
    );
    assert_eq!(daemon.pid(), pid);
    // Twice at most: a job whose outcome the old master acknowledged but
    // had not passed on runs again on the new one, no more.
    assert!(runs.values().all(|n| *n <= 2), "no job ran three times");
    let after = ward_ok(&cluster, &["enqueue", "q", "flaky", r#"{"times":0}"#]);
    assert_eq!(final_on(&cluster, after.trim())["state"], "succeeded");
}

#[test]
fn the_daemon_and_the_tools_reach_a_cluster_over_tls_with_a_private_ca() {
    let cluster = Cluster::start_with_tls();
    let ca = cluster.ca.clone().unwrap();
    let seeds: Vec<String> = cluster
        .tls_seeds()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    let cfg = format!(
        "{METRICS_ANY_PORT}[redis]\ncluster = [{}]\nca_file = \"{}\"\n\n[[queue]]\nname = \"q\"\n\n{}",
        seeds.join(", "),
        ca.display(),
        job("noop", "noop", "")
    );
    let cfg_file = cluster.dir.path().join("ward-tls.toml");
    std::fs::write(&cfg_file, &cfg).unwrap();
    let _daemon = Ward::start(&cfg).ready();
    let cfg_arg = cfg_file.display().to_string();
    let out = ward(&["enqueue", "--config", &cfg_arg, "q", "noop", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Read back over the plain ports: the job ran through the TLS daemon,
    // which found the queue's master among the TLS ports the seeds named.
    let s = final_on(&cluster, stdout(&out).trim());
    assert_eq!(s["state"], "succeeded", "{s}");
    // Without the CA, the nodes' certificate is not trusted.
    let tls_address = format!(
        "rediss+cluster://{}",
        cluster
            .tls_seeds()
            .iter()
            .map(|s| s.trim_start_matches("rediss://"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let refused = ward(&["enqueue", "--redis", &tls_address, "q", "noop", "{}"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot reach Redis"),
        "{}",
        stderr(&refused)
    );
}
