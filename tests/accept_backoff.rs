//! At the descriptor limit the listener backs off instead of spinning:
//! failures are logged once per interval with a count and exposed as
//! `realtime_accept_failures_total`, sockets already open keep working, and
//! clients get in again once descriptors free up.

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// The server binary with stderr captured line by line.
struct Proc {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(env: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realtime"));
    cmd.env_clear()
        .env("PORT", port.to_string())
        .env("API_JWT_SECRET", SECRET)
        .env("CONNECT_ERROR_BACKOFF_MS", "0")
        .env("CHANNEL_ERROR_BACKOFF_MS", "0")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn realtime");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            eprintln!("{line}");
            sink.lock().unwrap().push(line);
        }
    });
    let p = Proc { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let mut c = KeepAlive::new(&mut s);
            if c.get("/healthcheck").0 == 200 {
                return p;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not become healthy on port {port}");
}

/// HTTP/1.1 requests on one kept-alive connection.
struct KeepAlive<'a> {
    s: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl<'a> KeepAlive<'a> {
    fn new(s: &'a mut TcpStream) -> Self {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self { s, buf: Vec::new() }
    }

    /// GET `path`; returns (status, body).
    fn get(&mut self, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
        if self.s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut tmp = [0u8; 8192];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into();
                    self.buf.drain(..end + 4 + len);
                    return (head[9..12].parse().unwrap_or(0), body);
                }
            }
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return (0, String::new()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// One Prometheus series summed over shards.
    fn metric(&mut self, name: &str) -> i64 {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "metrics over the kept-alive connection");
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum()
    }
}

fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

fn set_nofile(pid: u32, n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: plain syscall on our own child; `lim` outlives it.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn out_of_descriptors_backs_off_logs_once_and_recovers() {
    // One shard, and a long head deadline so the kept-alive connection and
    // the flood outlive the test's waits.
    let srv = spawn(&[("SHARDS", "1"), ("REQUEST_HEAD_TIMEOUT_MS", "60000")]);
    let pid = srv.child.id();

    let mut ws = Ws::connect(srv.port, "2.0.0", &token("anon", 3600));
    ws.join_v2("1", "realtime:room", json!({}));
    let mut admin_sock = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let mut admin = KeepAlive::new(&mut admin_sock);
    assert_eq!(admin.metric("realtime_accept_failures_total"), 0);

    // A few descriptors of headroom, then more clients than that.
    set_nofile(pid, open_descriptors(pid) + 3);
    let flood: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", srv.port)).unwrap())
        .collect();

    // Accept keeps failing while the table is full; wait for several
    // failures (the pauses double from 5 ms: eight take about 0.6 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    let failures = loop {
        let n = admin.metric("realtime_accept_failures_total");
        if n >= 8 {
            break n;
        }
        assert!(Instant::now() < deadline, "accept never failed ({n})");
        std::thread::sleep(Duration::from_millis(50));
    };
    let warnings = || {
        srv.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("accept failed"))
            .count()
    };
    assert_eq!(warnings(), 1, "{failures} failures, one warning");

    // The open WebSocket is still served.
    ws.text(r#"["1","9","phoenix","heartbeat",{}]"#);
    let reply = ws.recv_json();
    assert_eq!(reply[1], "9", "{reply}");
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // Descriptors free up: a new client gets in.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.write_all(b"GET /healthcheck HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if out.starts_with(b"HTTP/1.1 200 OK\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no new client got in");
    }
    // Leaving the limit (accepts and failures alternating while the flood's
    // sockets close) adds no warnings inside the interval either.
    let total = admin.metric("realtime_accept_failures_total");
    assert_eq!(warnings(), 1, "{total} failures in all");
}
