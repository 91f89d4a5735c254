//! The WebAssembly side of Ward: one [`Engine`], one compiled component per
//! plugin, and a fresh instance per attempt.
//!
//! Everything wasmtime-specific lives here, so the rest of the daemon sees a
//! plugin as "bytes in, [`Outcome`] out". The expensive work (compiling,
//! type-checking imports and exports) happens once in [`Runtime::load`]; an
//! attempt only creates a [`Store`], instantiates from the `InstancePre`
//! (cheap with the pooling allocator) and calls `handle`.
//!
//! Limits ([`Sandbox`], per job type): a wall-clock deadline enforced by
//! epoch interruption (the epoch callback also yields to tokio every tick,
//! so a busy plugin never starves the other jobs on its thread), a memory
//! limit, optional fuel (on a second engine, so plugins without it pay
//! nothing for the instrumentation), and a cap on captured output.
//!
//! Capabilities: no files, environment, arguments or sockets; clocks and
//! randomness; outbound HTTP through `wasi:http` to the allow-list only
//! (`runtime/http.rs`); `host.secret` for the names the job type was granted.
//!
//! Worlds: components built against `ward:plugin@0.1.0` or `@0.2.0` both
//! run (`runtime/worlds.rs`); 0.2.0 adds child jobs and progress
//! (`runtime/children.rs`).

mod cancel;
mod children;
mod ending;
mod h2;
mod http;
mod output;
mod pool;
mod reuse;
mod secrets;
mod slots;
mod spec;
mod state;
mod worlds;

pub use cancel::Cancel;
pub use children::{
    MAX_CHILD_KEY, MAX_CHILDREN, MAX_CHILDREN_BYTES, MAX_PROGRESS_MESSAGE, ProgressSink,
};
pub use http::HttpPolicy;
pub use pool::Outbound;
pub use reuse::Reuse;
pub use secrets::{redact, redact_bytes, redact_cut};
pub use spec::RuntimeSpec;
pub use state::HostState;
pub use worlds::World;
// Where a granted secret's value comes from; kept reachable here for callers.
pub use crate::secret::read as read_secret;
// The sandbox defaults are config defaults; kept reachable here for callers.
pub use crate::config::defaults::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_MEMORY_LIMIT, DEFAULT_OUTPUT_LIMIT,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

use crate::digest::sha256_hex;
use crate::follow_on::FollowOn;
use crate::job::{FailureClass, Outcome};
use crate::obs::logging::AttemptIdent;
use ending::{cancelled, classify_trap, redact_outcome};
use reuse::Warm;

/// The bindings of `ward:plugin@0.1.0` (0.2.0's are in `worlds`).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit/v0.1.0",
        world: "job-plugin",
        exports: { default: async },
    });
}

use bindings::ward::plugin::types as wit;

/// How often the epoch advances; also the granularity of deadlines and of
/// the cooperative yields of a busy plugin.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Longest error message kept from a trap; backtraces can be long.
const MAX_TRAP_MESSAGE: usize = 2048;
/// Linear memories reserved per pooled slot: a componentize-py component
/// holds several core instances with a memory each.
const MEMORIES_PER_SLOT: u32 = 8;
/// Largest checkpoint a plugin may save.
pub const MAX_CHECKPOINT: usize = 1 << 20;

/// Errors from building the engine or loading a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The wasmtime engine could not be created.
    #[error("cannot create the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The plugin file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component at all.
    #[error(
        "plugin {path} is not a WebAssembly component ({reason:#}); build plugins for wasm32-wasip2 or wrap a core module with `wasm-tools component new`"
    )]
    NotAComponent {
        /// The plugin file.
        path: PathBuf,
        /// What wasmtime said.
        reason: wasmtime::Error,
    },
    /// The component does not fit the `job-plugin` world.
    #[error(
        "plugin {path} does not fit the ward:plugin/job-plugin world ({reason:#}); it must export `handle` and import only what Ward provides (ward:plugin/host and, from 0.2.0, ward:plugin/jobs; wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets, wasi:http)"
    )]
    WrongWorld {
        /// The plugin file.
        path: PathBuf,
        /// What wasmtime said.
        reason: wasmtime::Error,
    },
}

