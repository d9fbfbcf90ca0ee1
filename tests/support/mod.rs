//! Test support: start the real `realtime` binary on a free port and talk
//! to it over real sockets with a minimal blocking WebSocket client.

#![allow(dead_code)]

pub mod control;
pub mod nats;
pub mod pg;
pub mod proxy;
pub mod rls;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "integration-test-secret-with-at-least-32-chars";

/// A server's log lines, as they arrive.
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Log {
    /// Lines containing every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Waits until `count(parts) >= n`; whether it got there by `deadline`.
    pub fn wait_for(&self, parts: &[&str], n: usize, deadline: Instant) -> bool {
        while self.count(parts) < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// A running server, stopped with SIGTERM on drop.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts the server with the test secret, zero backoffs and `env`.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::spawn(&[], env, false)
    }

    /// [`Server::start`] with command-line arguments (`--config FILE`, ...).
    pub fn start_with_args(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(args, env, false)
    }

    /// [`Server::start_env`] with its log (stderr) collected line by line.
    pub fn start_logged(env: &[(String, String)]) -> (Server, Log) {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut s = Server::spawn(&[], &env, true);
        let err = s.child.as_mut().unwrap().stderr.take().expect("piped");
        let log = Log::default();
        let lines = log.0.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                lines.lock().unwrap().push(line);
            }
        });
        (s, log)
    }

    /// Starts the server; its stderr piped to the caller or shared with
    /// the test's.
    fn spawn(args: &[&str], env: &[(&str, &str)], piped: bool) -> Server {
        Server::spawn_attempt(args, env, piped, 1)
    }

    fn spawn_attempt(args: &[&str], env: &[(&str, &str)], piped: bool, attempt: u32) -> Server {
        let port = free_port();
        let stderr = if piped {
            Stdio::piped()
        } else {
            Stdio::inherit()
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_realtime"));
        cmd.args(args)
            .env_clear()
            .env("PORT", port.to_string())
            .env("API_JWT_SECRET", SECRET)
            .env("CONNECT_ERROR_BACKOFF_MS", "0")
            .env("CHANNEL_ERROR_BACKOFF_MS", "0")
            .env("SHARDS", test_shards())
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Ok(p) = std::env::var("REALTIME_TEST_PLACEMENT") {
            cmd.env("SELF_HOST_TENANT_PLACEMENT", p);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn realtime");
        let mut s = Server {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _, _)) = s.try_http("GET", "/healthcheck", &[], b"") {
                return s;
            }
            if let Ok(Some(status)) = s.child.as_mut().unwrap().try_wait() {
                s.child = None;
                if status.code() == Some(realtime::server::EXIT_STARTUP_STALLED) && attempt < 3 {
                    // The server's own answer to a stalled start (see
                    // `server::startup_watchdog`): started again, as a
                    // supervisor would, and said so.
                    eprintln!("server on port {port}: start stalled, starting again");
                    return Server::spawn_attempt(args, env, piped, attempt + 1);
                }
                panic!("server on port {port} exited while starting: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Name the hang for whoever reads the failure: the server's
        // threads as they stand (when gdb is there to ask).
        let pid = s.child.as_ref().unwrap().id().to_string();
        if let Ok(out) = Command::new("gdb")
            .args(["-p", &pid, "-batch", "-ex", "thread apply all bt 30"])
            .output()
        {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        }
        panic!("server did not become healthy on port {port}");
    }

    /// [`Server::start`] with owned `(name, value)` pairs (as
    /// `pg::server_env` builds them).
    pub fn start_env(env: &[(String, String)]) -> Server {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start(&env)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) with plain integers; the child is not reaped yet
        // (we own it), so its pid cannot have been reused.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (no drain, no goodbye to Postgres).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// One HTTP/1.1 request; returns (status, headers text, body).
    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        self.try_http_host(method, path, "localhost", headers, body)
    }

    /// [`Server::try_http`] with a Host of the caller's choice.
    pub fn try_http_host(
        &self,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let status = head[9..12]
            .parse()
            .map_err(|_| std::io::ErrorKind::InvalidData)?;
        Ok((status, head, buf[split + 4..].to_vec()))
    }

    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        self.try_http(method, path, headers, body)
            .expect("http request")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the server process, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Value of one Prometheus series on each shard, by shard number.
    pub fn metric_by_shard(&self, name: &str) -> Vec<i64> {
        let (_, _, body) = self.http("GET", "/metrics", &[], b"");
        let prefix = format!("{name}{{shard=\"");
        let mut out = Vec::new();
        for l in String::from_utf8_lossy(&body).lines() {
            let Some(rest) = l.strip_prefix(&prefix) else {
                continue;
            };
            let (shard, value) = rest.split_once("\"} ").expect("one label");
            let i: usize = shard.parse().expect("shard number");
            out.resize(out.len().max(i + 1), 0);
            out[i] = value.parse().expect("a number");
        }
        out
    }

    /// Value of one Prometheus series summed over shards.
    pub fn metric(&self, name: &str) -> i64 {
        let (_, _, body) = self.http("GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Shards of the servers tests start, unless a test says otherwise:
/// `REALTIME_TEST_SHARDS`, or 2. The test command runs the suite again
/// with 1, and with 4 and `REALTIME_TEST_PLACEMENT=spread`. The
/// environment's tenant is spread by default; `REALTIME_TEST_PLACEMENT`
/// sets it for every test server that does not set it itself.
pub fn test_shards() -> String {
    std::env::var("REALTIME_TEST_SHARDS").unwrap_or_else(|_| "2".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HS256 JWT of `claims` under `secret`, built here from RustCrypto's
/// `hmac` and `sha2` rather than by the server's signing code: a token the
/// server made for itself would pass a verifier sharing its signer's bug.
pub fn sign_hs256(secret: &str, claims: &serde_json::Value) -> String {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    format!("{message}.{}", b64.encode(mac.finalize().into_bytes()))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token for the test secret, valid for `ttl` seconds.
pub fn token(role: &str, ttl: i64) -> String {
    token_with(serde_json::json!({ "role": role }), ttl)
}

/// A token for the test secret with extra `claims` (`role`, `sub`, ...),
/// valid for `ttl` seconds.
pub fn token_with(claims: serde_json::Value, ttl: i64) -> String {
    let mut c = claims;
    c["exp"] = serde_json::json!(now_unix() + ttl);
    sign_hs256(SECRET, &c)
}

/// A frame as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<u16>),
    Pong(Vec<u8>),
    Ping(Vec<u8>),
}

/// What one read of the socket gave: a frame, the end of the stream, or
/// nothing before the deadline. Tests say which they expect, so a socket
/// the server should have closed cannot pass by staying silent.
#[derive(Debug, Clone, PartialEq)]
pub enum Recv {
    Frame(Frame),
    Eof,
    Timeout,
}

/// A minimal blocking WebSocket client.
pub struct Ws {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    /// Connects with `vsn` and the given token; panics unless upgraded.
    pub fn connect(port: u16, vsn: &str, token: &str) -> Ws {
        let path = format!("/socket/websocket?apikey={token}&vsn={vsn}");
        match Ws::try_connect(port, &path, "localhost", &[]) {
            Ok(ws) => ws,
            Err((status, body)) => panic!("upgrade refused: {status} {body}"),
        }
    }

    /// Attempts an upgrade; on refusal returns (status, body).
    pub fn try_connect(
        port: u16,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, (u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nhost: {host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        Ws::finish_handshake(s)
    }

    /// Reads the answer to a handshake already written on `s` (the
    /// standard test key): the socket if upgraded, else (status, body).
    pub fn finish_handshake(mut s: TcpStream) -> Result<Ws, (u16, String)> {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let split = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = s.read(&mut tmp).unwrap();
            assert!(n > 0, "eof before response head");
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let status: u16 = head[9..12].parse().unwrap();
        let rest = buf[split + 4..].to_vec();
        if status == 101 {
            assert!(
                head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                "bad accept key: {head}"
            );
            return Ok(Ws { s, buf: rest });
        }
        let mut body = rest;
        let _ = s.read_to_end(&mut body);
        Err((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Sends one masked frame with the given first byte (FIN|opcode).
    pub fn send_raw(&mut self, b0: u8, payload: &[u8]) {
        let mut f = vec![b0];
        let mask = [0x11u8, 0x22, 0x33, 0x44];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    pub fn text(&mut self, s: &str) {
        self.send_raw(0x81, s.as_bytes());
    }

    pub fn binary(&mut self, b: &[u8]) {
        self.send_raw(0x82, b);
    }

    /// Reads more bytes: `None` if some came, else why none did.
    fn fill(&mut self) -> Option<Recv> {
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => Some(Recv::Eof),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                None
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Some(Recv::Timeout)
            }
            // A reset is the server closing the socket too.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                Some(Recv::Eof)
            }
            Err(e) => panic!("reading the WebSocket: {e}"),
        }
    }

    /// The next frame, the end of the stream, or a timeout once the
    /// socket's read timeout (10 s unless changed) passes without a whole
    /// frame.
    pub fn recv(&mut self) -> Recv {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are never masked");
                let (len, hl) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let op = self.buf[0] & 0x0f;
                    let payload: Vec<u8> = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    return Recv::Frame(match op {
                        1 => Frame::Text(String::from_utf8(payload).unwrap()),
                        2 => Frame::Binary(payload),
                        8 => Frame::Close(
                            (payload.len() >= 2)
                                .then(|| u16::from_be_bytes([payload[0], payload[1]])),
                        ),
                        9 => Frame::Ping(payload),
                        10 => Frame::Pong(payload),
                        o => panic!("unexpected opcode {o}"),
                    });
                }
            }
            if let Some(end) = self.fill() {
                return end;
            }
        }
    }

    /// The next frame; panics on EOF or timeout.
    pub fn expect_frame(&mut self) -> Frame {
        match self.recv() {
            Recv::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Waits (up to the read timeout) for the server to end the stream
    /// with nothing sent first; panics on a frame or a timeout.
    pub fn expect_eof(&mut self) {
        match self.recv() {
            Recv::Eof => {}
            other => panic!("expected the server to close the socket, got {other:?}"),
        }
    }

    /// Next text frame parsed as JSON (skipping nothing).
    pub fn recv_json(&mut self) -> serde_json::Value {
        match self.recv() {
            Recv::Frame(Frame::Text(t)) => serde_json::from_str(&t).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// [`Ws::recv`] waiting at most `ms` for a whole frame.
    pub fn recv_for(&mut self, ms: u64) -> Recv {
        self.s
            .set_read_timeout(Some(Duration::from_millis(ms.max(1))))
            .unwrap();
        let r = self.recv();
        self.s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        r
    }

    /// Joins `topic` (v2) with `config`, returning the reply.
    pub fn join_v2(
        &mut self,
        jr: &str,
        topic: &str,
        config: serde_json::Value,
    ) -> serde_json::Value {
        let msg = serde_json::json!([jr, jr, topic, "phx_join", {"config": config}]);
        self.text(&msg.to_string());
        self.recv_json()
    }
}

/// Nothing arrives on `ws` within `ms`.
pub fn assert_quiet(ws: &mut Ws, ms: u64) {
    match ws.recv_for(ms) {
        Recv::Timeout => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}
