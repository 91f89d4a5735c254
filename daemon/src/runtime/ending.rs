//! How an attempt that did not return normally ends: cancelled, timed
//! out, or a trap classified by what the plugin hit (memory, stack, fuel,
//! unreachable), with secrets redacted from whatever it says.

use wasmtime::Trap;

use super::secrets::redact_bytes;
use super::{HostState, MAX_TRAP_MESSAGE, Sandbox};
use crate::cut::truncate;
use crate::job::{FailureClass, Outcome};

/// How an attempt an operator cancelled ends.
pub(super) fn cancelled() -> Outcome {
    Outcome::failure(
        FailureClass::Cancelled,
        "cancelled by an operator; the attempt was interrupted",
    )
    .with_code("cancelled")
}

/// Secrets never leave an attempt: not in its failure, which ends up in
/// logs, history, dead letters and alerts, nor in its result, which is
/// stored in the job record.
pub(super) fn redact_outcome(outcome: Outcome, sandbox: &Sandbox) -> Outcome {
    if sandbox.secrets.is_empty() {
        return outcome;
    }
    match outcome {
        Outcome::Success(result) => Outcome::Success(redact_bytes(result, &sandbox.secrets)),
        Outcome::Failure(mut f) => {
            f.message = sandbox.redact(&f.message);
            f.code = f.code.map(|c| sandbox.redact(&c));
            f.upstream = f.upstream.map(|u| sandbox.redact(&u));
            Outcome::Failure(f)
        }
    }
}

pub(super) fn classify_trap(
    err: &wasmtime::Error,
    state: &HostState,
    sandbox: &Sandbox,
) -> Outcome {
    let trap = err.downcast_ref::<Trap>().copied();
    if state.timed_out || trap == Some(Trap::Interrupt) {
        return Outcome::failure(
            FailureClass::Timeout,
            format!("attempt ran past its {:?} deadline", sandbox.timeout),
        )
        .with_code("deadline");
    }
    // Redacted before it is cut: a secret cut in two would match no more.
    let mut message = sandbox.redact(&format!("{err:#}"));
    truncate(&mut message, MAX_TRAP_MESSAGE);
    let code = if state.limiter.hit {
        message = format!(
            "plugin exceeded its memory limit of {} MiB: {message}",
            sandbox.memory >> 20
        );
        "memory"
    } else {
        match trap {
            Some(Trap::StackOverflow) => "stack",
            // Rust and C keep a shadow stack in linear memory; running off
            // its end faults on memory far from any data, deep in recursion.
            Some(Trap::MemoryOutOfBounds) if call_depth(err) >= DEEP_STACK => {
                message =
                    format!("plugin overflowed its stack ({DEEP_STACK}+ frames deep): {message}");
                "stack"
            }
            Some(Trap::OutOfFuel) => {
                message = format!(
                    "plugin used up its fuel ({}): {message}",
                    sandbox.fuel.unwrap_or(0)
                );
                "fuel"
            }
            Some(Trap::UnreachableCodeReached) => "unreachable",
            Some(_) => "trap",
            None if message.contains("maximum concurrent") => {
                // The instance pool was full: the daemon's capacity, not the
                // plugin's fault, so the attempt is worth retrying.
                return Outcome::failure(FailureClass::Transient, message).with_code("capacity");
            }
            None => "host-error",
        }
    };
    Outcome::failure(FailureClass::Crash, message).with_code(code)
}

/// A memory fault under this many frames of one function calling itself is
/// a stack overflow (wasmtime keeps 20 frames of a trap's backtrace).
const DEEP_STACK: usize = 16;

/// How many frames from the top of a trap's backtrace belong to the same
/// function: recursion shows as a long run.
fn call_depth(err: &wasmtime::Error) -> usize {
    let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return 0;
    };
    let frames = bt.frames();
    let Some(top) = frames.first() else {
        return 0;
    };
    frames
        .iter()
        .take_while(|f| f.func_index() == top.func_index())
        .count()
}
