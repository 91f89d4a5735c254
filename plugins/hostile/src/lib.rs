//! A Ward plugin that tries to misbehave, as its payload tells it to: used
//! to prove the sandbox holds. The payload is `{"do": "<what>", ...}`:
//!
//! | `do`            | what it tries                                                        |
//! |-----------------|----------------------------------------------------------------------|
//! | `alloc_forever` | allocate 1 MiB blocks until memory runs out                          |
//! | `alloc`         | allocate and touch `mb` MiB, then succeed (default 4)                |
//! | `recurse`       | recurse without end                                                  |
//! | `spin`          | loop forever                                                         |
//! | `read_file`     | read `path` (default `/etc/passwd`)                                  |
//! | `env`           | read the environment variable `name` (default `HOME`) and count vars |
//! | `http`          | send `method` (default GET) to `url`; succeeds with the status code  |
//! | `secret`        | ask for secret `name`; succeeds with `granted` or `not granted`      |
//! | `leak`          | put secret `name`'s value in a log line, stdout and its failure      |
//! | `leak_ok`       | attempt 1: save secret `name` in a checkpoint, print `bytes` bytes   |
//! |                 | of padding then the secret, fail transiently; attempt 2: succeed     |
//! |                 | with the secret and whether the checkpoint still held it             |
//! | `print`         | print `bytes` bytes (default 1 MiB) to stdout, then succeed          |
//!
//! Whatever the host refuses comes back as a permanent failure whose
//! message says what the plugin saw.

use std::hint::black_box;

use serde::Deserialize;
use ward_plugin_sdk::{Failure, Job, fetch, log, save_checkpoint, secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Orders {
    #[serde(rename = "do")]
    what: String,
    mb: Option<usize>,
    path: Option<String>,
    name: Option<String>,
    url: Option<String>,
    method: Option<String>,
    bytes: Option<usize>,
}

fn handle(job: Job) -> Result<Vec<u8>, Failure> {
    let orders: Orders = job.json()?;
    match orders.what.as_str() {
        "alloc_forever" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "alloc" => {
            let mb = orders.mb.unwrap_or(4);
            let block = vec![7u8; mb << 20];
            Ok(black_box(block).len().to_string().into_bytes())
        }
        "recurse" => Ok(recurse(0).to_string().into_bytes()),
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "read_file" => {
            let path = orders.path.unwrap_or_else(|| "/etc/passwd".into());
            match std::fs::read(&path) {
                Ok(bytes) => Ok(bytes),
                Err(e) => {
                    Err(Failure::permanent(format!("cannot read {path}: {e}")).code("no-file"))
                }
            }
        }
        "env" => {
            let name = orders.name.unwrap_or_else(|| "HOME".into());
            let count = std::env::vars().count();
            match std::env::var(&name) {
                Ok(value) => Ok(value.into_bytes()),
                Err(e) => Err(Failure::permanent(format!(
                    "env var {name}: {e}; {count} variables visible"
                ))
                .code("no-env")),
            }
        }
        "http" => {
            let url = orders.url.unwrap_or_default();
            let method = orders.method.unwrap_or_else(|| "GET".into());
            let response = fetch::Request::new(&method, &url)
                .header(
                    "idempotency-key",
                    job.idempotency_key.clone().unwrap_or_default(),
                )
                .body(job.payload.clone())
                .send()
                .map_err(|e| e.into_failure("test-upstream"))?;
            Ok(response.status.to_string().into_bytes())
        }
        "secret" => {
            let name = orders.name.unwrap_or_default();
            Ok(if secret(&name).is_some() {
                b"granted".to_vec()
            } else {
                b"not granted".to_vec()
            })
        }
        "leak" => {
            let name = orders.name.unwrap_or_default();
            let value = secret(&name).unwrap_or_else(|| "<not granted>".into());
            log::warn(&format!("the secret is {value}"));
            println!("stdout sees {value}");
            Err(Failure::permanent(format!("upstream rejected token {value}")).code("leaky"))
        }
        "leak_ok" => {
            let name = orders.name.unwrap_or_default();
            let value = secret(&name).unwrap_or_else(|| "<not granted>".into());
            if job.attempt == 1 {
                save_checkpoint(format!("resume with {value}").as_bytes());
                // The padding puts the secret across the output cap, so
                // only its start is captured.
                println!("{}{value}", "x".repeat(orders.bytes.unwrap_or(0)));
                return Err(Failure::transient("come back for the result"));
            }
            let kept = job
                .checkpoint
                .as_deref()
                .is_some_and(|c| String::from_utf8_lossy(c).contains(&value));
            Ok(format!("token {value}; the checkpoint kept it: {kept}").into_bytes())
        }
        "print" => {
            let line = "x".repeat(1023);
            for _ in 0..orders.bytes.unwrap_or(1 << 20) / 1024 {
                println!("{line}");
            }
            Ok(b"printed".to_vec())
        }
        other => Err(
            Failure::permanent(format!("hostile: unknown order `{other}`")).code("invalid-payload"),
        ),
    }
}

#[allow(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the frames real: no tail call, no folding.
    let pad = black_box([depth; 16]);
    black_box(recurse(depth + 1)) + pad[3]
}

ward_plugin_sdk::plugin!(handle);
