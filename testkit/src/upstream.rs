//! An HTTP/1.1 receiver on 127.0.0.1 that stands in for a rate-limited
//! upstream: every connection on its own thread, each request answered
//! after a fixed time, with each arrival's time, the most requests it held
//! open at once and the connections it accepted recorded.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A receiver answering every request after `hold`: the first ones with
/// scripted `(status, extra header lines)`, then 200. Runs until dropped.
pub struct UpstreamStub {
    /// The port it listens on.
    pub port: u16,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    max_open: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// What each connection's thread shares.
#[derive(Clone)]
struct Shared {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
    script: Arc<Vec<(u16, String)>>,
    hold: Duration,
    /// Whether a connection stays open for the next request.
    keep_alive: bool,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl UpstreamStub {
    /// Answers after `hold`, with `script` first, then 200 for ever; each
    /// connection carries one request (`connection: close`).
    pub fn start(hold: Duration, script: Vec<(u16, String)>) -> UpstreamStub {
        Self::serve_with(hold, script, false)
    }

    /// Answers every request with 200 after `hold`, keeping connections
    /// open for more requests (HTTP/1.1 keep-alive), as most servers do.
    pub fn keep_alive(hold: Duration) -> UpstreamStub {
        Self::serve_with(hold, Vec::new(), true)
    }

    fn serve_with(hold: Duration, script: Vec<(u16, String)>, keep_alive: bool) -> UpstreamStub {
        let listener = listen_with_backlog();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            arrivals: Arc::default(),
            open: Arc::default(),
            max_open: Arc::default(),
            script: Arc::new(script),
            hold,
            keep_alive,
            connections: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let stop = shared.stop.clone();
        let (halt, s) = (stop.clone(), shared.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        let s = s.clone();
                        std::thread::spawn(move || s.serve(sock));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        UpstreamStub {
            port,
            arrivals: shared.arrivals,
            max_open: shared.max_open,
            connections: shared.connections,
            stop,
        }
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many requests it has received.
    pub fn requests(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }

    /// The most requests it held open at once.
    pub fn max_open(&self) -> usize {
        self.max_open.load(Ordering::SeqCst)
    }

    /// The most arrivals within any window of `window`.
    pub fn most_within(&self, window: Duration) -> usize {
        let a = self.arrivals();
        let mut best = 0;
        let mut start = 0;
        for end in 0..a.len() {
            while a[end].duration_since(a[start]) >= window {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best
    }
}

impl Shared {
    fn serve(&self, mut sock: TcpStream) {
        if !self.keep_alive {
            let _request = crate::http::read_request(&mut sock);
            self.answer(&mut sock, "connection: close\r\n");
            return;
        }
        // An idle connection waits for its next request until the stub
        // stops or the peer closes it.
        while !self.stop.load(Ordering::Relaxed) {
            let request = crate::http::read_request(&mut sock);
            if request.is_empty() {
                if matches!(sock.peek(&mut [0u8; 1]), Ok(0)) {
                    return;
                }
                continue;
            }
            if !self.answer(&mut sock, "") {
                return;
            }
        }
    }

    /// Records one request and answers it after the hold: whether the
    /// answer went out.
    fn answer(&self, sock: &mut TcpStream, connection: &str) -> bool {
        let n = {
            let mut a = self.arrivals.lock().unwrap();
            a.push(Instant::now());
            a.len() - 1
        };
        let now_open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_open.fetch_max(now_open, Ordering::SeqCst);
        std::thread::sleep(self.hold);
        let (status, headers) = self.script.get(n).cloned().unwrap_or((200, String::new()));
        let reply =
            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{connection}{headers}\r\n");
        self.open.fetch_sub(1, Ordering::SeqCst);
        sock.write_all(reply.as_bytes()).is_ok()
    }
}

impl Drop for UpstreamStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A listener on a free loopback port with a server's backlog, not std's
/// 128: thousands of attempts connecting at once would otherwise see
/// their connections dropped by the kernel and retried a second later,
/// which no real server causes.
fn listen_with_backlog() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into()).unwrap();
    socket
        .listen(i32::try_from(crate::https::BACKLOG).unwrap())
        .unwrap();
    socket.into()
}