/// The on-disk cache of compiled components in `dir`, or `None` (with a
/// warning: compiling every start is slower, never wrong) when the folder
/// cannot be used.
///
/// wasmtime keys each entry by the component's bytes, the engine's
/// settings and wasmtime's own version, and checks an entry before it uses
/// it, so a new plugin, another engine configuration or an upgraded Ward
/// never picks up a stale compile. Old entries are cleaned up by wasmtime
/// past its size and count limits.
fn compile_cache(dir: &Path) -> Option<wasmtime::Cache> {
    let mut cfg = wasmtime::CacheConfig::new();
    cfg.with_directory(dir);
    match std::fs::create_dir_all(dir)
        .map_err(wasmtime::Error::from)
        .and_then(|()| wasmtime::Cache::new(cfg))
    {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "cannot use the compile cache; compiling every plugin at start");
            None
        }
    }
}

/// One engine and the linker that gives plugins Ward's host interfaces.
struct EngineSet {
    engine: Engine,
    linker: Linker<HostState>,
    /// Whether the pooling allocator is in use (else on-demand).
    pooled: bool,
}

impl EngineSet {
    /// The engine of `spec`, metering fuel when `fuel`.
    fn new(
        spec: &RuntimeSpec<'_>,
        fuel: bool,
        cache: Option<&wasmtime::Cache>,
    ) -> Result<EngineSet, RuntimeError> {
        let RuntimeSpec {
            slots, max_memory, ..
        } = *spec;
        let mut cfg = wasmtime::Config::new();
        cfg.cache(cache.cloned());
        if spec.perf_map {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        cfg.consume_fuel(fuel);
        let slots = slots.max(1);
        let memories = slots.saturating_mul(MEMORIES_PER_SLOT);
        let share = if fuel { 2 } else { 1 };
        if let Some(bytes) = slots::memory_reservation(memories, max_memory, share) {
            cfg.memory_reservation(bytes);
        }
        let keep = slots::keep_resident(spec.widest, spec.slot_pages);
        cfg.async_stack_zeroing(keep.reset_stacks);
        let mut pool = PoolingAllocationConfig::new();
        // A componentize-py component holds 14 core instances; size for it.
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(16))
            .total_memories(memories)
            .total_tables(slots.saturating_mul(16))
            .total_stacks(slots)
            .max_memory_size(max_memory)
            // Reset a reused slot's first pages with memset rather than
            // madvise: a small plugin's whole memory then never costs a
            // syscall and a TLB shootdown per attempt (the main cost of
            // fresh instances in profiles before this); not in a pool with
            // a queue of thousands of slots, whose attempts wait on I/O.
            .linear_memory_keep_resident(keep.memory)
            // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the
            // pages the attempt touched instead of memsetting all of them.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(keep.table)
            .async_stack_keep_resident(keep.stack);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let (engine, pooled) = match Engine::new(&cfg) {
            Ok(engine) => {
                tracing::debug!(slots, memories, fuel, "instance pool reserved");
                (engine, true)
            }
            Err(pool_err) => {
                // Some hosts cap virtual memory (ulimit -v); the on-demand
                // allocator still works there, only slower per instance.
                tracing::warn!(error = %format!("{pool_err:#}"), "pooling allocator unavailable; using on-demand allocation");
                cfg.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                (Engine::new(&cfg).map_err(RuntimeError::Engine)?, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(RuntimeError::Engine)?;
        worlds::add_to_linker(&mut linker).map_err(RuntimeError::Engine)?;
        Ok(EngineSet {
            engine,
            linker,
            pooled,
        })
    }
}

/// The engines shared by every plugin, plus the epoch ticker that drives deadlines.
pub struct Runtime {
    plain: EngineSet,
    /// Compiled with fuel metering, for job types that set `fuel`; only
    /// built when one does, since metering slows every instruction.
    fueled: Option<EngineSet>,
    ticker_stop: Arc<AtomicBool>,
    /// Compiled components kept on disk between starts, when configured.
    cache: Option<wasmtime::Cache>,
    /// The largest linear memory the pooling allocator has room for.
    max_memory: usize,
}

impl Runtime {
    /// Creates the engine of `spec` (see [`RuntimeSpec`]) with a pooling
    /// allocator, and a second, fuel-metering engine when some job type
    /// meters fuel, and starts the epoch ticker.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] if wasmtime rejects the configuration.
    pub fn new(spec: &RuntimeSpec<'_>) -> Result<Runtime, RuntimeError> {
        let cache = spec.cache.and_then(compile_cache);
        let plain = EngineSet::new(spec, false, cache.as_ref())?;
        let fueled = if spec.fuel {
            Some(EngineSet::new(spec, true, cache.as_ref())?)
        } else {
            None
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking: Vec<_> = std::iter::once(&plain)
            .chain(fueled.as_ref())
            .map(|set| set.engine.weak())
            .collect();
        // A plain thread, not a tokio task: it must keep ticking even when
        // every runtime worker is busy running wasm.
        std::thread::Builder::new()
            .name("ward-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &ticking {
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(wasmtime::Error::from(e)))?;
        Ok(Runtime {
            plain,
            fueled,
            ticker_stop,
            cache,
            max_memory: spec.max_memory,
        })
    }

    /// Whether a job type with this memory limit and fuel (or none) can run
    /// on these engines; a live reload that asks for more needs a restart.
    #[must_use]
    pub fn fits(&self, memory: usize, fuel: bool) -> bool {
        memory <= self.max_memory && (!fuel || self.fueled.is_some())
    }

    /// Whether instances come from the pooling allocator (else the slower
    /// on-demand allocation the engine falls back to when the pool cannot
    /// reserve its address space).
    #[must_use]
    pub fn pooled(&self) -> bool {
        self.plain.pooled && self.fueled.as_ref().is_none_or(|f| f.pooled)
    }

    /// How many compilations the on-disk cache has answered so far (0
    /// without a cache): a load that raises it reused an earlier compile.
    #[must_use]
    pub fn cache_hits(&self) -> usize {
        self.cache.as_ref().map_or(0, wasmtime::Cache::cache_hits)
    }

    /// Compiles a plugin component once and checks it against the world;
    /// `fuel` picks the fuel-metering engine.
    ///
    /// # Errors
    /// [`RuntimeError`] naming the file and what is wrong with it.
    pub fn load(&self, path: &Path, fuel: bool) -> Result<Plugin, RuntimeError> {
        let set = match (&self.fueled, fuel) {
            (Some(set), true) => set,
            _ => &self.plain,
        };
        let (component, digest) = compile(&set.engine, path)?;
        let wrong_world = |reason| RuntimeError::WrongWorld {
            path: path.to_path_buf(),
            reason,
        };
        let world = World::of(&component, &set.engine);
        let instance_pre = set
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = worlds::Pre::new(world, instance_pre).map_err(wrong_world)?;
        Ok(Plugin {
            path: path.to_path_buf(),
            digest: digest.into(),
            pre,
        })
    }

    /// Describes a component for `ward plugin check`: its digest, imports
    /// and exports, and whether it fits the `job-plugin` world.
    ///
    /// # Errors
    /// [`RuntimeError`] if the file cannot be read or is not a component.
    pub fn inspect(&self, path: &Path) -> Result<PluginInfo, RuntimeError> {
        let (component, digest) = compile(&self.plain.engine, path)?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.plain.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(&self.plain.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let world = World::of(&component, &self.plain.engine);
        let fits = self
            .plain
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| worlds::Pre::new(world, pre))
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        Ok(PluginInfo {
            digest,
            size: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            imports,
            exports,
            world,
            fits,
        })
    }
}

fn compile(engine: &Engine, path: &Path) -> Result<(Component, String), RuntimeError> {
    let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = sha256_hex(&bytes);
    let component =
        Component::from_binary(engine, &bytes).map_err(|reason| RuntimeError::NotAComponent {
            path: path.to_path_buf(),
            reason,
        })?;
    Ok((component, digest))
}

/// What `ward plugin check` reports about a component.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// sha256 of the file, hex.
    pub digest: String,
    /// File size in bytes.
    pub size: u64,
    /// Names of the component's imports.
    pub imports: Vec<String>,
    /// Names of the component's exports.
    pub exports: Vec<String>,
    /// The version of the plugin interface it was built against.
    pub world: World,
    /// `Ok` when Ward can run it, else why not (e.g. an import Ward does not provide).
    pub fits: Result<(), String>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled plugin, ready to be instantiated once per attempt.
pub struct Plugin {
    path: PathBuf,
    digest: Arc<str>,
    pre: worlds::Pre,
}

/// What a plugin sees of the job it runs.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// Who the attempt is: job id, type, attempt number, queue and
    /// correlation ids, for its log lines.
    pub ident: AttemptIdent,
    /// Payload bytes, as enqueued.
    pub payload: Vec<u8>,
    /// Idempotency key, if the enqueuer gave one.
    pub idempotency_key: Option<String>,
    /// Checkpoint saved by the previous attempt.
    pub checkpoint: Option<Vec<u8>>,
    /// The attempt's cancel signal: once set, the attempt ends within an
    /// epoch tick as `cancelled` (see [`Cancel`]).
    pub cancel: Arc<Cancel>,
    /// The attempt span's W3C `traceparent`, set on every outbound HTTP
    /// request of the plugin; `None` when traces are off.
    pub traceparent: Option<String>,
    /// The job's batch, which its children may join (read by 0.2.0
    /// plugins only: `None` is right for the others).
    pub batch: Option<String>,
    /// Where a 0.2.0 plugin's progress reports go; `None`: nowhere.
    pub progress: Option<Arc<dyn ProgressSink>>,
}

/// What a job type's attempts may use: limits and granted capabilities.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Wall-clock limit of the whole attempt, instantiation included.
    pub timeout: Duration,
    /// Linear memory limit, bytes.
    pub memory: usize,
    /// Deterministic CPU budget; the plugin must have been loaded with fuel.
    pub fuel: Option<u64>,
    /// Captured stdout/stderr kept per stream, bytes.
    pub output_limit: usize,
    /// Where outbound HTTP may go, and the job type's pooled connections.
    pub http: Arc<Outbound>,
    /// Secrets granted to this job type, by name.
    pub secrets: Arc<BTreeMap<String, String>>,
    /// The job type's kept instances, when it reuses them
    /// (`reuse_instance`); `None`: a fresh instance per attempt.
    pub reuse: Option<Arc<Reuse>>,
    /// The job types of its queue, the only ones its children may have
    /// (empty: any well-formed name).
    pub job_types: Arc<BTreeSet<String>>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            timeout: Duration::from_secs(30),
            memory: DEFAULT_MEMORY_LIMIT,
            fuel: None,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            http: Arc::new(Outbound::default()),
            secrets: Arc::default(),
            reuse: None,
            job_types: Arc::default(),
        }
    }
}

