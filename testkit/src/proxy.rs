//! A TCP relay between the daemon and Redis that can lose one reply: the
//! way a connection that drops after Redis ran a command looks to the
//! daemon (the command took effect; its answer never came).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Relays 127.0.0.1:[`ReplyCutter::port`] to a Redis. Once
/// [armed](ReplyCutter::arm), the first chunk Redis sends that holds
/// `marker` at least `times` times (a reply carrying that many entries
/// whose payload has it) is not passed on: that connection is closed both
/// ways instead. Its threads end with the connections and the listener
/// with the value.
pub struct ReplyCutter {
    /// The port the daemon connects to.
    pub port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ReplyCutter {
    /// Relays to the Redis on 127.0.0.1:`redis_port`.
    pub fn start(redis_port: u16, marker: &'static [u8], times: usize) -> ReplyCutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, c, s) = (armed.clone(), cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) {
                            let cut = Cut {
                                armed: a.clone(),
                                cuts: c.clone(),
                                marker,
                                times,
                            };
                            relay(client, server, cut);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ReplyCutter {
            port,
            armed,
            cuts,
            stop,
        }
    }

    /// The URL to give the daemon.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the next reply with the marker enough times in it.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// How many replies were lost so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for ReplyCutter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Which reply a connection loses.
struct Cut {
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    marker: &'static [u8],
    times: usize,
}

impl Cut {
    /// Whether `chunk` is the one to lose (disarming the cutter if so).
    fn takes(&self, chunk: &[u8]) -> bool {
        let found = chunk
            .windows(self.marker.len())
            .filter(|w| *w == self.marker)
            .count();
        if found >= self.times && self.armed.swap(false, Ordering::SeqCst) {
            self.cuts.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        false
    }
}

/// Copies `client` to `server` as it is, and `server` to `client` but for
/// the one reply an armed cutter loses.
fn relay(client: TcpStream, server: TcpStream, cut: Cut) {
    let (Ok(mut up_client), Ok(mut up_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_client, &mut up_server);
        let _ = up_server.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let (mut client, mut server) = (client, server);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cut.takes(&buf[..n]) {
                break;
            }
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
}
