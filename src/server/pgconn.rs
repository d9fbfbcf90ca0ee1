//! A Postgres connection on a glommio socket: startup, password
//! authentication (cleartext, md5, SCRAM-SHA-256), simple queries, queries
//! with bound parameters (the extended protocol), and the
//! CopyBoth stream of a logical replication connection.
//!
//! Message framing and SCRAM come from `postgres-protocol`; the streaming
//! messages it does not know (CopyBothResponse `W`) and the hot CopyData
//! path are framed here so a replication message reaches the decoder as a
//! `Bytes` slice of the read buffer, with no copy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend, frontend};

pub use super::pgerror::PgError;
use super::tls::{self, DbTls, PgStream};
pub use crate::proto::pg::extended::Rows;
use crate::proto::pg::extended::{self, DbError, Reply, Step};

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// Role to log in as.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Open a logical replication connection (`replication=database`).
    pub replication: bool,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
    /// Deadline of every operation: TCP connect, TLS, startup and
    /// authentication together, then each query, status write and
    /// START_REPLICATION. A database that accepts the socket but never
    /// answers would otherwise hold the caller forever.
    pub timeout: Duration,
    /// TLS mode and trusted roots.
    pub tls: DbTls,
}

/// One message of a CopyBoth stream.
#[derive(Debug)]
pub enum CopyMsg {
    /// A CopyData payload (XLogData or keepalive for replication).
    Data(Bytes),
    /// The server ended the copy.
    Done,
}

/// An open connection.
pub struct PgConn {
    stream: PgStream,
    /// Deadline of each operation ([`PgConfig::timeout`]).
    timeout: Duration,
    /// An operation was cut off mid-way: the stream's position in the
    /// protocol is unknown, so every later operation fails at once.
    broken: bool,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Parameters the server reported (server_version, TimeZone, ...).
    pub params: HashMap<String, String>,
    /// Statements prepared on this connection by [`PgConn::pipeline`]:
    /// text -> name.
    prepared: HashMap<String, String>,
}

const READ_CHUNK: usize = 64 * 1024;

impl PgConn {
    /// Connects and authenticates, all within `cfg.timeout`.
    pub async fn connect(cfg: &PgConfig) -> Result<PgConn, PgError> {
        within(cfg.timeout, "connect and authenticate", Self::open(cfg)).await
    }

