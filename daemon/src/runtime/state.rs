//! What an attempt's instance sees of the host: its WASI context (made on
//! first use), outbound HTTP hooks, the memory limiter, and the
//! `ward:plugin/host` imports (log, checkpoint, secret); the 0.2.0 ones are
//! in `children.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::ward::plugin::{host, types as wit};
use super::secrets::{redact, redact_cut};
use super::{MAX_CHECKPOINT, Outbound, Sandbox, http, output};
use crate::cut::truncate;
use crate::obs::logging::AttemptIdent;

/// Memory limiter that remembers whether it refused a growth, so the trap
/// that follows can be reported as `memory` rather than a generic crash.
pub(super) struct MemoryLimiter {
    max: usize,
    /// A growth was refused.
    pub(super) hit: bool,
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
///
/// Most plugins never touch WASI, HTTP or the log, and setting those up
/// (a seeded random generator, output captures, a span) costs more than
/// running a small plugin, so each is made on first use.
pub struct HostState {
    wasi: Option<Wasi>,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http_hooks: Option<http::Hooks>,
    http_outbound: Arc<Outbound>,
    /// The attempt span's `traceparent`, for the plugin's outbound requests.
    pub(crate) traceparent: Option<String>,
    pub(super) limiter: MemoryLimiter,
    pub(super) deadline: Instant,
    pub(super) timed_out: bool,
    pub(super) ident: AttemptIdent,
    span: Option<tracing::Span>,
    pub(super) checkpoint: Option<Vec<u8>>,
    pub(super) secrets: Arc<BTreeMap<String, String>>,
    output_limit: usize,
    /// What a 0.2.0 plugin hands back: children and progress.
    pub(super) fanout: super::children::Fanout,
}

/// The WASI context of an attempt and the captures of its output.
struct Wasi {
    ctx: WasiCtx,
    stdout: output::CappedOutput,
    stderr: output::CappedOutput,
}

impl HostState {
    pub(super) fn new(ident: AttemptIdent, sandbox: &Sandbox, deadline: Instant) -> HostState {
        HostState {
            wasi: None,
            table: ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            http_hooks: None,
            http_outbound: sandbox.http.clone(),
            traceparent: None,
            limiter: MemoryLimiter {
                max: sandbox.memory,
                hit: false,
            },
            deadline,
            timed_out: false,
            ident,
            span: None,
            checkpoint: None,
            secrets: sandbox.secrets.clone(),
            output_limit: sandbox.output_limit,
            fanout: super::children::Fanout::default(),
        }
    }

    /// Readies a kept instance's state for its next attempt: everything
    /// that belongs to one attempt (who it is, its deadline, its saved
    /// checkpoint, its HTTP hooks and span, the limiter's verdict) starts
    /// over; the WASI context and resource table stay, since the instance
    /// holds handles into them. The trace parent and the children and
    /// progress are set by `Plugin::run` for every attempt, fresh or kept.
    pub(super) fn renew(&mut self, ident: AttemptIdent, sandbox: &Sandbox, deadline: Instant) {
        self.http_hooks = None;
        self.http_outbound = sandbox.http.clone();
        self.limiter = MemoryLimiter {
            max: sandbox.memory,
            hit: false,
        };
        self.deadline = deadline;
        self.timed_out = false;
        self.ident = ident;
        self.span = None;
        self.checkpoint = None;
        self.secrets = sandbox.secrets.clone();
        self.output_limit = sandbox.output_limit;
    }

    /// Live entries of the resource table (streams, requests, responses).
    pub(super) fn resources(&mut self) -> usize {
        self.table.iter_mut().count()
    }

    /// Whether this attempt used outbound HTTP.
    pub(super) fn used_http(&self) -> bool {
        self.http_hooks.is_some()
    }

    /// The attempt's span, made the first time the attempt logs.
    pub(super) fn span(&mut self) -> tracing::Span {
        self.span.get_or_insert_with(|| self.ident.span()).clone()
    }

    /// Writes what the plugin printed to the daemon's log, tagged with the
    /// job id, bounded, secrets redacted.
    pub(super) fn log_output(&mut self, sandbox: &Sandbox) {
        let Some(wasi) = &self.wasi else { return };
        let captured = [
            ("stdout", wasi.stdout.take()),
            ("stderr", wasi.stderr.take()),
        ];
        for (stream, (bytes, dropped)) in captured {
            if bytes.is_empty() && dropped == 0 {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            let text = if dropped > 0 {
                redact_cut(&text, &sandbox.secrets)
            } else {
                sandbox.redact(&text)
            };
            let span = self.span();
            let _entered = span.enter();
            tracing::info!(
                target: "ward::plugin", job_id = %self.ident.job_id, job = %self.ident.job, stream,
                dropped_bytes = dropped, "{}", text.trim_end()
            );
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let limit = self.output_limit;
        let wasi = self.wasi.get_or_insert_with(|| {
            let stdout = output::CappedOutput::new(limit);
            let stderr = output::CappedOutput::new(limit);
            // No preopens, no env, no args, no sockets: the sandbox starts
            // with nothing but clocks, randomness and captured output.
            let ctx = WasiCtx::builder()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build();
            Wasi {
                ctx,
                stdout,
                stderr,
            }
        });
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: self.http_hooks.get_or_insert_with(|| {
                http::Hooks::new(
                    self.http_outbound.clone(),
                    self.ident.job_id.clone(),
                    self.traceparent.take(),
                )
            }),
        }
    }
}

impl wit::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        // A line the filter cannot pass costs nothing: no redaction, no span.
        let wanted = match level {
            host::Level::Trace => tracing::Level::TRACE,
            host::Level::Debug => tracing::Level::DEBUG,
            host::Level::Info => tracing::Level::INFO,
            host::Level::Warn => tracing::Level::WARN,
            host::Level::Error => tracing::Level::ERROR,
        };
        if !crate::obs::logging::plugin_line_enabled(wanted) {
            return;
        }
        let mut message = redact(&message, &self.secrets);
        truncate(&mut message, 4096);
        let span = self.span();
        let _entered = span.enter();
        let (id, job) = (&self.ident.job_id, &self.ident.job);
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
            let span = self.span();
            let _entered = span.enter();
            tracing::warn!(job_id = %self.ident.job_id, size = data.len(), max = MAX_CHECKPOINT, "checkpoint too large; ignored");
            return;
        }
        self.checkpoint = Some(data);
    }

    fn secret(&mut self, name: String) -> Option<String> {
        // Only names granted to this job type in its `secrets` list exist here.
        self.secrets.get(&name).cloned()
    }
}
