//! A TCP proxy between the server and a real Postgres that a test can turn
//! into a black hole: connections stop being forwarded, silently, without
//! being closed, as when a network path dies without a reset.
//!
//! A connection frozen by the black hole stays frozen (its sockets held
//! open, nothing read or written) until the proxy is dropped; connections
//! accepted while the proxy is black-holed are held the same way, never
//! answered. After [`Proxy::heal`] new connections are forwarded again.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Shared {
    black_hole: AtomicBool,
    stopped: AtomicBool,
    /// Connections accepted so far.
    accepted: AtomicUsize,
}

/// The proxy; stops (closing every held socket) on drop.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free port, forwarding to `upstream_host:upstream_port`
    /// (or, with `black_hole`, accepting and never answering).
    pub fn start(upstream_host: &str, upstream_port: &str, black_hole: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            black_hole: AtomicBool::new(black_hole),
            stopped: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
        });
        let upstream = format!("{upstream_host}:{upstream_port}");
        let sh = shared.clone();
        std::thread::spawn(move || {
            while !sh.stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        sh.accepted.fetch_add(1, Ordering::SeqCst);
                        client.set_nonblocking(false).unwrap();
                        let sh = sh.clone();
                        let upstream = upstream.clone();
                        std::thread::spawn(move || serve(client, &upstream, &sh));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("proxy accept: {e}"),
                }
            }
        });
        Proxy { port, shared }
    }

    /// Freezes every connection and holds new ones unanswered.
    /// Environment for a server streaming `db` (slot `slot_suffix`)
    /// through this proxy, with `timeout_ms` as its database deadline and
    /// TLS off (the proxy only forwards bytes; TLS would hide nothing here).
    pub fn server_env(
        &self,
        db: &super::pg::DevDb,
        slot_suffix: &str,
        timeout_ms: u64,
    ) -> Vec<(String, String)> {
        let mut env = db.server_env(slot_suffix);
        for (k, v) in env.iter_mut() {
            match k.as_str() {
                "DB_HOST" => *v = "127.0.0.1".into(),
                "DB_PORT" => *v = self.port.to_string(),
                _ => {}
            }
        }
        env.push(("DB_QUERY_TIMEOUT_MS".into(), timeout_ms.to_string()));
        env.push(("DB_SSL_MODE".into(), "disable".into()));
        env
    }

    pub fn black_hole(&self) {
        self.shared.black_hole.store(true, Ordering::SeqCst);
    }

    /// Forwards connections accepted from now on (frozen ones stay frozen).
    pub fn heal(&self) {
        self.shared.black_hole.store(false, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
    }
}

/// Holds sockets, doing nothing, until the proxy stops.
fn hold(sh: &Shared, sockets: &[&TcpStream]) {
    while !sh.stopped.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn serve(client: TcpStream, upstream: &str, sh: &Arc<Shared>) {
    if sh.black_hole.load(Ordering::SeqCst) {
        return hold(sh, &[&client]);
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    // Each direction polls the black-hole flag between short reads; the
    // first to see it freezes the pair (bytes read at that moment are
    // dropped, as a dead path drops them).
    let frozen = Arc::new(AtomicBool::new(false));
    let pump = |from: TcpStream, to: TcpStream, frozen: Arc<AtomicBool>, sh: Arc<Shared>| {
        std::thread::spawn(move || {
            let mut from = from;
            let mut to = to;
            from.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let mut buf = [0u8; 16 * 1024];
            loop {
                if sh.stopped.load(Ordering::SeqCst) {
                    return;
                }
                if frozen.load(Ordering::SeqCst) || sh.black_hole.load(Ordering::SeqCst) {
                    frozen.store(true, Ordering::SeqCst);
                    return hold(&sh, &[&from, &to]);
                }
                match from.read(&mut buf) {
                    Ok(0) => {
                        let _ = to.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => {
                        if sh.black_hole.load(Ordering::SeqCst) {
                            continue;
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    }
                    Err(_) => {
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
        })
    };
    let a = pump(
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        frozen.clone(),
        sh.clone(),
    );
    let b = pump(server, client, frozen, sh.clone());
    let _ = a.join();
    let _ = b.join();
}