    async fn open(cfg: &PgConfig) -> Result<PgConn, PgError> {
        let addr = resolve(&cfg.host, cfg.port, lookup).await?;
        let stream = tls::open(addr, cfg.timeout, &cfg.host, &cfg.tls).await?;
        let mut conn = PgConn {
            stream,
            timeout: cfg.timeout,
            broken: false,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
            params: HashMap::new(),
            prepared: HashMap::new(),
        };
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &cfg.user),
            ("database", &cfg.dbname),
            ("application_name", &cfg.application_name),
            ("client_encoding", "UTF8"),
            // Typed JSON expects ISO dates in UTC (PROTOCOL "Typed JSON").
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            // String literals are read the same way whatever the database
            // or role default says (see `proto::pg::sql::literal`, which is
            // correct either way; this keeps any other literal honest too).
            ("standard_conforming_strings", "on"),
        ];
        if cfg.replication {
            params.push(("replication", "database"));
        }
        frontend::startup_message(params.iter().copied(), &mut conn.wbuf)?;
        conn.flush().await?;
        conn.authenticate(cfg).await?;
        loop {
            match conn.next_message().await? {
                backend::Message::ReadyForQuery(_) => return Ok(conn),
                backend::Message::ParameterStatus(p) => {
                    conn.params
                        .insert(p.name()?.to_owned(), p.value()?.to_owned());
                }
                backend::Message::BackendKeyData(_) | backend::Message::NoticeResponse(_) => {}
                backend::Message::ErrorResponse(e) => return Err(db_error(&e)),
                _ => {
                    return Err(PgError::Protocol(
                        "unexpected message during startup".into(),
                    ))
                }
            }
        }
    }

    async fn authenticate(&mut self, cfg: &PgConfig) -> Result<(), PgError> {
        loop {
            match self.next_message().await? {
                backend::Message::AuthenticationOk => return Ok(()),
                backend::Message::AuthenticationCleartextPassword => {
                    frontend::password_message(cfg.password.as_bytes(), &mut self.wbuf)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let hashed =
                        md5_hash(cfg.user.as_bytes(), cfg.password.as_bytes(), body.salt());
                    frontend::password_message(hashed.as_bytes(), &mut self.wbuf)?;
                    self.flush().await?;
                }
                backend::Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut scram = false;
                    while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechs)? {
                        scram |= m == SCRAM_SHA_256;
                    }
                    if !scram {
                        return Err(PgError::UnsupportedAuth("SASL without SCRAM-SHA-256"));
                    }
                    let mut sc =
                        ScramSha256::new(cfg.password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, sc.message(), &mut self.wbuf)?;
                    self.flush().await?;
                    match self.next_message().await? {
                        backend::Message::AuthenticationSaslContinue(b) => sc.update(b.data())?,
                        backend::Message::ErrorResponse(e) => return Err(db_error(&e)),
                        _ => return Err(PgError::Protocol("expected SASL continue".into())),
                    }
                    frontend::sasl_response(sc.message(), &mut self.wbuf)?;
                    self.flush().await?;
                    match self.next_message().await? {
                        backend::Message::AuthenticationSaslFinal(b) => sc.finish(b.data())?,
                        backend::Message::ErrorResponse(e) => return Err(db_error(&e)),
                        _ => return Err(PgError::Protocol("expected SASL final".into())),
                    }
                }
                backend::Message::AuthenticationGss | backend::Message::AuthenticationSspi => {
                    return Err(PgError::UnsupportedAuth("GSS/SSPI"))
                }
                backend::Message::AuthenticationKerberosV5 => {
                    return Err(PgError::UnsupportedAuth("Kerberos"))
                }
                backend::Message::ErrorResponse(e) => return Err(db_error(&e)),
                _ => {
                    return Err(PgError::Protocol(
                        "unexpected message during authentication".into(),
                    ))
                }
            }
        }
    }

    /// Runs one or more statements with the simple query protocol, within
    /// the connection's deadline.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Rows>, PgError> {
        self.usable()?;
        let r = within(self.timeout, "query", self.simple_query_inner(sql)).await;
        self.note(r)
    }

    async fn simple_query_inner(&mut self, sql: &str) -> Result<Vec<Rows>, PgError> {
        frontend::query(sql, &mut self.wbuf)?;
        self.flush().await?;
        let mut out = Vec::new();
        let mut cur = Rows::default();
        let mut error = None;
        loop {
            match self.next_message().await? {
                backend::Message::RowDescription(d) => {
                    let mut fields = d.fields();
                    cur.columns.clear();
                    while let Some(f) = fallible_iterator::FallibleIterator::next(&mut fields)? {
                        cur.columns.push(f.name().to_owned());
                    }
                }
                backend::Message::DataRow(r) => {
                    let buf = r.buffer();
                    let mut ranges = r.ranges();
                    let mut row = Vec::with_capacity(cur.columns.len());
                    while let Some(range) = fallible_iterator::FallibleIterator::next(&mut ranges)?
                    {
                        row.push(range.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    cur.rows.push(row);
                }
                backend::Message::CommandComplete(c) => {
                    cur.tag = c.tag()?.to_owned();
                    out.push(std::mem::take(&mut cur));
                }
                backend::Message::EmptyQueryResponse | backend::Message::NoticeResponse(_) => {}
                backend::Message::ParameterStatus(p) => {
                    self.params
                        .insert(p.name()?.to_owned(), p.value()?.to_owned());
                }
                backend::Message::ErrorResponse(e) => error = Some(db_error(&e)),
                backend::Message::ReadyForQuery(_) => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(out),
                    }
                }
                _ => {
                    return Err(PgError::Protocol(
                        "unexpected message in simple query".into(),
                    ))
                }
            }
        }
    }

    /// Runs one statement with `params` bound as text (`None` is NULL),
    /// within the connection's deadline. A value is never part of the
    /// statement's text, so it cannot change what the statement does. An
    /// error from the server leaves the connection usable (the reply is read
    /// through ReadyForQuery); a NUL byte in `sql` or a value is refused
    /// before anything is sent.
    pub async fn query(&mut self, sql: &str, params: &[Option<&str>]) -> Result<Rows, PgError> {
        self.usable()?;
        extended::encode_query(sql, params, &mut self.wbuf)
            .map_err(|e| PgError::Param(e.to_string()))?;
        let r = within(self.timeout, "query", self.query_inner()).await;
        // A reply cut off or garbled leaves the stream at an unknown place.
        if matches!(r, Err(PgError::Protocol(_) | PgError::Io(_))) {
            self.broken = true;
        }
        self.note(r)
    }

    async fn query_inner(&mut self) -> Result<Rows, PgError> {
        match self.pipeline_inner(1).await?.pop() {
            Some(Ok(rows)) => Ok(rows),
            Some(Err(e)) => Err(PgError::Db {
                severity: e.severity,
                code: e.code,
                message: e.message,
            }),
            None => Err(PgError::Protocol("no reply".into())),
        }
    }

    /// Runs `stmts` as [`PgConn::query`] runs one, each with its own Sync,
    /// but written at once and answered in one round trip (a pipeline):
    /// each statement's outcome in order. A statement that fails leaves
    /// the next to run (inside a transaction it fails in turn until a
    /// ROLLBACK). Each distinct text is prepared once per connection (a
    /// named statement, parsed and planned once; Postgres plans again
    /// when the role or anything the plan rests on changed), at the head
    /// of the pipeline, outside any transaction. The whole pipeline has
    /// the connection's deadline; a value holding a NUL byte refuses it
    /// before anything is sent.
    /// Texts in `unprepared` are parsed and planned at each run instead
    /// (a plan that must follow the table's size as it changes).
    pub async fn pipeline(
        &mut self,
        stmts: &[(&str, Vec<Option<&str>>)],
        unprepared: &[&str],
    ) -> Result<Vec<Result<Rows, DbError>>, PgError> {
        self.usable()?;
        let mut buf = BytesMut::new();
        let mut new: Vec<(String, String)> = Vec::new();
        for (sql, _) in stmts {
            if unprepared.contains(sql) {
                continue;
            }
            if !self.prepared.contains_key(*sql) && !new.iter().any(|(s, _)| s == sql) {
                let name = format!("rt{}", self.prepared.len() + new.len());
                extended::encode_prepare(&name, sql, &mut buf)
                    .map_err(|e| PgError::Param(e.to_string()))?;
                new.push((sql.to_string(), name));
            }
        }
        for (sql, params) in stmts {
            let name = match self.prepared.get(*sql) {
                Some(n) => Some(n.as_str()),
                None => new.iter().find(|(s, _)| s == sql).map(|(_, n)| n.as_str()),
            };
            let r = match name {
                Some(name) => extended::encode_statement(name, None, params, &mut buf),
                None => extended::encode_query(sql, params, &mut buf),
            };
            r.map_err(|e| PgError::Param(e.to_string()))?;
        }
        self.wbuf.extend_from_slice(&buf);
        let r = within(
            self.timeout,
            "pipeline",
            self.pipeline_inner(new.len() + stmts.len()),
        )
        .await;
        let r = r.and_then(|mut outcomes| {
            let rest = outcomes.split_off(new.len());
            for (outcome, (sql, name)) in outcomes.into_iter().zip(new) {
                if let Err(e) = outcome {
                    // Its runs failed too: the connection is not used again.
                    self.broken = true;
                    return Err(PgError::Protocol(format!(
                        "preparing a statement: {}",
                        e.message
                    )));
                }
                self.prepared.insert(sql, name);
            }
            Ok(rest)
        });
        if matches!(r, Err(PgError::Protocol(_) | PgError::Io(_))) {
            self.broken = true;
        }
        self.note(r)
    }

    async fn pipeline_inner(&mut self, n: usize) -> Result<Vec<Result<Rows, DbError>>, PgError> {
        self.flush().await?;
        let mut out = Vec::with_capacity(n);
        let mut reply = Reply::new();
        while out.len() < n {
            let (tag, body) = self.next_frame().await?;
            match reply
                .feed(tag, &body)
                .map_err(|e| PgError::Protocol(e.to_string()))?
            {
                Step::More => {}
                Step::Param(name, value) => {
                    self.params.insert(name, value);
                }
                Step::Done(r) => {
                    out.push(r);
                    reply = Reply::new();
                }
            }
        }
        Ok(out)
    }

    /// Sends a command that opens a CopyBoth stream (`START_REPLICATION`)
    /// and waits for the server to accept it, within the deadline.
    pub async fn start_copy_both(&mut self, sql: &str) -> Result<(), PgError> {
        self.usable()?;
        let r = within(
            self.timeout,
            "START_REPLICATION",
            self.start_copy_both_inner(sql),
        )
        .await;
        self.note(r)
    }

    async fn start_copy_both_inner(&mut self, sql: &str) -> Result<(), PgError> {
        frontend::query(sql, &mut self.wbuf)?;
        self.flush().await?;
        loop {
            let (tag, body) = self.next_frame().await?;
            match tag {
                b'W' => return Ok(()),
                b'N' | b'S' => {}
                b'E' => return Err(parse_error_body(&body)),
                t => {
                    return Err(PgError::Protocol(format!(
                        "expected CopyBothResponse, got `{}`",
                        t as char
                    )))
                }
            }
        }
    }

    /// Next message of a CopyBoth stream. No deadline: a stream may be
    /// quiet for long; the caller decides how much silence is too much.
    /// Cancel-safe (see [`fill`](Self::fill)).
    pub async fn recv_copy(&mut self) -> Result<CopyMsg, PgError> {
        self.usable()?;
        loop {
            let (tag, body) = self.next_frame().await?;
            match tag {
                b'd' => return Ok(CopyMsg::Data(body)),
                b'c' => return Ok(CopyMsg::Done),
                b'N' | b'S' => {}
                b'E' => return Err(parse_error_body(&body)),
                t => {
                    return Err(PgError::Protocol(format!(
                        "unexpected `{}` in copy stream",
                        t as char
                    )))
                }
            }
        }
    }

    /// Sends one CopyData message (a standby status update).
    pub async fn send_copy_data(&mut self, data: &[u8]) -> Result<(), PgError> {
        frontend::CopyData::new(data)?.write(&mut self.wbuf);
        // A peer that stopped reading fills the socket buffer and the
        // write would wait forever.
        self.usable()?;
        let r = within(self.timeout, "status update", self.flush()).await;
        self.note(r)
    }

    /// Whether complete frames are already buffered (no read needed).
    pub fn has_buffered_frame(&self) -> bool {
        frame_len(&self.rbuf).is_some_and(|n| self.rbuf.len() >= n)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Runs `body` in a transaction: committed if it succeeds, rolled
    /// back (and its error returned) if not.
    pub async fn transaction<T, E: From<PgError>>(
        &mut self,
        body: impl AsyncFnOnce(&mut PgConn) -> Result<T, E>,
    ) -> Result<T, E> {
        self.simple_query("begin").await?;
        let r = body(self).await;
        let end = if r.is_ok() { "commit" } else { "rollback" };
        match (r, self.simple_query(end).await) {
            (Ok(v), Ok(_)) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
        }
    }

    /// Says goodbye.
    pub async fn terminate(mut self) {
        if self.broken {
            return;
        }
        frontend::terminate(&mut self.wbuf);
        let _ = within(self.timeout, "terminate", self.flush()).await;
    }

    /// Refuses to run on a broken connection.
    fn usable(&self) -> Result<(), PgError> {
        if self.broken {
            return Err(broken());
        }
        Ok(())
    }

    /// Marks the connection broken when `r` is a timeout.
    fn note<T>(&mut self, r: Result<T, PgError>) -> Result<T, PgError> {
        if matches!(r, Err(PgError::Timeout(_))) {
            self.broken = true;
        }
        r
    }

    async fn flush(&mut self) -> Result<(), PgError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Reads more bytes. Cancel-safe: bytes land in `rbuf` only once read
    /// (glommio's reads are readiness-based, so a dropped read loses nothing).
    async fn fill(&mut self) -> Result<(), PgError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        self.rbuf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One raw frame: tag and body (without tag and length).
    async fn next_frame(&mut self) -> Result<(u8, Bytes), PgError> {
        loop {
            if let Some(len) = frame_len(&self.rbuf) {
                if self.rbuf.len() >= len {
                    let mut frame = self.rbuf.split_to(len).freeze();
                    let tag = frame[0];
                    frame.advance(5);
                    return Ok((tag, frame));
                }
            }
            self.fill().await?;
        }
    }

    async fn next_message(&mut self) -> Result<backend::Message, PgError> {
        loop {
            if let Some(m) = backend::Message::parse(&mut self.rbuf)? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }
}

/// `fut`, or [`PgError::Timeout`] naming `what` once `timeout` passes.
async fn within<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, PgError>>,
) -> Result<T, PgError> {
    super::deadline::within(timeout, fut)
        .await
        .unwrap_or_else(|| {
            Err(PgError::Timeout(format!(
                "no answer to {what} within {} ms",
                timeout.as_millis()
            )))
        })
}

