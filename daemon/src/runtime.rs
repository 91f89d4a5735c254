//! The WebAssembly side of Ward: one [`Engine`], one compiled component per
//! plugin, and a fresh instance per attempt.
//!
//! Everything wasmtime-specific lives here, so the rest of the daemon sees a
//! plugin as "bytes in, [`Outcome`] out". The expensive work (compiling,
//! type-checking imports and exports) happens once in [`Runtime::load`]; an
//! attempt only creates a [`Store`], instantiates from the [`InstancePre`]
//! (cheap with the pooling allocator) and calls `handle`.
//!
//! Limits: a wall-clock deadline enforced by epoch interruption (the epoch
//! callback also yields to tokio every tick, so a busy plugin never starves
//! the other jobs on its thread) and a per-store memory limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::job::{FailureClass, Outcome};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "job-plugin",
        exports: { default: async },
    });
}

use bindings::ward::plugin::{host, types as wit};
use bindings::{JobPlugin, JobPluginPre};

/// How often the epoch advances; also the granularity of deadlines and of
/// the cooperative yields of a busy plugin.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Linear memory a single instance may grow to (all memories together).
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;
/// Longest error message kept from a trap; backtraces can be long.
const MAX_TRAP_MESSAGE: usize = 2048;
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
        "plugin {path} does not fit the ward:plugin/job-plugin world ({reason:#}); it must export `handle` and import only what Ward provides (ward:plugin/host, wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem)"
    )]
    WrongWorld {
        /// The plugin file.
        path: PathBuf,
        /// What wasmtime said.
        reason: wasmtime::Error,
    },
}

/// The engine shared by every plugin, plus the epoch ticker that drives deadlines.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Creates the engine with a pooling allocator sized for `slots`
    /// concurrent instances, and starts the epoch ticker.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] if wasmtime rejects the configuration.
    pub fn new(slots: u32) -> Result<Runtime, RuntimeError> {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        let slots = slots.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // Rust and C components carry one or two core instances; interpreters
        // built with componentize-py/-js carry a handful. Leave room for both.
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(8))
            .total_memories(slots.saturating_mul(4))
            .total_tables(slots.saturating_mul(8))
            .total_stacks(slots)
            .max_memory_size(DEFAULT_MEMORY_LIMIT);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = match Engine::new(&cfg) {
            Ok(engine) => engine,
            Err(pool_err) => {
                // Some hosts cap virtual memory (ulimit -v); the on-demand
                // allocator still works there, only slower per instance.
                tracing::warn!(error = %format!("{pool_err:#}"), "pooling allocator unavailable; using on-demand allocation");
                cfg.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&cfg).map_err(RuntimeError::Engine)?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Engine)?;
        JobPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(RuntimeError::Engine)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.weak();
        // A plain thread, not a tokio task: it must keep ticking even when
        // every runtime worker is busy running wasm.
        std::thread::Builder::new()
            .name("ward-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(wasmtime::Error::from(e)))?;
        Ok(Runtime {
            engine,
            linker,
            ticker_stop,
        })
    }

    /// Compiles a plugin component once and checks it against the world.
    ///
    /// # Errors
    /// [`RuntimeError`] naming the file and what is wrong with it.
    pub fn load(&self, path: &Path) -> Result<Plugin, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let component = Component::from_binary(&self.engine, &bytes).map_err(|reason| {
            RuntimeError::NotAComponent {
                path: path.to_path_buf(),
                reason,
            }
        })?;
        let wrong_world = |reason| RuntimeError::WrongWorld {
            path: path.to_path_buf(),
            reason,
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = JobPluginPre::new(instance_pre).map_err(wrong_world)?;
        Ok(Plugin {
            path: path.to_path_buf(),
            digest,
            pre,
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled plugin, ready to be instantiated once per attempt.
pub struct Plugin {
    path: PathBuf,
    digest: String,
    pre: JobPluginPre<HostState>,
}

/// What a plugin sees of the job it runs.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// Job id.
    pub id: String,
    /// Job type.
    pub name: String,
    /// Payload bytes, as enqueued.
    pub payload: Vec<u8>,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Idempotency key, if the enqueuer gave one.
    pub idempotency_key: Option<String>,
    /// Checkpoint saved by the previous attempt.
    pub checkpoint: Option<Vec<u8>>,
}

/// Per-attempt limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock limit of the whole attempt, instantiation included.
    pub timeout: Duration,
    /// Linear memory limit.
    pub memory: usize,
}

/// The result of one attempt, with what the plugin left behind.
#[derive(Debug)]
pub struct Attempt {
    /// How it ended.
    pub outcome: Outcome,
    /// The last checkpoint the plugin saved during this attempt, if any.
    pub checkpoint: Option<Vec<u8>>,
    /// How long instantiating the plugin took (`None` if it did not finish).
    pub instantiate: Option<Duration>,
}

impl Plugin {
    /// The component file this plugin was loaded from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 of the component bytes, hex: the plugin's version identity.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Runs one attempt in a fresh instance. Never panics and never returns
    /// an error: every way an attempt can end is an [`Outcome`].
    pub async fn run(&self, input: JobInput, limits: Limits) -> Attempt {
        let deadline = Instant::now() + limits.timeout;
        let mut store = Store::new(
            self.pre.engine(),
            HostState::new(&input, limits.memory, deadline),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let job = wit::Job {
            id: input.id,
            name: input.name,
            payload: input.payload,
            attempt: input.attempt,
            idempotency_key: input.idempotency_key,
            checkpoint: input.checkpoint,
        };
        // The epoch only interrupts running wasm; a plugin parked in an async
        // host call (a sleep, a poll) is cut off by this outer timeout. The
        // small grace lets the epoch path report first when both apply.
        let mut instantiate = None;
        let call = async {
            let started = Instant::now();
            let instance = self.pre.instantiate_async(&mut store).await?;
            instantiate = Some(started.elapsed());
            instance.call_handle(&mut store, &job).await
        };
        let result = tokio::time::timeout(limits.timeout + EPOCH_TICK * 4, call).await;
        let state = store.data_mut();
        let outcome = match result {
            Err(_elapsed) => Outcome::failure(
                FailureClass::Timeout,
                format!("attempt ran past its {:?} deadline", limits.timeout),
            )
            .with_code("deadline"),
            Ok(Ok(Ok(output))) => Outcome::Success(output),
            Ok(Ok(Err(failure))) => Outcome::Failure(failure.into()),
            Ok(Err(err)) => classify_trap(&err, state, limits),
        };
        Attempt {
            outcome,
            checkpoint: state.checkpoint.take(),
            instantiate,
        }
    }
}

fn classify_trap(err: &wasmtime::Error, state: &HostState, limits: Limits) -> Outcome {
    let trap = err.downcast_ref::<Trap>().copied();
    if state.timed_out || trap == Some(Trap::Interrupt) {
        return Outcome::failure(
            FailureClass::Timeout,
            format!("attempt ran past its {:?} deadline", limits.timeout),
        )
        .with_code("deadline");
    }
    let mut message = format!("{err:#}");
    truncate(&mut message, MAX_TRAP_MESSAGE);
    let code = if state.limiter.hit {
        message = format!(
            "plugin exceeded its memory limit of {} MiB: {message}",
            limits.memory >> 20
        );
        "memory"
    } else {
        match trap {
            Some(Trap::StackOverflow) => "stack",
            Some(Trap::OutOfFuel) => "fuel",
            Some(Trap::UnreachableCodeReached) => "unreachable",
            Some(_) => "trap",
            None => "host-error",
        }
    };
    Outcome::failure(FailureClass::Crash, message).with_code(code)
}

/// Cuts `s` to at most `max` bytes on a char boundary, marking the cut.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("…[truncated]");
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

/// Memory limiter that remembers whether it refused a growth, so the trap
/// that follows can be reported as `memory` rather than a generic crash.
struct MemoryLimiter {
    max: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far past any real plugin.
        let ok = desired <= 1_000_000;
        self.hit |= !ok;
        Ok(ok)
    }
}

/// Per-attempt host state: the sandbox's WASI context and what the plugin
/// hands back through `ward:plugin/host`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    deadline: Instant,
    timed_out: bool,
    job_id: String,
    job_name: String,
    checkpoint: Option<Vec<u8>>,
}