impl Sandbox {
    /// `text` with every granted secret's value replaced by
    /// [`crate::secret::REDACTED`].
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }
}

/// The result of one attempt, with what the plugin left behind.
#[derive(Debug)]
pub struct Attempt {
    /// How it ended (secrets already redacted from failure texts).
    pub outcome: Outcome,
    /// The last checkpoint the plugin saved during this attempt, if any.
    pub checkpoint: Option<Vec<u8>>,
    /// How long instantiating the plugin took (`None` if it did not finish).
    pub instantiate: Option<Duration>,
    /// The payload, handed back so it need not be copied for the plugin.
    pub payload: Vec<u8>,
    /// The child jobs a 0.2.0 plugin enqueued, to be enqueued only if the
    /// attempt succeeded (secrets redacted from their payloads).
    pub children: Vec<FollowOn>,
}

impl Plugin {
    /// The component file this plugin was loaded from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version of the plugin interface it was built against.
    #[must_use]
    pub fn world(&self) -> World {
        self.pre.world()
    }

    /// sha256 of the component bytes, hex: the plugin's version identity.
    #[must_use]
    pub fn digest(&self) -> &Arc<str> {
        &self.digest
    }

    /// Runs one attempt in a fresh instance, or in a kept one when the job
    /// type reuses instances (see [`Reuse`]). Never panics and never
    /// returns an error: every way an attempt can end is an [`Outcome`].
    pub async fn run(&self, input: JobInput, sandbox: &Sandbox) -> Attempt {
        let begun = Instant::now();
        let deadline = begun + sandbox.timeout;
        let mut job = wit::Job {
            id: input.ident.job_id.clone(),
            name: input.ident.job.clone(),
            payload: input.payload,
            attempt: input.ident.attempt,
            idempotency_key: input.idempotency_key,
            checkpoint: input.checkpoint,
        };
        let warm = sandbox.reuse.as_ref().and_then(|r| r.take(&self.digest));
        let (mut store, kept, served) = match warm {
            Some(w) => {
                let mut store = w.store;
                store.data_mut().renew(input.ident, sandbox, deadline);
                (store, Some(w.instance), w.served)
            }
            None => {
                let state = HostState::new(input.ident, sandbox, deadline);
                let mut store = Store::new(self.pre.engine(), state);
                store.limiter(|s| &mut s.limiter);
                (store, None, 0)
            }
        };
        let state = store.data_mut();
        state.traceparent = input.traceparent;
        state.fanout = if self.pre.world() == World::V0_2 {
            children::Fanout::new(sandbox, input.batch, input.progress)
        } else {
            children::Fanout::default()
        };
        if let Some(fuel) = sandbox.fuel {
            // Fails only on an engine without fuel metering; the worker loads
            // plugins of fuel-limited job types on the metering engine.
            if let Err(e) = store.set_fuel(fuel) {
                tracing::error!(job_id = %job.id, error = %e, "cannot set fuel; running without it");
            }
        }
        store.set_epoch_deadline(1);
        let cancel = input.cancel;
        let cancel_seen = cancel.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            // Checked every tick: a cancelled plugin busy in wasm stops
            // within one (the race below catches one parked in a host call).
            if cancel_seen.is_cancelled() {
                Ok(UpdateDeadline::Interrupt)
            } else if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let resources = store.data_mut().resources();
        // The epoch only interrupts running wasm; a plugin parked in an async
        // host call (a sleep, an HTTP request) is cut off by this outer
        // timeout. The small grace lets the epoch path report first.
        let mut instantiate = None;
        // Cancelled before it started (a request came in since the triage):
        // the plugin is not run at all.
        let result = if cancel.is_cancelled() {
            None
        } else {
            let call = async {
                let instance = match kept {
                    Some(instance) => instance,
                    None => self.pre.instantiate_async(&mut store).await?,
                };
                // From the attempt's start: the store's making included.
                instantiate = Some(begun.elapsed());
                let returned = instance.call_handle(&mut store, &mut job).await?;
                wasmtime::Result::Ok((instance, returned))
            };
            // Pinned where it is: moved into the timeout and the select, the
            // call's future (over a KiB) was copied on each move. The call
            // is polled first: one that ends on its first poll (most short
            // jobs) never registers with the cancel signal's `Notify`; a
            // cancel that lands meanwhile still wins below, as the
            // interrupted call then fails.
            let call = std::pin::pin!(call);
            tokio::select! {
                biased;
                r = tokio::time::timeout_at((deadline + EPOCH_TICK * 4).into(), call) => Some(r),
                () = cancel.cancelled() => None,
            }
        };
        let state = store.data_mut();
        let mut instance = None;
        let outcome = match result {
            // Cancelled wins over whatever failure the interruption caused;
            // a success that came first stays a success.
            None => cancelled(),
            Some(Ok(Ok((inst, Ok(output))))) => {
                instance = Some(inst);
                Outcome::Success(output)
            }
            Some(_) if cancel.is_cancelled() => cancelled(),
            Some(Err(_elapsed)) => Outcome::failure(
                FailureClass::Timeout,
                format!("attempt ran past its {:?} deadline", sandbox.timeout),
            )
            .with_code("deadline"),
            Some(Ok(Ok((_, Err(failure))))) => Outcome::Failure(failure.into()),
            Some(Ok(Err(err))) => classify_trap(&err, state, sandbox),
        };
        state.log_output(sandbox);
        let checkpoint = state
            .checkpoint
            .take()
            .map(|c| redact_bytes(c, &sandbox.secrets));
        // Only a clean success keeps its instance (see runtime/reuse.rs).
        let leftover_http = state.used_http() && state.resources() > resources;
        let clean = !(state.timed_out || cancel.is_cancelled() || leftover_http);
        let children = children::redacted(std::mem::take(&mut state.fanout.children), sandbox);
        if let (Some(reuse), Some(instance), true) = (&sandbox.reuse, instance, clean) {
            reuse.keep(Warm {
                store,
                instance,
                served,
                plugin: self.digest.clone(),
            });
        }
        Attempt {
            outcome: redact_outcome(outcome, sandbox),
            checkpoint,
            instantiate,
            payload: job.payload,
            children,
        }
    }
}

impl From<wit::Failure> for crate::job::Failure {
    fn from(f: wit::Failure) -> Self {
        crate::job::Failure {
            class: match f.class {
                wit::FailureClass::Transient => FailureClass::Transient,
                wit::FailureClass::Recoverable => FailureClass::Recoverable,
                wit::FailureClass::Permanent => FailureClass::Permanent,
            },
            message: f.message,
            code: f.code,
            upstream: f.upstream,
            retry_after_ms: f.retry_after_ms,
        }
    }
}