/// How a host name becomes addresses: the system resolver (getaddrinfo,
/// which blocks), or another in tests.
type Lookup = fn(&str, u16) -> std::io::Result<Option<SocketAddr>>;

/// The system resolver's first address for `host:port`.
fn lookup(host: &str, port: u16) -> std::io::Result<Option<SocketAddr>> {
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(|mut a| a.next())
}

/// The address to dial for `host:port`. An IP literal needs no lookup; a
/// name is looked up on the executor's blocking-pool thread, because
/// getaddrinfo can block for seconds (an unreachable DNS server) and the
/// shard thread serves every socket of its tenants meanwhile. The caller's
/// deadline ([`PgConn::connect`]) covers the wait; a lookup that outlives it
/// finishes on the pool thread and its answer is dropped.
async fn resolve(host: &str, port: u16, lookup: Lookup) -> Result<SocketAddr, PgError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let name = host.to_owned();
    glommio::executor()
        .spawn_blocking(move || lookup(&name, port))
        .await?
        .ok_or_else(|| PgError::Protocol(format!("cannot resolve {host}")))
}

fn broken() -> PgError {
    PgError::Timeout("connection abandoned after an earlier timeout".into())
}

/// Total length of the frame at the start of `buf` (tag + length + body).
fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    Some(1 + len.max(4))
}

