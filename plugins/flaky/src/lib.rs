//! A Ward job plugin that fails on purpose, as its payload tells it to.
//!
//! Used to exercise the daemon's retry, timeout, checkpoint and dead-letter
//! handling. The payload is a JSON object; every field is optional:
//!
//! | field            | meaning                                                                 |
//! |------------------|-------------------------------------------------------------------------|
//! | `fail`           | `"transient"` (default), `"recoverable"` or `"permanent"`               |
//! | `times`          | fail while `attempt <= times`, then succeed; absent: fail every attempt |
//! | `message`        | the failure message (default: `flaky: failing attempt N of M as asked`) |
//! | `code`           | the failure's code                                                      |
//! | `upstream`       | the failure's upstream                                                  |
//! | `retry_after_ms` | the failure's retry-after, in milliseconds                              |
//! | `hang_ms`        | busy-spin this long first, like a plugin stuck in a loop                |
//! | `sleep_ms`       | sleep this long first, like a plugin waiting on slow I/O                |
//! | `trap`           | on a failing attempt, trap instead of returning a failure               |
//! | `checkpoint`     | save `attempt N` as the checkpoint on every attempt, and on success     |
//! |                  | return the checkpoint this attempt received (empty if none)             |
//! | `key`            | on success, return the idempotency key the host passed in              |
//! | `count`          | on success, return `count N`: N calls this instance has handled,        |
//! |                  | held in a global (1 in a fresh instance; more when instances are reused)|
//! | `secret`         | on success, return `secret NAME=VALUE` (or `secret NAME unset`) as      |
//! |                  | `host.secret(NAME)` answers                                             |
//! | `children`       | first enqueue this many child jobs (`ward:plugin@0.2.0`), whose payload |
//! |                  | is `child N` (0-based), joining the parent's batch                      |
//! | `child_job`      | the children's job type (default `echo`)                                |
//! | `progress`       | report progress 0, 50, then this percent (sleep_ms is split between)    |
//! | `progress_for_ms`| report progress in a busy loop this long, last `100 looped`            |
//!
//! On success the result is `ok attempt N`, unless `checkpoint`, `key`, `count`
//! or `secret` is set.
//! A payload that is not such an object (unknown fields included, so that a
//! typo in a test is not silently ignored) fails permanently with code
//! `invalid-payload`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use ward_plugin_sdk::{Failure, Job, jobs, log, save_checkpoint, secret};

/// Calls this instance has handled: lives as long as the instance does,
/// so it shows whether the host reused one.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// The class of failure asked for, as spelled in the payload.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Class {
    #[default]
    Transient,
    Recoverable,
    Permanent,
}

/// What the payload asks this plugin to do.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Behaviour {
    fail: Class,
    times: Option<u32>,
    message: Option<String>,
    code: Option<String>,
    upstream: Option<String>,
    retry_after_ms: Option<u64>,
    hang_ms: u64,
    sleep_ms: u64,
    trap: bool,
    checkpoint: bool,
    key: bool,
    count: bool,
    secret: Option<String>,
    children: u32,
    child_job: Option<String>,
    progress: Option<u8>,
    progress_for_ms: u64,
}

fn handle(job: Job) -> Result<Vec<u8>, Failure> {
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let behaviour: Behaviour = job.json()?;
    let attempt = job.attempt;
    let failing = behaviour.times.is_none_or(|times| attempt <= times);
    let limit = behaviour.times.map_or_else(
        || "every attempt".to_owned(),
        |times| format!("{times} attempt(s)"),
    );
    log::info(&format!(
        "flaky: attempt {attempt}, asked to fail {limit}: {}",
        if failing { "failing" } else { "succeeding" }
    ));

    if behaviour.checkpoint {
        save_checkpoint(format!("attempt {attempt}").as_bytes());
    }
    let child_job = behaviour.child_job.as_deref().unwrap_or("echo");
    for n in 0..behaviour.children {
        // A refused child fails the attempt (permanently): a test asking
        // for more than the host allows sees why.
        jobs::enqueue(jobs::Child::new(child_job, format!("child {n}")).join_batch())?;
    }
    if let Some(percent) = behaviour.progress {
        jobs::progress(0, "starting");
        std::thread::sleep(Duration::from_millis(behaviour.sleep_ms / 2));
        jobs::progress(50, "half way");
        std::thread::sleep(Duration::from_millis(behaviour.sleep_ms / 2));
        jobs::progress(percent, &format!("reached {percent}"));
    }
    if behaviour.progress_for_ms > 0 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(behaviour.progress_for_ms) {
            jobs::progress((n % 100) as u8, "looping");
            n = n.wrapping_add(1);
        }
        jobs::progress(100, "looped");
    }
    if behaviour.hang_ms > 0 {
        spin_for(Duration::from_millis(behaviour.hang_ms));
    }
    if behaviour.sleep_ms > 0 && behaviour.progress.is_none() {
        std::thread::sleep(Duration::from_millis(behaviour.sleep_ms));
    }

    if !failing {
        return Ok(if behaviour.checkpoint {
            job.checkpoint.unwrap_or_default()
        } else if behaviour.key {
            job.idempotency_key.unwrap_or_default().into_bytes()
        } else if behaviour.count {
            format!("count {calls}").into_bytes()
        } else if let Some(name) = &behaviour.secret {
            match secret(name) {
                Some(value) => format!("secret {name}={value}").into_bytes(),
                None => format!("secret {name} unset").into_bytes(),
            }
        } else {
            format!("ok attempt {attempt}").into_bytes()
        });
    }
    if behaviour.trap {
        trap();
    }
    Err(failure(&behaviour, attempt))
}

/// Builds the failure the payload asked for.
fn failure(behaviour: &Behaviour, attempt: u32) -> Failure {
    let message = behaviour
        .message
        .clone()
        .unwrap_or_else(|| match behaviour.times {
            Some(times) => format!("flaky: failing attempt {attempt} of {times} as asked"),
            None => format!("flaky: failing attempt {attempt} as asked (every attempt fails)"),
        });
    let mut failure = match behaviour.fail {
        Class::Transient => Failure::transient(message),
        Class::Recoverable => Failure::recoverable(message),
        Class::Permanent => Failure::permanent(message),
    };
    if let Some(code) = &behaviour.code {
        failure = failure.code(code);
    }
    if let Some(upstream) = &behaviour.upstream {
        failure = failure.upstream(upstream);
    }
    if let Some(ms) = behaviour.retry_after_ms {
        failure = failure.retry_after(Duration::from_millis(ms));
    }
    failure
}

/// Keeps the CPU busy for `duration` without yielding to the host, so that
/// only the daemon's own interruption (epoch/fuel) can stop it; a sleep would
/// block in a host call instead.
fn spin_for(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Aborts the attempt with a WebAssembly trap rather than a failure.
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    // Only reached when built natively (e.g. `cargo check` on the host); a
    // panic is the nearest thing to a trap there.
    #[cfg(not(target_arch = "wasm32"))]
    panic!("flaky: trapping as asked");
}

ward_plugin_sdk::plugin!(handle);
