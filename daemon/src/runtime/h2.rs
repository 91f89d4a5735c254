//! HTTP/2 connections of a job type with `http.http2`: as many per upstream
//! as its attempts need.
//!
//! hyper-util's pooled client keeps one HTTP/2 connection per upstream, and
//! a server caps the streams one connection may carry
//! (`SETTINGS_MAX_CONCURRENT_STREAMS`: 100 to 250 in common servers). The
//! requests above the cap wait in the client, so a job type of concurrency
//! 1,000 would have a fifth of its attempts at the upstream at once and the
//! rest spending their timeout in a queue. Here a job type opens another
//! connection to an upstream when each one it has carries as many streams
//! as that server allows, a number read from the server's own SETTINGS.
//!
//! An upstream that answers ALPN with HTTP/1.1 is remembered as such for
//! [`HTTP1_RECHECK`], and its requests go to the HTTP/1.1 pool (the
//! caller's); the next connection after that asks for `h2` again, so an
//! upstream upgraded meanwhile is used over HTTP/2 without a reload.
//!
//! A request's body goes out in as few DATA frames as it arrives in, the
//! last one ending the stream: a plugin writes its body in small pieces
//! and then closes it, and sent one frame per piece plus an empty closing
//! one, thousands of requests on one connection exhaust the budget of
//! small frames h2-based servers allow a connection (hyper answers with
//! `GOAWAY` `ENHANCE_YOUR_CALM` `too_many_data_frames`, failing every
//! request on it).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;
use wasmtime_wasi_http::{Error, WasiBody};

/// How often a request the connection handed back unsent is tried on
/// another (a server's `GOAWAY` or a closed connection can race a send).
const SEND_TRIES: usize = 3;

/// How long an upstream that answered ALPN with HTTP/1.1 is taken to speak
/// only that before a new connection offers `h2` again.
pub(super) const HTTP1_RECHECK: Duration = Duration::from_secs(600);

/// The HTTP/2 connections of one job type, by upstream.
pub(super) struct Connections {
    connector: hyper_rustls::HttpsConnector<HttpConnector>,
    upstreams: Arc<Upstreams>,
    /// Whether the task closing idle connections runs (it starts with the
    /// first connection: the pool is made before the runtime is).
    sweeping: AtomicBool,
}

/// Every upstream's connections, and how long an unused one is kept.
struct Upstreams {
    by_authority: Mutex<HashMap<String, Arc<Upstream>>>,
    idle_timeout: Duration,
    max_idle: usize,
}

/// One upstream's connections.
#[derive(Default)]
struct Upstream {
    open: Mutex<Vec<Arc<Conn>>>,
    /// Held while a connection is opened, so that attempts that find every
    /// connection full open one at a time and look again after each.
    opening: tokio::sync::Mutex<()>,
    /// When it answered ALPN with HTTP/1.1, if it did within
    /// [`HTTP1_RECHECK`].
    http1_since: Mutex<Option<Instant>>,
}

impl Upstream {
    /// Whether it is taken to speak HTTP/1.1 only at `now`: it said so
    /// within [`HTTP1_RECHECK`]. Past that it is forgotten, and the next
    /// connection asks for `h2` again.
    fn speaks_http1(&self, now: Instant) -> bool {
        let mut since = lock(&self.http1_since);
        match *since {
            Some(at) if now.saturating_duration_since(at) < HTTP1_RECHECK => true,
            Some(_) => {
                *since = None;
                false
            }
            None => false,
        }
    }
}

/// One connection and the streams it carries.
struct Conn {
    send: http2::SendRequest<WasiBody>,
    streams: AtomicUsize,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, as last seen.
    limit: Arc<AtomicUsize>,
    /// When its last stream ended.
    idle_since: Mutex<Instant>,
}

/// An attempt's stream on a connection, counted there until the response is
/// read to its end or dropped.
pub(super) struct Stream(Arc<Conn>);

impl Drop for Stream {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.0.idle_since) = Instant::now();
        }
    }
}

