//! The local upstream of the `http` and `inflight` scenarios: either of the
//! test kit's receivers, counting the same things.

use std::time::Duration;

use ward_testkit::{HttpsStub, UpstreamStub};

/// Which receiver serves plain HTTP/1.1 keep-alive (`--http-receiver`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Kind {
    /// One tokio thread for every connection.
    Tokio,
    /// A thread per connection.
    Threads,
}

/// A receiver of webhook requests on 127.0.0.1.
pub(super) enum Receiver {
    /// HTTP/1.1 keep-alive, a thread per connection.
    Threads(UpstreamStub),
    /// One tokio thread for every connection: plain HTTP, or HTTPS with
    /// HTTP/2 offered by ALPN.
    Tokio(HttpsStub),
}

impl Receiver {
    /// A plain HTTP keep-alive receiver of `kind` answering after `hold`.
    pub(super) fn keep_alive(kind: Kind, hold: Duration) -> Receiver {
        match kind {
            Kind::Tokio => Receiver::Tokio(HttpsStub::plain(hold)),
            Kind::Threads => Receiver::Threads(UpstreamStub::keep_alive(hold)),
        }
    }

    /// How it serves, for the report.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Receiver::Threads(_) => "a thread per connection",
            Receiver::Tokio(_) => "one tokio thread",
        }
    }

    pub(super) fn port(&self) -> u16 {
        match self {
            Receiver::Threads(s) => s.port,
            Receiver::Tokio(s) => s.port,
        }
    }

    /// The most requests it held open at once.
    pub(super) fn max_open(&self) -> usize {
        match self {
            Receiver::Threads(s) => s.max_open(),
            Receiver::Tokio(s) => s.max_open(),
        }
    }

    /// The requests it answered (the thread receiver: received).
    pub(super) fn requests(&self) -> usize {
        match self {
            Receiver::Threads(s) => s.requests(),
            Receiver::Tokio(s) => s.versions().len(),
        }
    }

    /// The TCP connections it accepted.
    pub(super) fn connections(&self) -> usize {
        match self {
            Receiver::Threads(s) => s.connections(),
            Receiver::Tokio(s) => s.connections(),
        }
    }
}
