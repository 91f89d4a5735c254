//! Many I/O-bound attempts in one daemon: a queue with a concurrency past
//! the old 4,096 cap runs that many webhook attempts at once against a
//! slow receiver, and the daemon's memory stays bounded. (The full 10,000
//! is the `ward-bench --scenarios inflight` benchmark; a debug build on a
//! shared machine runs half of it here.)

use std::time::Duration;

use ward_testkit::*;

const N: usize = 5_000;
/// Less than this in flight at once means the daemon held attempts back.
const AT_ONCE: usize = N * 9 / 10;
const GIB_KIB: u64 = 1 << 20;

/// The `hook` job type (the `webhook` example) with `extra` in its table,
/// allowed to reach 127.0.0.1:`port` with `http` (besides `allow`) in its
/// `http` table.
fn hook_job(port: u16, extra: &str, http: &str) -> String {
    job(
        "hook",
        "webhook",
        &format!("{extra}\nhttp = {{ allow = [\"127.0.0.1:{port}\"], {http} }}"),
    )
}

/// A `hook` job's payload: POST `{}` to 127.0.0.1:`port`.
fn hook_body(port: u16) -> String {
    format!(r#"{{"url":"http://127.0.0.1:{port}/hook","body":{{}}}}"#)
}

#[test]
fn five_thousand_webhook_attempts_wait_on_a_slow_upstream_at_once_under_1_gib() {
    // Long enough for a debug daemon to start all of them while the first
    // still wait.
    let stub = UpstreamStub::keep_alive(Duration::from_secs(20));
    let redis = Redis::start();
    let jobs = hook_job(stub.port, "timeout = \"300s\"", "timeout = \"120s\"");
    let cfg = config(&redis, u32::try_from(N).unwrap(), &jobs);
    let body = hook_body(stub.port);
    let ids = xadd_many(&redis, N, "hook", &body);
    let ward_proc = Ward::start(&cfg).ready();
    wait_for(
        Duration::from_secs(120),
        "most attempts in flight at once",
        || stub.max_open() >= AT_ONCE,
    );
    wait_for(Duration::from_secs(300), "every job to finish", || {
        job_fields(&redis, &ids, "state")
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    let peak = proc_status_kib(ward_proc.pid(), "VmHWM").unwrap();
    eprintln!(
        "in flight at once: {} of {N}; connections {}; daemon peak RSS {} MiB",
        stub.max_open(),
        stub.connections(),
        peak / 1024
    );
    assert!(
        stub.max_open() >= AT_ONCE,
        "only {} at once",
        stub.max_open()
    );
    assert!(peak < GIB_KIB, "peak RSS {} MiB", peak / 1024);
    let retried: Vec<_> = ids
        .iter()
        .zip(job_fields(&redis, &ids, "attempts"))
        .filter(|(_, a)| a.as_deref() != Some("1"))
        .collect();
    assert!(
        retried.is_empty(),
        "jobs not done in one attempt: {retried:?}"
    );
    assert_eq!(stub.requests(), N, "one request per job");
}

/// RSS by kind of daemon `pid`: (anonymous, shared memory) KiB.
fn rss_by_kind(pid: u32) -> (u64, u64) {
    (
        proc_status_kib(pid, "RssAnon").unwrap(),
        proc_status_kib(pid, "RssShmem").unwrap(),
    )
}

#[test]
fn a_pool_of_thousands_of_slots_keeps_no_pages_of_a_burst() {
    // Past 8,192 slots in one queue the pool gives a slot's pages back as
    // its attempt ends (`[daemon] slot_pages = "auto"`).
    assert_a_burst_leaves_no_pages(9_000, "");
}

#[test]
fn slot_pages_release_gives_a_bursts_pages_back_in_a_small_pool_too() {
    assert_a_burst_leaves_no_pages(500, "[daemon]\nslot_pages = \"release\"\n");
}

/// Runs 400 webhook attempts at once in a queue of `concurrency` under a
/// config that starts with `top`, and checks the daemon's memory is back
/// where it was once they ended. Kept, these 400 would hold some 50 MiB
/// for good: the plugin's memory image mapped in each slot (shared
/// memory), and the linear memory, stack and table pages each attempt
/// wrote (anonymous); at 8,000 slots with `auto` they did (checked).
fn assert_a_burst_leaves_no_pages(concurrency: u32, top: &str) {
    const BURST: usize = 400;
    let stub = UpstreamStub::keep_alive(Duration::from_secs(2));
    let redis = Redis::start();
    let jobs = hook_job(
        stub.port,
        "timeout = \"120s\"",
        "timeout = \"60s\", pool_max_idle = 0",
    );
    let cfg = config_top(
        &redis,
        &format!("{top}{METRICS_ANY_PORT}"),
        &format!("concurrency = {concurrency}"),
        FAST_RETRY,
        &jobs,
    );
    // The heap's freed pages go back at once, so only the pool's show.
    let env = [("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")];
    let ward_proc = Ward::start_with_env(&cfg, &env).ready();
    let pid = ward_proc.pid();
    let before = rss_by_kind(pid);
    let body = hook_body(stub.port);
    let ids = xadd_many(&redis, BURST, "hook", &body);
    wait_for(Duration::from_secs(120), "every job to finish", || {
        job_fields(&redis, &ids, "state")
            .iter()
            .all(|s| s.as_deref() == Some("succeeded"))
    });
    assert!(
        stub.max_open() >= BURST / 2,
        "only {} at once",
        stub.max_open()
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_by_kind(pid);
    eprintln!("RSS (anonymous, shared) KiB before the burst {before:?}, after {after:?}");
    assert!(
        after.1 < before.1 + 1024,
        "the slots kept their memory images mapped: shared RSS {before:?} -> {after:?}"
    );
    assert!(
        after.0 < before.0 + 8 * 1024,
        "the slots kept the pages their attempts wrote: anonymous RSS {before:?} -> {after:?}"
    );
}