fn db_error(e: &backend::ErrorResponseBody) -> PgError {
    let mut severity = String::new();
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = e.fields();
    while let Ok(Some(f)) = fallible_iterator::FallibleIterator::next(&mut fields) {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'S' => severity = v,
            b'C' => code = v,
            b'M' => message = v,
            _ => {}
        }
    }
    PgError::Db {
        severity,
        code,
        message,
    }
}

fn parse_error_body(body: &[u8]) -> PgError {
    let e = extended::parse_error_fields(body);
    PgError::Db {
        severity: e.severity,
        code: e.code,
        message: e.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    fn on_executor<T, F>(f: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    /// Set by the shard while a lookup is pending; the lookup waits for it.
    static SHARD_RAN: AtomicBool = AtomicBool::new(false);

    /// A lookup that answers only once the shard has run something else
    /// (or gives up after 5 s): done on the shard thread it never could.
    fn lookup_waiting_for_the_shard(_: &str, port: u16) -> std::io::Result<Option<SocketAddr>> {
        let until = Instant::now() + Duration::from_secs(5);
        while !SHARD_RAN.load(Ordering::SeqCst) {
            if Instant::now() > until {
                return Err(std::io::Error::other("the shard was blocked by the lookup"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Some(SocketAddr::from(([10, 0, 0, 1], port))))
    }

    #[test]
    fn a_name_is_resolved_off_the_shard_thread() {
        let got = on_executor(|| async {
            let marker = glommio::spawn_local(async { SHARD_RAN.store(true, Ordering::SeqCst) });
            let got = resolve("db.example", 5432, lookup_waiting_for_the_shard).await;
            marker.await;
            got.map_err(|e| e.to_string())
        });
        assert_eq!(got, Ok(SocketAddr::from(([10, 0, 0, 1], 5432))));
    }

    #[test]
    fn the_deadline_covers_a_hung_lookup() {
        fn hung(_: &str, _: u16) -> std::io::Result<Option<SocketAddr>> {
            std::thread::sleep(Duration::from_secs(2));
            Ok(None)
        }
        let (err, waited) = on_executor(|| async {
            let t0 = Instant::now();
            let r = within(Duration::from_millis(100), "connect", resolve("h", 1, hung)).await;
            (r.map(|_| ()).map_err(|e| e.to_string()), t0.elapsed())
        });
        assert_eq!(
            err,
            Err("timeout: no answer to connect within 100 ms".into())
        );
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    }

    #[test]
    fn literals_and_names_resolve() {
        let got = on_executor(|| async {
            let ip = resolve("127.0.0.1", 5432, lookup)
                .await
                .map_err(|e| e.to_string());
            let v6 = resolve("::1", 5433, lookup)
                .await
                .map_err(|e| e.to_string());
            let name = resolve("localhost", 5434, lookup)
                .await
                .map_err(|e| e.to_string());
            (ip, v6, name)
        });
        assert_eq!(got.0, Ok(SocketAddr::from(([127, 0, 0, 1], 5432))));
        assert_eq!(got.1, Ok("[::1]:5433".parse().unwrap()));
        let name = got.2.unwrap();
        assert!(name.ip().is_loopback() && name.port() == 5434, "{name}");
    }

    #[test]
    fn frames_are_measured_from_their_header() {
        assert_eq!(frame_len(b"d\0\0"), None);
        assert_eq!(frame_len(b"d\0\0\0\x04"), Some(5));
        assert_eq!(frame_len(b"d\0\0\0\x09abcd"), Some(10));
        // A bogus length below 4 never makes a frame shorter than its header.
        assert_eq!(frame_len(b"d\0\0\0\x00"), Some(5));
    }

    #[test]
    fn error_bodies_are_read_field_by_field() {
        let e = parse_error_body(b"SERROR\0C42704\0Mreplication slot \"x\" does not exist\0\0");
        assert_eq!(e.code(), Some("42704"));
        assert_eq!(
            e.to_string(),
            "ERROR 42704: replication slot \"x\" does not exist"
        );
        assert!(matches!(
            parse_error_body(b"garbage-without-nul"),
            PgError::Db { .. }
        ));
    }
}
