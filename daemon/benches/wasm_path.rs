//! Micro-benchmarks of the per-attempt hot path, without Redis:
//! `Plugin::run` on a fresh instance (Store + instantiate from `InstancePre`
//! with the pooling allocator + call `handle`) for each example plugin that
//! has been built, and the pure retry decision.
//!
//! Run with `cargo bench -p ward --bench wasm_path` after
//! `scripts/build-plugins` (and `scripts/build-lang-plugins` for the Python,
//! JS and C examples; missing plugins are skipped with a note).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use ward::job::{FailureClass, Outcome};
use ward::obs::logging::AttemptIdent;
use ward::policy::{self, Progress, RetryPolicy};
use ward::runtime::{JobInput, Runtime, RuntimeSpec, Sandbox};

fn plugins_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("plugins")
}

fn instantiate_and_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(&RuntimeSpec {
        slots: 16,
        ..RuntimeSpec::single(None)
    })
    .unwrap();
    let sandbox = Sandbox {
        timeout: Duration::from_secs(30),
        ..Sandbox::default()
    };
    let cases: [(&str, &[u8]); 4] = [
        ("noop", b"{}"),
        (
            "c-example",
            br#"{"email":"Ada@Example.com","name":" Ada ","simulate":"none"}"#,
        ),
        (
            "python-example",
            br#"{"email":"Ada@Example.com","name":" Ada ","simulate":"none"}"#,
        ),
        (
            "js-example",
            br#"{"email":"Ada@Example.com","name":" Ada ","simulate":"none"}"#,
        ),
    ];
    for (name, payload) in cases {
        let path = plugins_dir().join(format!("{name}.wasm"));
        if !path.is_file() {
            eprintln!("skipping {name}: {} not built", path.display());
            continue;
        }
        let plugin = runtime.load(&path, false).unwrap();
        let input = JobInput {
            ident: AttemptIdent {
                queue: "bench".into(),
                job_id: "1-0".into(),
                job: name.into(),
                attempt: 1,
                correlation: Vec::new(),
            },
            payload: payload.to_vec(),
            idempotency_key: Some("1-0".into()),
            checkpoint: None,
            cancel: Default::default(),
            traceparent: None,
            batch: None,
            progress: None,
        };
        // Sanity: the attempt must succeed, or the figure measures an error path.
        let first = rt.block_on(plugin.run(input.clone(), &sandbox));
        assert!(
            matches!(first.outcome, Outcome::Success(_)),
            "{name}: {:?}",
            first.outcome
        );
        // The plugin guide's figures: median and p99 of 1,000 single attempts.
        let mut times: Vec<Duration> = (0..1000)
            .map(|_| {
                let t = std::time::Instant::now();
                let _ = rt.block_on(plugin.run(input.clone(), &sandbox));
                t.elapsed()
            })
            .collect();
        times.sort_unstable();
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        println!(
            "attempts/{name}: {size} bytes; 1,000 attempts: median {:?}, p99 {:?}, max {:?}",
            times[500], times[990], times[999]
        );
        c.bench_function(&format!("instantiate+call/{name}"), |b| {
            b.iter(|| rt.block_on(plugin.run(input.clone(), &sandbox)));
        });
    }
}

fn decide(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    let outcome = Outcome::failure(FailureClass::Transient, "503");
    let progress = Progress {
        attempt: 3,
        first_attempt_ms: 1_000_000,
        now_ms: 1_004_000,
        previous_delay: Some(Duration::from_secs(2)),
    };
    let mut rng = StdRng::seed_from_u64(1);
    c.bench_function("policy::decide/transient", |b| {
        b.iter(|| policy::decide(std::hint::black_box(&outcome), &progress, &policy, &mut rng));
    });
}

criterion_group!(benches, instantiate_and_call, decide);
criterion_main!(benches);
