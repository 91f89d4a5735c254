//! The `scaling` scenario: throughput of 1, 2 and 4 daemons
//! (`--daemon-counts`) against one Redis and against a Redis Cluster, with
//! the same queues on both. On the cluster the queues are spread over the
//! masters: their names are picked so that each queue's hash tag `{Q}`
//! lands on a different master. The cluster is a local one of three masters
//! with one replica each, started by the kit's harness, unless
//! `--cluster-seeds` names one (it is FLUSHed!).
//!
//! Every daemon serves every queue; the jobs of a run are split evenly over
//! the queues and pre-filled, and throughput is first attempt start to last
//! completion over all of them, read from the records on each queue's
//! master, as in the `throughput` scenario.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ward_testkit::{Cluster, Config, METRICS_ANY_PORT, Ward, connect, job_table, xadd_pipe};

use super::{Bench, Row, all_succeeded, records_in, redis_cpu, stop, usage};

/// Where a run's jobs go: the address the daemons are given, and for each
/// queue the data node that holds it.
struct Target {
    /// `one Redis` or `3-master cluster`.
    label: String,
    /// `[redis] url` of the daemons.
    url: String,
    /// The data nodes whose CPU is counted and which are FLUSHed.
    nodes: Vec<String>,
    /// `(queue, URL of the node holding its keys)`.
    queues: Vec<(String, String)>,
}

/// One measured run.
struct Measured {
    throughput: f64,
    daemon_cpu: f64,
    redis_cpu: f64,
}

/// The cluster's masters: `(first slot, last slot, "host:port")` ranges
/// from `CLUSTER SLOTS`, and a connection to a node to ask for a key's slot.
struct Slots(Vec<(u16, u16, String)>, redis::Connection);

impl Slots {
    fn read(seed: &str) -> anyhow::Result<Slots> {
        let mut c = connect(seed)?;
        let reply: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
        let redis::Value::Array(ranges) = reply else {
            bail!("CLUSTER SLOTS on {seed}: not an array");
        };
        let mut out = Vec::new();
        for r in ranges {
            let redis::Value::Array(r) = r else { continue };
            let (Some(from), Some(to), Some(redis::Value::Array(master))) =
                (r.first(), r.get(1), r.get(2))
            else {
                continue;
            };
            let host: String = redis::from_redis_value_ref(&master[0])?;
            let port: u16 = redis::from_redis_value_ref(&master[1])?;
            out.push((
                redis::from_redis_value_ref(from)?,
                redis::from_redis_value_ref(to)?,
                format!("{host}:{port}"),
            ));
        }
        Ok(Slots(out, c))
    }

    /// Every master, once.
    fn masters(&self) -> Vec<String> {
        let mut m: Vec<String> = self.0.iter().map(|r| r.2.clone()).collect();
        m.sort();
        m.dedup();
        m
    }

    /// The master holding `key`.
    fn master_of(&mut self, key: &str) -> anyhow::Result<Option<String>> {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.1)?;
        Ok(self
            .0
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .map(|r| r.2.clone()))
    }
}

/// One queue name per master (`s0`, `s1`, … until each master has one).
fn spread(slots: &mut Slots) -> anyhow::Result<Vec<(String, String)>> {
    let masters = slots.masters();
    let mut picked: Vec<(String, String)> = Vec::new();
    for i in 0..10_000 {
        let name = format!("s{i}");
        let master = slots
            .master_of(&format!("ward:{{{name}}}:jobs"))?
            .context("a slot no master serves")?;
        if !picked.iter().any(|(_, m)| *m == master) {
            picked.push((name, master));
        }
        if picked.len() == masters.len() {
            return Ok(picked
                .into_iter()
                .map(|(q, m)| (q, format!("redis://{m}")))
                .collect());
        }
    }
    bail!("no queue names found for all {} masters", masters.len())
}

/// The daemons' config: every queue of `target`, a `noop-<queue>` job type
/// on each.
fn config(bench: &Bench, target: &Target) -> String {
    let args = &bench.args;
    let threads = args
        .threads
        .map_or_else(String::new, |t| format!("[daemon]\nthreads = {t}\n\n"));
    let body = format!(
        "concurrency = {}\nsucceeded_ttl = \"24h\"",
        args.concurrency
    );
    let noop = bench.plugins.join("noop.wasm");
    let mut rest = String::new();
    for (q, _) in &target.queues[1..] {
        rest += &format!("[[queue]]\nname = \"{q}\"\n{body}\n\n");
    }
    for (q, _) in &target.queues {
        rest += &job_table(&format!("noop-{q}"), q, &noop, "");
    }
    Config::new(&target.url)
        .top(&format!("{threads}{METRICS_ANY_PORT}"))
        .queue(&target.queues[0].0, &body)
        .jobs(&rest)
        .render()
}