/// What became of a request.
pub(super) enum Sent {
    /// Its response, over HTTP/2.
    Response(http::Response<Incoming>, Stream),
    /// The upstream speaks HTTP/1.1 only: the request, unsent.
    Http1(http::Request<WasiBody>),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    /// Connections made by `connector`, which must offer `h2` by ALPN; an
    /// unused one is closed after `idle_timeout`, and no more than
    /// `max_idle` unused ones are kept per upstream.
    pub(super) fn new(
        connector: hyper_rustls::HttpsConnector<HttpConnector>,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Connections {
        Connections {
            connector,
            upstreams: Arc::new(Upstreams {
                by_authority: Mutex::new(HashMap::new()),
                idle_timeout,
                max_idle,
            }),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends `request` on a connection to its upstream with a stream free,
    /// opening one if none has.
    pub(super) async fn send(&self, request: http::Request<WasiBody>) -> Result<Sent, Error> {
        let uri = request.uri().clone();
        let upstream = self.upstream(&uri);
        let mut request = request.map(|body| {
            Coalesced {
                inner: body,
                ended: false,
                trailers: None,
            }
            .boxed_unsync()
        });
        let mut last = None;
        for _ in 0..SEND_TRIES {
            if upstream.speaks_http1(Instant::now()) {
                return Ok(Sent::Http1(request));
            }
            let stream = match self.claim(&upstream) {
                Some(stream) => stream,
                None => match self.open(&upstream, &uri).await? {
                    Some(stream) => stream,
                    None => return Ok(Sent::Http1(request)),
                },
            };
            let mut send = stream.0.send.clone();
            match send.try_send_request(request).await {
                Ok(response) => return Ok(Sent::Response(response, stream)),
                Err(mut unsent) => match unsent.take_message() {
                    Some(back) => {
                        request = back;
                        last = Some(unsent.into_error());
                    }
                    None => return Err(super::pool::hyper_error(&unsent.into_error())),
                },
            }
        }
        Err(last.map_or(Error::ConnectionTerminated, |e| {
            super::pool::hyper_error(&e)
        }))
    }

    fn upstream(&self, uri: &http::Uri) -> Arc<Upstream> {
        let key = uri.authority().map_or("", |a| a.as_str());
        let mut upstreams = lock(&self.upstreams.by_authority);
        if let Some(u) = upstreams.get(key) {
            return u.clone();
        }
        let u = Arc::new(Upstream::default());
        upstreams.insert(key.to_string(), u.clone());
        u
    }

    /// A stream on the first open connection with one free, after dropping
    /// the connections [`Upstreams::prune`] drops.
    fn claim(&self, upstream: &Upstream) -> Option<Stream> {
        let mut open = lock(&upstream.open);
        self.upstreams.prune(&mut open);
        let free = open
            .iter()
            .find(|c| c.streams.load(Ordering::Acquire) < c.limit.load(Ordering::Acquire))?;
        free.streams.fetch_add(1, Ordering::AcqRel);
        Some(Stream(free.clone()))
    }

    /// Opens a connection to `uri`'s upstream unless another attempt's
    /// opening freed a stream meanwhile; `None` when the upstream speaks
    /// HTTP/1.1 only.
    async fn open(&self, upstream: &Upstream, uri: &http::Uri) -> Result<Option<Stream>, Error> {
        let _one_at_a_time = upstream.opening.lock().await;
        if let Some(stream) = self.claim(upstream) {
            return Ok(Some(stream));
        }
        if upstream.speaks_http1(Instant::now()) {
            return Ok(None);
        }
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(|e| super::pool::connect_error(&*e))?;
        if !io.connected().is_negotiated_h2() {
            *lock(&upstream.http1_since) = Some(Instant::now());
            return Ok(None);
        }
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| super::pool::hyper_error(&e))?;
        let limit = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let seen = limit.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            // The server's limit arrives in a SETTINGS frame the connection
            // reads, and may change while it lives.
            let _ = std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                seen.store(conn.current_max_send_streams(), Ordering::Release);
                polled
            })
            .await;
        });
        let conn = Arc::new(Conn {
            send,
            streams: AtomicUsize::new(1),
            limit,
            idle_since: Mutex::new(Instant::now()),
        });
        lock(&upstream.open).push(conn.clone());
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(&self.upstreams)));
        }
        Ok(Some(Stream(conn)))
    }
}

impl Upstreams {
    /// Drops the connections that closed, idled `idle_timeout`, or are
    /// idle beyond `max_idle` (dropping the last handle closes one).
    fn prune(&self, open: &mut Vec<Arc<Conn>>) {
        let now = Instant::now();
        let mut idle = 0;
        open.retain(|c| {
            if c.send.is_closed() {
                return false;
            }
            if c.streams.load(Ordering::Acquire) > 0 {
                return true;
            }
            idle += 1;
            idle <= self.max_idle && now.duration_since(*lock(&c.idle_since)) < self.idle_timeout
        });
    }
}

