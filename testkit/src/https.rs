//! An HTTPS receiver on 127.0.0.1 with a certificate of a private CA,
//! speaking HTTP/1.1 and HTTP/2 (chosen by ALPN), standing in for an
//! internal upstream that plugins reach with `http.ca_file`.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;

/// The HTTP/2 streams a connection may carry at once, unless limited: far
/// more than any test or benchmark sends (hyper's default, 200, would cap
/// the client under test).
const MAX_STREAMS: u32 = 1_000_000;
/// Connections the kernel may queue for `accept` (Linux caps it at
/// `net.core.somaxconn`, 4096 by default).
pub(crate) const BACKLOG: u32 = 4096;

/// An HTTPS server answering every request `200` with body `ok` (after a
/// hold, for [`HttpsStub::holding`]), counting the connections it accepted
/// and the requests it held open at once, and recording each request's
/// HTTP version.
/// Its certificate (for `127.0.0.1`) chains to a CA made for it,
/// [`HttpsStub::ca_file`]. Runs until dropped.
pub struct HttpsStub {
    /// The port it listens on.
    pub port: u16,
    /// The PEM file of the CA its certificate chains to.
    pub ca_file: PathBuf,
    connections: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
    versions: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    /// Holds the CA and the certificate (none over plain TCP).
    _dir: Option<tempfile::TempDir>,
}

impl HttpsStub {
    /// Makes a CA and a certificate for `127.0.0.1` (with `openssl`), and
    /// starts serving.
    pub fn start() -> HttpsStub {
        Self::holding(Duration::ZERO)
    }

    /// Like [`HttpsStub::start`], answering each request after `hold`, with
    /// no practical limit on HTTP/2 streams per connection.
    pub fn holding(hold: Duration) -> HttpsStub {
        Self::serve(hold, MAX_STREAMS, Wire::Tls { h2: true })
    }

    /// Like [`HttpsStub::holding`], allowing a client at most `max_streams`
    /// HTTP/2 streams at once on one connection, as real servers do (100 to
    /// 250 is common).
    pub fn limited(hold: Duration, max_streams: u32) -> HttpsStub {
        Self::serve(hold, max_streams, Wire::Tls { h2: true })
    }

    /// Like [`HttpsStub::start`], offering HTTP/1.1 only by ALPN, as a server
    /// without HTTP/2 does.
    pub fn http1_only() -> HttpsStub {
        Self::serve(Duration::ZERO, MAX_STREAMS, Wire::Tls { h2: false })
    }

    /// The same server over plain TCP, without TLS (HTTP/1.1, or HTTP/2
    /// with prior knowledge), answering each request after `hold`: every
    /// connection on one tokio thread, so a benchmark's receiver costs the
    /// machine far less CPU than [`crate::UpstreamStub`]'s thread per
    /// connection. It has no CA: its `ca_file` is empty.
    pub fn plain(hold: Duration) -> HttpsStub {
        Self::serve(hold, MAX_STREAMS, Wire::Plain)
    }

    fn serve(hold: Duration, max_streams: u32, wire: Wire) -> HttpsStub {
        let (dir, acceptor) = match wire {
            Wire::Plain => (None, None),
            Wire::Tls { h2 } => {
                let dir = tempfile::tempdir().unwrap();
                let acceptor = acceptor(dir.path(), h2);
                (Some(dir), Some(acceptor))
            }
        };
        let counts = Counts::default();
        let (stop, stopped) = oneshot::channel();
        let (listening, port) = std::sync::mpsc::channel();
        let shared = counts.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // A server's backlog, not std's 128: a benchmark opening a
                // thousand connections at once would otherwise see some
                // dropped and retried by the kernel, which no real server
                // would cause.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
                let listener = socket.listen(BACKLOG).unwrap();
                let _ = listening.send(listener.local_addr().unwrap().port());
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        shared.connections.fetch_add(1, Ordering::SeqCst);
                        let (acceptor, counts) = (acceptor.clone(), shared.clone());
                        tokio::spawn(async move {
                            match acceptor {
                                None => {
                                    connection(TokioIo::new(tcp), hold, max_streams, counts).await
                                }
                                Some(acceptor) => {
                                    let Ok(stream) = acceptor.accept(tcp).await else {
                                        return;
                                    };
                                    connection(TokioIo::new(stream), hold, max_streams, counts)
                                        .await;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        let port = port.recv().unwrap();
        HttpsStub {
            port,
            ca_file: dir
                .as_ref()
                .map_or_else(PathBuf::new, |d| d.path().join("ca.pem")),
            connections: counts.connections,
            max_open: counts.max_open,
            versions: counts.versions,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// How many TCP connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The most requests it held open at once.
    pub fn max_open(&self) -> usize {
        self.max_open.load(Ordering::SeqCst)
    }

    /// The HTTP version of each request answered (`HTTP/1.1`, `HTTP/2.0`).
    pub fn versions(&self) -> Vec<String> {
        self.versions.lock().unwrap().clone()
    }
}

impl Drop for HttpsStub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// How a stub speaks to its clients.
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// Plain TCP.
    Plain,
    /// TLS with a certificate of its own CA, offering `h2` by ALPN or not.
    Tls { h2: bool },
}

/// What a stub counts, shared by its connections.
#[derive(Clone, Default)]
struct Counts {
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
    versions: Arc<Mutex<Vec<String>>>,
}

/// Makes a CA and a certificate for `127.0.0.1` in `dir` (with `openssl`),
/// and a TLS acceptor serving it.
fn acceptor(dir: &std::path::Path, h2: bool) -> tokio_rustls::TlsAcceptor {
    crate::server::tls_args(dir);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tls.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(tls))
}

/// Serves one connection until the client closes it: every request
/// answered `200 ok` after `hold`.
async fn connection<I>(io: I, hold: Duration, max_streams: u32, counts: Counts)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let counts = counts.clone();
        async move {
            let version = format!("{:?}", req.version());
            let _ = req.into_body().collect().await;
            let held = Held::new(&counts.open);
            counts.max_open.fetch_max(held.now, Ordering::SeqCst);
            tokio::time::sleep(hold).await;
            drop(held);
            counts.versions.lock().unwrap().push(version);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    server.http2().max_concurrent_streams(max_streams);
    let _ = server.serve_connection(io, service).await;
}

/// A request counted as held open until this drops: when it is answered,
/// or when the client gives up on it (a reset stream drops the handler).
struct Held<'a> {
    open: &'a AtomicUsize,
    /// How many were open with it.
    now: usize,
}

impl<'a> Held<'a> {
    fn new(open: &'a AtomicUsize) -> Held<'a> {
        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
        Held { open, now }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}