impl HostState {
    fn new(input: &JobInput, memory: usize, deadline: Instant) -> HostState {
        // No preopens, no env, no args, no sockets: the sandbox starts with
        // nothing but clocks and randomness.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max: memory,
                hit: false,
            },
            deadline,
            timed_out: false,
            job_id: input.id.clone(),
            job_name: input.name.clone(),
            checkpoint: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let mut message = message;
        truncate(&mut message, 4096);
        let (id, job) = (&self.job_id, &self.job_name);
        match level {
            host::Level::Trace => {
                tracing::trace!(target: "ward::plugin", job_id = %id, job = %job, "{message}")
            }
            host::Level::Debug => {
                tracing::debug!(target: "ward::plugin", job_id = %id, job = %job, "{message}")
            }
            host::Level::Info => {
                tracing::info!(target: "ward::plugin", job_id = %id, job = %job, "{message}")
            }
            host::Level::Warn => {
                tracing::warn!(target: "ward::plugin", job_id = %id, job = %job, "{message}")
            }
            host::Level::Error => {
                tracing::error!(target: "ward::plugin", job_id = %id, job = %job, "{message}")
            }
        }
    }

    fn save_checkpoint(&mut self, data: Vec<u8>) {
        if data.len() > MAX_CHECKPOINT {
            tracing::warn!(job_id = %self.job_id, size = data.len(), max = MAX_CHECKPOINT, "checkpoint too large; ignored");
            return;
        }
        self.checkpoint = Some(data);
    }

    fn secret(&mut self, _name: String) -> Option<String> {
        // No job type can be granted secrets yet (there is no `secrets` key in
        // the config), so every name is "not granted".
        None
    }
}
