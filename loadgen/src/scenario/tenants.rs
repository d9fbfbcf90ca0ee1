//! Tenants through the admin API, for `connect --tenants`: creating and
//! deleting them at a bounded concurrency (requests/s), and timing how long
//! a `PATCH` of a tenant's `jwt_secret` takes to close its sockets.
//!
//! Plain blocking sockets on threads: a few hundred requests in flight at
//! most, off the executors that hold the measured connections.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use realtime::proto::phoenix::Vsn;
use realtime::proto::ws::OpCode;
use serde_json::json;

use crate::conn::tenant_name;
use crate::phx::{self, JoinConfig};
use crate::wire::{self, Mask};

/// Deadline on every admin request and socket read.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code the server sends when a tenant's settings change.
const SERVICE_RESTART: u16 = 1012;

/// One keep-alive HTTP/1.1 connection to the admin API.
pub struct Admin {
    addr: SocketAddrV4,
    auth: String,
    stream: Option<TcpStream>,
}

impl Admin {
    /// A client authenticating with a token signed by `secret`.
    pub fn new(addr: SocketAddrV4, secret: &str) -> Admin {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = realtime::realtime::auth::sign_hs256(secret, &json!({"iat": now}));
        Admin {
            addr,
            auth: format!("Bearer {token}"),
            stream: None,
        }
    }

    /// Sends one request; returns the status. Sends it again on a new
    /// connection only if a kept-alive one failed (the server may have
    /// closed it while idle); a fresh connection's failure is the answer.
    pub fn request(&mut self, method: &str, path: &str, body: &str) -> Result<u16, String> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, body) {
            Ok(s) => Ok(s),
            Err(e) => {
                self.stream = None;
                if !reused {
                    return Err(format!("{method} {path}: {e}"));
                }
                self.try_request(method, path, body).map_err(|e| {
                    self.stream = None;
                    format!("{method} {path}: {e}")
                })
            }
        }
    }

    fn try_request(&mut self, method: &str, path: &str, body: &str) -> io::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr.into(), IO_TIMEOUT)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected above");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            self.auth,
            body.len()
        );
        s.write_all(req.as_bytes())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head = loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(h) = wire::parse_response_head(&buf).map_err(io::Error::other)? {
                break h;
            }
        };
        // Read the body off the connection so the next response starts clean.
        let total = head.head_len + head.content_length.unwrap_or(0);
        while buf.len() < total {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(head.status)
    }

    /// Creates tenant `id` with `secret`; Ok if the server answered 201.
    pub fn create(&mut self, id: &str, secret: &str) -> Result<(), String> {
        let body = json!({"tenant": {"external_id": id, "name": id, "jwt_secret": secret}});
        expect(
            self.request("POST", "/api/tenants", &body.to_string())?,
            201,
            "create",
            id,
        )
    }

    /// Deletes tenant `id`; Ok if the server answered 204.
    pub fn delete(&mut self, id: &str) -> Result<(), String> {
        expect(
            self.request("DELETE", &format!("/api/tenants/{id}"), "")?,
            204,
            "delete",
            id,
        )
    }

    /// Sets tenant `id`'s `jwt_secret`; Ok on 200.
    pub fn set_secret(&mut self, id: &str, secret: &str) -> Result<(), String> {
        let body = json!({"tenant": {"jwt_secret": secret}}).to_string();
        expect(
            self.request("PATCH", &format!("/api/tenants/{id}"), &body)?,
            200,
            "patch",
            id,
        )
    }
}

fn expect(status: u16, want: u16, what: &str, id: &str) -> Result<(), String> {
    if status == want {
        Ok(())
    } else {
        Err(format!(
            "admin API {what} {id}: status {status}, expected {want}"
        ))
    }
}

/// The outcome of a batch of admin requests.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Requests that succeeded.
    pub ok: u64,
    /// Distinct failure texts (the first few) and the number of failures.
    pub errors: Vec<String>,
    /// Failures.
    pub failed: u64,
    /// Wall time of the batch.
    pub secs: f64,
}

