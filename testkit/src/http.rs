//! A tiny scripted HTTP/1.1 server on 127.0.0.1, standing in for the
//! receivers plugins and alert webhooks call.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tiny HTTP/1.1 server on 127.0.0.1 for plugins to call: answers every
/// request with the next of `responses` (the last one repeats) and records
/// each request's head and body. Runs until dropped.
pub struct HttpStub {
    /// The port it listens on.
    pub port: u16,
    /// Each request as received: head and body.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

/// One request as the stub received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request line, e.g. `POST /hook HTTP/1.1`.
    pub line: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: String,
}

impl HttpStub {
    /// `responses` are (status, extra header lines, body).
    pub fn start(responses: Vec<(u16, String, String)>) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut sock, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let buf = read_request(&mut sock);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let (status, headers, body) = responses[n.min(responses.len() - 1)].clone();
                n += 1;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes());
            }
        });
        HttpStub {
            port,
            requests,
            stop,
        }
    }

    /// A stub answering with `statuses` in turn, then 200 for ever, each
    /// with an empty body.
    pub fn statuses(statuses: &[u16]) -> HttpStub {
        let script = statuses.iter().chain([&200]);
        Self::start(script.map(|&s| (s, String::new(), String::new())).collect())
    }

    /// The requests received so far, raw.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests received so far, parsed.
    pub fn received(&self) -> Vec<Request> {
        self.requests().iter().map(|r| Request::parse(r)).collect()
    }
}

/// Reads one request from `sock`: the head, then as much body as its
/// Content-Length says, or what came before the peer stopped. Empty when
/// nothing arrived within 5 s, so a keep-alive loop can look up; once a
/// request has begun it waits up to a minute for the rest, because on a
/// busy machine a body can follow its head seconds later, and returning
/// the head alone would count the one request twice.
pub(crate) fn read_request(sock: &mut TcpStream) -> Vec<u8> {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let begun_by = Instant::now() + Duration::from_secs(60);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let k = match sock.read(&mut chunk) {
            Ok(k) => k,
            Err(e) if !buf.is_empty() && is_timeout(&e) && Instant::now() < begun_by => {
                continue;
            }
            Err(_) => break,
        };
        if k == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..k]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    buf
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

impl Request {
    /// Splits a raw request into line, headers and body.
    pub fn parse(raw: &str) -> Request {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Request {
            line,
            headers,
            body: body.to_string(),
        }
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
