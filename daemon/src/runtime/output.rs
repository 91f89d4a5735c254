//! A plugin's stdout and stderr: captured into a bounded buffer.
//!
//! A plugin that prints must not be able to fill the daemon's memory or log,
//! and must not fail either: Rust's `println!` panics when a write fails, so
//! past the cap the bytes are counted and dropped, and the write succeeds.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Shared, bounded capture of everything a plugin writes to one stream.
#[derive(Clone)]
pub struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CappedOutput {
    /// A capture keeping at most `cap` bytes.
    #[must_use]
    pub fn new(cap: usize) -> CappedOutput {
        CappedOutput {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        if let Ok(mut c) = self.inner.lock() {
            let room = c.cap.saturating_sub(c.bytes.len());
            let kept = room.min(data.len());
            c.bytes.extend_from_slice(&data[..kept]);
            c.dropped += data.len() - kept;
        }
    }

    /// What was kept, and how many bytes were dropped past the cap.
    #[must_use]
    pub fn take(&self) -> (Vec<u8>, usize) {
        match self.inner.lock() {
            Ok(mut c) => (std::mem::take(&mut c.bytes), std::mem::take(&mut c.dropped)),
            Err(_) => (Vec::new(), 0),
        }
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: writes past the cap are accepted and dropped.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_cap_is_counted_and_dropped() {
        let out = CappedOutput::new(5);
        out.push(b"hello, ");
        out.push(b"world");
        assert_eq!(out.take(), (b"hello".to_vec(), 7));
    }
}