/// Pre-fills the jobs, starts `daemons` daemons, waits until every queue
/// is drained, checks that every job succeeded.
#[allow(clippy::cast_precision_loss, reason = "job counts far below 2^52")]
fn run(bench: &Bench, target: &Target, daemons: usize) -> anyhow::Result<Measured> {
    let mut nodes = target
        .nodes
        .iter()
        .map(|u| connect(u))
        .collect::<Result<Vec<_>, _>>()?;
    for c in &mut nodes {
        let _: () = redis::cmd("FLUSHALL").query(c)?;
    }
    let per_queue = bench.args.jobs / target.queues.len();
    let mut ids = Vec::new();
    for (q, node) in &target.queues {
        let mut con = connect(node)?;
        let stream = format!("ward:{{{q}}}:jobs");
        let job = format!("noop-{q}");
        let mut got = Vec::with_capacity(per_queue);
        while got.len() < per_queue {
            let mut pipe = redis::pipe();
            for _ in 0..(per_queue - got.len()).min(1000) {
                xadd_pipe(&mut pipe, &stream, &[("job", &job), ("payload", "{}")]);
            }
            let chunk: Vec<String> = pipe.query(&mut con)?;
            got.extend(chunk);
        }
        ids.push((q.clone(), con, got));
    }
    let cpu_before: f64 = nodes.iter_mut().map(redis_cpu).sum();
    let cfg = config(bench, target);
    let started = (0..daemons)
        .map(|_| bench.start(&cfg))
        .collect::<anyhow::Result<Vec<Ward>>>()?;
    eprintln!("{}: {daemons} daemon(s) running", target.label);
    let deadline = Instant::now() + Duration::from_secs(300);
    for (q, con, _) in &mut ids {
        loop {
            let (len, delayed): (usize, usize) = redis::pipe()
                .cmd("XLEN")
                .arg(format!("ward:{{{q}}}:jobs"))
                .cmd("ZCARD")
                .arg(format!("ward:{{{q}}}:delayed"))
                .query(con)?;
            if len == 0 && delayed == 0 {
                break;
            }
            if Instant::now() > deadline {
                let logs: String = started.iter().map(Ward::logs).collect();
                bail!(
                    "queue {q} not drained: {len} in the stream, {delayed} delayed; daemon logs:\n{logs}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let daemon_cpu = started.iter().map(|d| usage(d).0).sum();
    let redis_used = nodes.iter_mut().map(redis_cpu).sum::<f64>() - cpu_before;
    stop(started);
    let mut rows: Vec<Row> = Vec::new();
    for (q, con, got) in &mut ids {
        rows.extend(records_in(con, q, got)?);
    }
    all_succeeded(&rows, &format!("{} with {daemons} daemon(s)", target.label))?;
    let first = rows.iter().map(|r| r.first).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.last).max().unwrap_or(0);
    let span = last.saturating_sub(first).max(1) as f64 / 1000.0;
    Ok(Measured {
        throughput: rows.len() as f64 / span,
        daemon_cpu,
        redis_cpu: redis_used,
    })
}

/// Runs `--runs` times each daemon count on each target, alternating the
/// targets, and prints the medians.
pub(super) fn compare(bench: &Bench) -> anyhow::Result<()> {
    let args = &bench.args;
    let local;
    let seeds = if args.cluster_seeds.is_empty() {
        local = Cluster::start();
        local.seeds()
    } else {
        args.cluster_seeds.clone()
    };
    let mut slots = Slots::read(&seeds[0])?;
    let queues = spread(&mut slots)?;
    let masters = slots.masters();
    let cluster = Target {
        label: format!("{}-master cluster", masters.len()),
        url: format!(
            "redis+cluster://{}",
            seeds
                .iter()
                .map(|s| s.trim_start_matches("redis://"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        nodes: masters.iter().map(|m| format!("redis://{m}")).collect(),
        queues: queues.clone(),
    };
    let one = Target {
        label: "one Redis".to_string(),
        url: bench.redis.url.clone(),
        nodes: vec![bench.redis.url.clone()],
        queues: queues
            .iter()
            .map(|(q, _)| (q.clone(), bench.redis.url.clone()))
            .collect(),
    };
    println!(
        "## scaling: {} no-op jobs per run over {} queues ({}), concurrency {} per queue and daemon; \
         medians of {} run(s), jobs/s (min – max); CPU seconds summed over the daemons and over the masters",
        args.jobs,
        queues.len(),
        queues
            .iter()
            .map(|(q, m)| format!("{q} on {m}"))
            .collect::<Vec<_>>()
            .join(", "),
        args.concurrency,
        args.runs.max(1)
    );
    println!("| daemons | target | throughput | daemon CPU | Redis CPU |");
    println!("| --- | --- | --- | --- | --- |");
    for &d in &args.daemon_counts {
        let mut by_target: Vec<Vec<Measured>> = vec![Vec::new(), Vec::new()];
        for _ in 0..args.runs.max(1) {
            for (i, t) in [&one, &cluster].into_iter().enumerate() {
                by_target[i].push(run(bench, t, d)?);
            }
        }
        for (t, mut runs) in [&one, &cluster].into_iter().zip(by_target) {
            runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
            let m = &runs[runs.len() / 2];
            println!(
                "| {d} | {} | **{:.0}** ({:.0} – {:.0}) | {:.2} s | {:.2} s |",
                t.label,
                m.throughput,
                runs[0].throughput,
                runs[runs.len() - 1].throughput,
                m.daemon_cpu,
                m.redis_cpu
            );
        }
    }
    Ok(())
}