impl Batch {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

/// Runs `op(client, n)` for n in 0..count on `concurrency` threads, each
/// with its own keep-alive connection.
pub fn batch(
    addr: SocketAddrV4,
    admin_secret: &str,
    count: u64,
    concurrency: u64,
    op: impl Fn(&mut Admin, u64) -> Result<(), String> + Sync,
) -> Batch {
    let next = AtomicU64::new(0);
    let out = Mutex::new(Batch::default());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency.min(count.max(1)) {
            s.spawn(|| {
                let mut client = Admin::new(addr, admin_secret);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let r = op(&mut client, n);
                    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(()) => o.ok += 1,
                        Err(e) => {
                            o.failed += 1;
                            if o.errors.len() < 5 {
                                o.errors.push(e);
                            }
                        }
                    }
                }
            });
        }
    });
    let mut b = out.into_inner().unwrap_or_else(|e| e.into_inner());
    b.secs = t0.elapsed().as_secs_f64();
    b
}

/// Creates tenants `{prefix}0..count`, all with `secret`.
pub fn create_all(
    addr: SocketAddrV4,
    admin_secret: &str,
    prefix: &str,
    count: u64,
    concurrency: u64,
    secret: &str,
) -> Batch {
    batch(addr, admin_secret, count, concurrency, |c, n| {
        c.create(&tenant_name(prefix, n), secret)
    })
}

/// Deletes tenants `{prefix}0..count`.
pub fn delete_all(
    addr: SocketAddrV4,
    admin_secret: &str,
    prefix: &str,
    count: u64,
    concurrency: u64,
) -> Batch {
    batch(addr, admin_secret, count, concurrency, |c, n| {
        c.delete(&tenant_name(prefix, n))
    })
}

/// PATCH-to-disconnect of one tenant with `sockets` sockets.
#[derive(Debug, Clone)]
pub struct PatchTiming {
    /// Sockets opened on the tenant.
    pub sockets: u64,
    /// Milliseconds from sending the PATCH to each socket's close 1012, sorted.
    pub close_ms: Vec<f64>,
    /// Milliseconds the PATCH took to answer.
    pub reply_ms: f64,
}

impl PatchTiming {
    /// The `p`-th percentile (0..=100) of the close times.
    pub fn pct(&self, p: f64) -> f64 {
        if self.close_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (self.close_ms.len() - 1) as f64).round() as usize;
        self.close_ms[i.min(self.close_ms.len() - 1)]
    }
}

/// A blocking WebSocket joined to one channel.
struct Probe {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Probe {
    /// Connects with `Host: {tenant}.localhost`, joins `realtime:lg-patch`
    /// and waits for the join reply.
    fn open(addr: SocketAddrV4, tenant: &str, token: &str, idx: u64) -> Result<Probe, String> {
        let stream =
            TcpStream::connect_timeout(&addr.into(), IO_TIMEOUT).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut p = Probe {
            stream,
            buf: Vec::new(),
        };
        let path = format!("/socket/websocket?apikey={token}&vsn=2.0.0");
        let host = format!("{tenant}.localhost");
        p.write(&wire::upgrade_request(&host, &path))?;
        let head = loop {
            p.fill()?;
            if let Some(h) = wire::parse_response_head(&p.buf)? {
                break h;
            }
        };
        if head.status != 101 {
            return Err(format!("upgrade on {host}: status {}", head.status));
        }
        p.buf.drain(..head.head_len);
        let cfg = JoinConfig {
            access_token: Some(token.to_owned()),
            ..JoinConfig::default()
        };
        let join = phx::join(Vsn::V2, "realtime:lg-patch", "1", &cfg);
        let mut out = Vec::new();
        wire::put_frame(&mut out, OpCode::Text, &join, Mask::from_seed(idx + 1));
        p.write(&out)?;
        loop {
            let (op, payload) = p.frame()?;
            if op == 1 && find(&payload, b"phx_reply") {
                if find(&payload, b"\"ok\"") {
                    return Ok(p);
                }
                return Err(format!(
                    "join refused: {}",
                    String::from_utf8_lossy(&payload)
                ));
            }
        }
    }