/// Closes idle connections of upstreams no attempt calls any more, until
/// the job type's pool is dropped (a reload makes a new one).
async fn sweep(upstreams: Weak<Upstreams>) {
    let mut period = Duration::from_secs(1);
    loop {
        tokio::time::sleep(period).await;
        let Some(upstreams) = upstreams.upgrade() else {
            return;
        };
        period =
            (upstreams.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let all: Vec<Arc<Upstream>> = lock(&upstreams.by_authority).values().cloned().collect();
        for upstream in all {
            upstreams.prune(&mut lock(&upstream.open));
        }
    }
}

/// A request body that hands on, at each poll, everything its plugin has
/// written so far as one frame, and says it ended as soon as the plugin
/// closed it, so the frame that carries the last bytes ends the stream.
struct Coalesced {
    inner: WasiBody,
    ended: bool,
    trailers: Option<http::HeaderMap>,
}

impl Body for Coalesced {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut first: Option<Bytes> = None;
        let mut more: Option<BytesMut> = None;
        while !self.ended && self.trailers.is_none() {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match (&first, &mut more) {
                        (None, _) => first = Some(data),
                        (Some(f), None) => {
                            let mut joined = BytesMut::from(&f[..]);
                            joined.extend_from_slice(&data);
                            more = Some(joined);
                        }
                        (Some(_), Some(joined)) => joined.extend_from_slice(&data),
                    },
                    Err(frame) => self.trailers = frame.into_trailers().ok(),
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => break,
            }
        }
        if let Some(joined) = more {
            return Poll::Ready(Some(Ok(Frame::data(joined.freeze()))));
        }
        if let Some(data) = first {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = self.trailers.take() {
            self.ended = true;
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if self.ended {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }

    fn is_end_stream(&self) -> bool {
        (self.ended && self.trailers.is_none()) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn an_http1_only_upstream_is_asked_for_h2_again_after_the_recheck() {
        let upstream = Upstream::default();
        let t0 = Instant::now();
        assert!(!upstream.speaks_http1(t0), "not known yet");
        *lock(&upstream.http1_since) = Some(t0);
        assert!(upstream.speaks_http1(t0));
        assert!(upstream.speaks_http1(t0 + HTTP1_RECHECK - Duration::from_secs(1)));
        assert!(
            !upstream.speaks_http1(t0 + HTTP1_RECHECK),
            "forgotten: the next connection offers h2"
        );
        assert!(
            lock(&upstream.http1_since).is_none(),
            "and stays forgotten until a connection says HTTP/1.1 again"
        );
        assert!(!upstream.speaks_http1(t0));
    }

    /// A plugin's body as the host hands it on: the frames written so far,
    /// then either "nothing yet" or the end.
    struct Written {
        frames: VecDeque<Frame<Bytes>>,
        closed: bool,
    }

    impl Body for Written {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
            match self.frames.pop_front() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None if self.closed => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    fn coalesced(frames: Vec<Frame<Bytes>>, closed: bool) -> Coalesced {
        Coalesced {
            inner: Written {
                frames: frames.into(),
                closed,
            }
            .boxed_unsync(),
            ended: false,
            trailers: None,
        }
    }

    fn poll(body: &mut Coalesced) -> Poll<Option<Frame<Bytes>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(body)
            .poll_frame(&mut cx)
            .map(|f| f.map(|f| f.unwrap_or_else(|e| panic!("{e}"))))
    }

    fn data(s: &'static str) -> Frame<Bytes> {
        Frame::data(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn a_closed_body_goes_out_as_one_frame_that_ends_the_stream() {
        let mut body = coalesced(vec![data("{\"a\""), data(":"), data("1}")], true);
        let Poll::Ready(Some(frame)) = poll(&mut body) else {
            panic!("no frame");
        };
        assert_eq!(
            frame.into_data().ok(),
            Some(Bytes::from_static(b"{\"a\":1}"))
        );
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn a_body_still_being_written_sends_what_it_has_and_waits_for_the_rest() {
        let mut body = coalesced(vec![data("ab"), data("c")], false);
        let Poll::Ready(Some(frame)) = poll(&mut body) else {
            panic!("no frame");
        };
        assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"abc")));
        assert!(!body.is_end_stream());
        assert!(poll(&mut body).is_pending());
    }

    #[test]
    fn trailers_follow_the_data_and_end_the_stream() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("3"));
        let mut body = coalesced(vec![data("a"), Frame::trailers(trailers)], true);
        let Poll::Ready(Some(frame)) = poll(&mut body) else {
            panic!("no frame");
        };
        assert!(frame.is_data());
        assert!(!body.is_end_stream(), "the trailers are still to come");
        let Poll::Ready(Some(frame)) = poll(&mut body) else {
            panic!("no trailers");
        };
        assert_eq!(
            frame
                .into_trailers()
                .ok()
                .and_then(|t| t.get("x-sum").cloned()),
            Some(http::HeaderValue::from_static("3"))
        );
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }
}