    fn write(&mut self, b: &[u8]) -> Result<(), String> {
        self.stream.write_all(b).map_err(|e| e.to_string())
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("connection closed".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next whole frame: (opcode, payload).
    fn frame(&mut self) -> Result<(u8, Vec<u8>), String> {
        loop {
            if let Some(h) = wire::parse_header(&self.buf, 1 << 20).map_err(|e| e.to_string())? {
                if self.buf.len() >= h.total_len() {
                    let payload = self.buf[h.header_len..h.total_len()].to_vec();
                    self.buf.drain(..h.total_len());
                    return Ok((h.opcode, payload));
                }
            }
            self.fill()?;
        }
    }

    /// Reads until a close frame; returns its code.
    fn wait_close(&mut self) -> Result<u16, String> {
        loop {
            let (op, payload) = self.frame()?;
            if op == 8 {
                return Ok(payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Creates tenant `id` with `secret`, opens `sockets` sockets to it, PATCHes
/// its `jwt_secret` and times each socket's close 1012 from the PATCH.
/// Deletes the tenant afterwards.
pub fn patch_to_disconnect(
    addr: SocketAddrV4,
    admin_secret: &str,
    id: &str,
    secret: &str,
    sockets: u64,
) -> Result<PatchTiming, String> {
    let mut admin = Admin::new(addr, admin_secret);
    admin.create(id, secret)?;
    let r = measure_patch(&mut admin, addr, id, secret, sockets);
    let deleted = admin.delete(id);
    let t = r?;
    deleted?;
    Ok(t)
}

fn measure_patch(
    admin: &mut Admin,
    addr: SocketAddrV4,
    id: &str,
    secret: &str,
    sockets: u64,
) -> Result<PatchTiming, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = realtime::realtime::auth::sign_hs256(
        secret,
        &json!({"role": "anon", "iss": "realtime-loadgen", "iat": now, "exp": now + 3600}),
    );
    let probes = (0..sockets)
        .map(|i| Probe::open(addr, id, &token, i))
        .collect::<Result<Vec<_>, _>>()?;
    // Every reader is blocked in read() before the PATCH leaves, so the
    // times measure the server, not thread start-up.
    let go = Arc::new(Barrier::new(probes.len() + 1));
    let sent = Arc::new(Mutex::new(None::<Instant>));
    let readers: Vec<_> = probes
        .into_iter()
        .map(|mut p| {
            let (go, sent) = (go.clone(), sent.clone());
            std::thread::spawn(move || {
                go.wait();
                let code = p.wait_close()?;
                let at = Instant::now();
                if code != SERVICE_RESTART {
                    return Err(format!("close code {code}, expected {SERVICE_RESTART}"));
                }
                let t0 = sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .expect("set before PATCH");
                Ok(at.saturating_duration_since(t0).as_secs_f64() * 1e3)
            })
        })
        .collect();
    go.wait();
    let t0 = Instant::now();
    *sent.lock().unwrap_or_else(|e| e.into_inner()) = Some(t0);
    let patched = admin.set_secret(id, &format!("{secret}-rotated"));
    let reply_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut close_ms = Vec::new();
    let mut first_err = patched.err();
    for r in readers {
        match r.join().unwrap_or_else(|_| Err("reader panicked".into())) {
            Ok(ms) => close_ms.push(ms),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(format!("PATCH to disconnect, {sockets} sockets: {e}"));
    }
    close_ms.sort_by(f64::total_cmp);
    Ok(PatchTiming {
        sockets,
        close_ms,
        reply_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_close_times() {
        let t = PatchTiming {
            sockets: 5,
            close_ms: vec![1.0, 2.0, 3.0, 4.0, 10.0],
            reply_ms: 0.5,
        };
        assert_eq!((t.pct(0.0), t.pct(50.0), t.pct(100.0)), (1.0, 3.0, 10.0));
        let none = PatchTiming {
            close_ms: Vec::new(),
            ..t
        };
        assert!(none.pct(50.0).is_nan());
    }

    #[test]
    fn batch_rate_counts_successes_only() {
        let b = Batch {
            ok: 300,
            failed: 2,
            errors: vec!["x".into()],
            secs: 1.5,
        };
        assert_eq!(b.rate(), 200.0);
    }
}
