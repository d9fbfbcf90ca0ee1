//! The loadgen's own WebSocket client on glommio, written for throughput.
//!
//! - Reads are readiness-based (glommio tries `recv`, then arms a poll) and
//!   land in one scratch buffer per executor; a connection keeps bytes only
//!   when a frame straddles two reads ([`Reader`]), so 10k idle subscribers
//!   hold no read buffers.
//! - Frames are parsed in place and handed to the scenario as borrowed
//!   slices ([`Frame`]); nothing is allocated per message.
//! - Sockets are created by hand so they can be bound to a loopback source
//!   address (127.0.0.x) with `IP_BIND_ADDRESS_NO_PORT`: each source address
//!   has its own ~28k ephemeral ports towards the same server port.
//! - One writer at a time per socket ([`Socket::write_all`] takes a tiny
//!   flag lock), so a heartbeat can never split a publisher's frame.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use realtime::proto::phoenix::Vsn;
use realtime::proto::ws::OpCode;

use crate::wire::{self, FrameError, Mask};

/// Bytes asked of the kernel per read (shared by all sockets of an executor).
const SCRATCH_LEN: usize = 256 * 1024;
/// Largest server frame accepted.
const MAX_FRAME: usize = 16 << 20;

thread_local! {
    /// The executor's read buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Server address.
    pub addr: SocketAddrV4,
    /// `Host` header (names the tenant).
    pub host: String,
    /// WebSocket path, e.g. `/socket/websocket`.
    pub path: String,
    /// JWT sent as the `apikey` query parameter.
    pub apikey: String,
    /// Number of loopback source addresses to spread over (127.0.0.1..=N);
    /// 0 lets the kernel pick.
    pub source_addrs: u32,
    /// Whether the server speaks Phoenix (adds `apikey` and `vsn` to the
    /// path); peers get the bare path.
    pub phoenix: bool,
    /// Spread connections over this many tenants (0: every connection
    /// uses `host`): connection `idx` names `{tenant_prefix}{idx % tenants}.localhost`.
    pub tenants: u64,
    /// Prefix of the tenant names when `tenants > 0`.
    pub tenant_prefix: String,
    /// The servers of a cluster (empty or one: everything goes to `addr`):
    /// connection `idx >= spread_from` goes to `spread[(idx - spread_from) % len]`.
    pub spread: Vec<SocketAddrV4>,
    /// Connections numbered below this (publishers) stay on `addr`.
    pub spread_from: u64,
}

impl Endpoint {
    /// The upgrade request path with `apikey` and `vsn`.
    pub fn ws_path(&self, vsn: Vsn) -> String {
        if !self.phoenix {
            return self.path.clone();
        }
        format!("{}?apikey={}&vsn={}", self.path, self.apikey, vsn.as_str())
    }

    /// The `Host` header of connection number `idx`: the server takes the
    /// tenant from its first label.
    pub fn host_for(&self, idx: u64) -> std::borrow::Cow<'_, str> {
        if self.tenants == 0 {
            return self.host.as_str().into();
        }
        format!(
            "{}.localhost",
            tenant_name(&self.tenant_prefix, idx % self.tenants)
        )
        .into()
    }

    /// The server connection number `idx` goes to.
    pub fn addr_for(&self, idx: u64) -> SocketAddrV4 {
        match idx.checked_sub(self.spread_from) {
            Some(i) if self.spread.len() > 1 => {
                self.spread[(i % self.spread.len() as u64) as usize]
            }
            _ => self.addr,
        }
    }

    /// The source address connection number `idx` binds to, if any.
    pub fn source_for(&self, idx: u64) -> Option<Ipv4Addr> {
        (self.source_addrs > 0).then(|| {
            let n = (idx % u64::from(self.source_addrs.min(254))) as u32 + 1;
            Ipv4Addr::from(0x7f00_0000 | n)
        })
    }
}

/// The external id of tenant number `n`.
pub fn tenant_name(prefix: &str, n: u64) -> String {
    format!("{prefix}{n}")
}

/// `sockaddr_in` for `a`.
fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Starts a non-blocking connect, bound to `src` when given. The first
/// write completes once the handshake has.
fn start_connect(dst: SocketAddrV4, src: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket syscalls on a descriptor this function owns; the
    // descriptor is closed on every error path.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |fd| {
            let e = io::Error::last_os_error();
            libc::close(fd);
            Err(e)
        };
        if let Some(src) = src {
            // Without it, bind would pick the port now, for every
            // destination, capping each source address at one ephemeral
            // range in total: refuse rather than measure that cap.
            let one: libc::c_int = 1;
            if libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) != 0
            {
                return fail(fd);
            }
            let sa = sockaddr(SocketAddrV4::new(src, 0));
            if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len) != 0 {
                return fail(fd);
            }
        }
        let sa = sockaddr(dst);
        if libc::connect(fd, &sa as *const _ as *const libc::sockaddr, len) != 0
            && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS)
        {
            return fail(fd);
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

/// A connected socket. Shared (`Rc`) between a reader task and at most a
/// few writers; the stream is borrowed only inside one poll.
pub struct Socket {
    /// The TCP stream.
    stream: RefCell<TcpStream>,
    /// Set while a writer is mid-message.
    writing: Cell<bool>,
    /// This connection's masking key.
    pub mask: Mask,
    /// The serializer negotiated.
    pub vsn: Vsn,
}

impl Socket {
    /// Connects a plain TCP socket (for REST) with `TCP_NODELAY`.
    pub async fn connect_tcp(ep: &Endpoint, idx: u64, vsn: Vsn) -> io::Result<Rc<Socket>> {
        let stream = start_connect(ep.addr_for(idx), ep.source_for(idx))?;
        let _ = stream.set_nodelay(true);
        let sock = Rc::new(Socket {
            stream: RefCell::new(stream),
            writing: Cell::new(false),
            mask: Mask::from_seed(idx ^ crate::stats::now_ns().rotate_left(17)),
            vsn,
        });
        // Completes the TCP handshake (or reports the refusal).
        sock.write_all(b"").await?;
        Ok(sock)
    }

    /// Writes all of `data`, never interleaving with another writer.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while self.writing.replace(true) {
            futures_lite::future::yield_now().await;
        }
        struct Release<'a>(&'a Cell<bool>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _release = Release(&self.writing);
        loop {
            let n =
                poll_fn(|cx| Pin::new(&mut *self.stream.borrow_mut()).poll_write(cx, data)).await?;
            data = &data[n..];
            if data.is_empty() {
                return Ok(());
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
    }

    /// Frames `msg` (text or binary) with this socket's mask and writes it.
    pub async fn send(&self, msg: &[u8], binary: bool) -> io::Result<()> {
        let mut out = Vec::with_capacity(msg.len() + 14);
        let op = if binary { OpCode::Binary } else { OpCode::Text };
        wire::put_frame(&mut out, op, msg, self.mask);
        self.write_all(&out).await
    }

    /// Reads once into the executor scratch buffer and hands the bytes to
    /// `f`; returns how many arrived (0 = EOF).
    pub async fn read_some(&self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        poll_fn(|cx| {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let r = Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, &mut s[..]);
                if let Poll::Ready(Ok(n)) = r {
                    f(&s[..n]);
                }
                r
            })
        })
        .await
    }

    /// The descriptor (for the epoll receivers; the socket keeps owning it).
    pub fn raw_fd(&self) -> std::os::unix::io::RawFd {
        self.stream.borrow().as_raw_fd()
    }

    /// Makes the next close send RST instead of FIN (no TIME_WAIT left
    /// behind by connection churn).
    pub fn set_linger_zero(&self) -> io::Result<()> {
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on our own open descriptor.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.borrow().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &l as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// A complete message from the server, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Text message.
    Text(&'a [u8]),
    /// Binary message.
    Binary(&'a [u8]),
}

/// Per-connection read state: only a partial frame between reads, and the
/// reassembly of a fragmented message (servers rarely fragment).
#[derive(Debug, Default)]
pub struct Reader {
    /// Unparsed bytes (a frame cut by the end of a read).
    pending: Vec<u8>,
    /// Fragments so far: (opcode, bytes).
    frag: Option<(u8, Vec<u8>)>,
    /// Payload of the last ping, to answer.
    pub pong: Option<Vec<u8>>,
    /// The server sent a Close frame: its status code (1005 when it
    /// carried none).
    pub closed: Option<u16>,
}

impl Reader {
    /// Consumes `data` (after any pending bytes), calling `on` for every
    /// complete message.
    pub fn feed(&mut self, data: &[u8], on: &mut impl FnMut(Frame<'_>)) -> Result<(), FrameError> {
        if self.pending.is_empty() {
            let used = parse_all(data, &mut self.frag, &mut self.pong, &mut self.closed, on)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            self.pending.extend_from_slice(data);
            let used = parse_all(
                &self.pending,
                &mut self.frag,
                &mut self.pong,
                &mut self.closed,
                on,
            )?;
            self.pending.drain(..used);
            if self.pending.is_empty() && self.pending.capacity() > 64 * 1024 {
                self.pending = Vec::new();
            }
        }
        Ok(())
    }

    /// Whether bytes are waiting to be parsed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Parses every complete frame at the front of `buf`; returns bytes used.
fn parse_all(
    buf: &[u8],
    frag: &mut Option<(u8, Vec<u8>)>,
    pong: &mut Option<Vec<u8>>,
    closed: &mut Option<u16>,
    on: &mut impl FnMut(Frame<'_>),
) -> Result<usize, FrameError> {
    let mut at = 0;
    while let Some(h) = wire::parse_header(&buf[at..], MAX_FRAME)? {
        if buf.len() - at < h.total_len() {
            break;
        }
        let payload = &buf[at + h.header_len..at + h.total_len()];
        at += h.total_len();
        match (h.opcode, h.fin) {
            (1, true) => on(Frame::Text(payload)),
            (2, true) => on(Frame::Binary(payload)),
            (1 | 2, false) => *frag = Some((h.opcode, payload.to_vec())),
            (0, fin) => {
                if let Some((_, acc)) = frag.as_mut() {
                    acc.extend_from_slice(payload);
                }
                if fin {
                    if let Some((op, acc)) = frag.take() {
                        on(if op == 1 {
                            Frame::Text(&acc)
                        } else {
                            Frame::Binary(&acc)
                        });
                    }
                }
            }
            (9, _) => *pong = Some(payload.to_vec()),
            (8, _) => {
                *closed = Some(match payload {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    _ => 1005,
                })
            }
            _ => {}
        }
    }
    Ok(at)
}

/// Why a WebSocket connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP or I/O error.
    Io(io::Error),
    /// The server answered the upgrade with this status.
    Status(u16),
    /// No answer in time.
    Timeout,
    /// Garbage instead of an HTTP response.
    Protocol(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Status(s) => write!(f, "upgrade refused: HTTP {s}"),
            ConnectError::Timeout => write!(f, "connect: timed out"),
            ConnectError::Protocol(e) => write!(f, "upgrade: {e}"),
        }
    }
}

/// Runs `fut` with a deadline.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

/// Opens a WebSocket: TCP connect (from source address `idx`), upgrade
/// request, `101` check. Bytes after the response head stay in `rd`.
pub async fn ws_connect(
    ep: &Endpoint,
    vsn: Vsn,
    idx: u64,
    rd: &mut Reader,
    limit: Duration,
) -> Result<Rc<Socket>, ConnectError> {
    let attempt = async {
        let sock = Socket::connect_tcp(ep, idx, vsn)
            .await
            .map_err(ConnectError::Io)?;
        let req = wire::upgrade_request(&ep.host_for(idx), &ep.ws_path(vsn));
        sock.write_all(&req).await.map_err(ConnectError::Io)?;
        let mut head = Vec::new();
        loop {
            let n = sock
                .read_some(|b| head.extend_from_slice(b))
                .await
                .map_err(ConnectError::Io)?;
            match wire::parse_response_head(&head).map_err(ConnectError::Protocol)? {
                Some(h) if h.status == 101 => {
                    rd.pending = head.split_off(h.head_len);
                    return Ok(sock);
                }
                Some(h) => return Err(ConnectError::Status(h.status)),
                None if n == 0 => {
                    return Err(ConnectError::Io(io::ErrorKind::UnexpectedEof.into()))
                }
                None => {}
            }
        }
    };
    timeout(limit, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// Why a read loop ended.
#[derive(Debug)]
pub enum ReadEnd {
    /// A Close frame from the server (its code), or EOF (`None`).
    Closed(Option<u16>),
    /// I/O error.
    Io(io::Error),
    /// Broken framing.
    Frame(FrameError),
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Closed(None) => write!(f, "server closed the connection"),
            ReadEnd::Closed(Some(code)) => {
                write!(f, "server closed the connection (close code {code})")
            }
            ReadEnd::Io(e) => write!(f, "read: {e}"),
            ReadEnd::Frame(e) => write!(f, "framing: {e}"),
        }
    }
}

/// Delivers the next batch of messages to `on`: first any bytes left from
/// the handshake, otherwise one read. Answers pings. Returns how many bytes
/// were read.
pub async fn read_batch(
    sock: &Socket,
    rd: &mut Reader,
    on: &mut impl FnMut(Frame<'_>),
) -> Result<usize, ReadEnd> {
    let n = if rd.has_pending() {
        // Parse leftovers once; if they are a partial frame, read on.
        let before = rd.pending.len();
        rd.feed(&[], on).map_err(ReadEnd::Frame)?;
        if rd.pending.len() == before {
            read_into(sock, rd, on).await?
        } else {
            0
        }
    } else {
        read_into(sock, rd, on).await?
    };
    if let Some(p) = rd.pong.take() {
        let mut out = Vec::new();
        wire::put_frame(&mut out, OpCode::Pong, &p, sock.mask);
        sock.write_all(&out).await.map_err(ReadEnd::Io)?;
    }
    if let Some(code) = rd.closed {
        return Err(ReadEnd::Closed(Some(code)));
    }
    Ok(n)
}

/// One read fed through `rd`.
async fn read_into(
    sock: &Socket,
    rd: &mut Reader,
    on: &mut impl FnMut(Frame<'_>),
) -> Result<usize, ReadEnd> {
    let mut err = None;
    let n = sock
        .read_some(|b| {
            if let Err(e) = rd.feed(b, on) {
                err = Some(e);
            }
        })
        .await
        .map_err(ReadEnd::Io)?;
    if let Some(e) = err {
        return Err(ReadEnd::Frame(e));
    }
    if n == 0 {
        return Err(ReadEnd::Closed(None));
    }
    Ok(n)
}

/// An executor's registry of idle sockets to keep alive with heartbeats.
#[derive(Default)]
pub struct Heartbeats {
    /// Registered sockets; dead ones are dropped on each round.
    socks: RefCell<Vec<Weak<Socket>>>,
}

impl Heartbeats {
    /// Keeps `s` alive until it is dropped.
    pub fn add(&self, s: &Rc<Socket>) {
        self.socks.borrow_mut().push(Rc::downgrade(s));
    }

    /// Sends one heartbeat on every live socket, every `every`, forever
    /// (never with `None`: peers have no Phoenix heartbeat).
    pub async fn run(self: Rc<Self>, every: Option<Duration>) {
        let Some(every) = every else { return };
        let frames = [Vsn::V1, Vsn::V2].map(crate::phx::heartbeat);
        loop {
            glommio::timer::sleep(every).await;
            let live: Vec<Rc<Socket>> = {
                let mut v = self.socks.borrow_mut();
                v.retain(|w| w.strong_count() > 0);
                v.iter().filter_map(Weak::upgrade).collect()
            };
            for s in live {
                let msg = &frames[usize::from(s.vsn == Vsn::V2)];
                let _ = s.send(msg, false).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime::proto::ws::server_frame;

    fn collect(rd: &mut Reader, chunks: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut got = Vec::new();
        for c in chunks {
            rd.feed(c, &mut |f| match f {
                Frame::Text(t) => got.push((true, t.to_vec())),
                Frame::Binary(b) => got.push((false, b.to_vec())),
            })
            .unwrap();
        }
        got
    }

    #[test]
    fn frames_split_at_every_byte_boundary_reassemble() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&server_frame(OpCode::Text, b"hello"));
        stream.extend_from_slice(&server_frame(OpCode::Binary, &[4u8; 300]));
        stream.extend_from_slice(&server_frame(OpCode::Ping, b"p"));
        stream.extend_from_slice(&server_frame(OpCode::Text, b"bye"));
        for cut in 0..stream.len() {
            let mut rd = Reader::default();
            let got = collect(&mut rd, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0], (true, b"hello".to_vec()));
            assert_eq!(got[1], (false, vec![4u8; 300]));
            assert_eq!(got[2], (true, b"bye".to_vec()));
            assert_eq!(rd.pong.as_deref(), Some(&b"p"[..]));
            assert!(!rd.has_pending());
        }
    }

    #[test]
    fn fragments_and_close() {
        let mut rd = Reader::default();
        let mut s = vec![0x01, 3];
        s.extend_from_slice(b"abc");
        s.extend_from_slice(&[0x80, 2]);
        s.extend_from_slice(b"de");
        s.extend_from_slice(&server_frame(OpCode::Close, &[0x03, 0xe8]));
        let got = collect(&mut rd, &[&s]);
        assert_eq!(got, vec![(true, b"abcde".to_vec())]);
        assert_eq!(rd.closed, Some(1000));
    }

    #[test]
    fn source_addresses_cycle_over_loopback() {
        let mut ep = Endpoint {
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000),
            host: "h".into(),
            path: "/socket/websocket".into(),
            apikey: "k".into(),
            source_addrs: 0,
            phoenix: true,
            tenants: 0,
            tenant_prefix: "t".into(),
            spread: Vec::new(),
            spread_from: 0,
        };
        assert_eq!(ep.source_for(5), None);
        ep.source_addrs = 3;
        assert_eq!(ep.source_for(0), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ep.source_for(2), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(ep.source_for(3), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(ep.ws_path(Vsn::V2), "/socket/websocket?apikey=k&vsn=2.0.0");
    }

    #[test]
    fn connections_spread_round_robin_after_the_publishers() {
        let a = |p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p);
        let mut ep = Endpoint {
            addr: a(4000),
            host: "h".into(),
            path: "/".into(),
            apikey: "k".into(),
            source_addrs: 0,
            phoenix: true,
            tenants: 0,
            tenant_prefix: "t".into(),
            spread: vec![a(4000)],
            spread_from: 2,
        };
        assert_eq!(ep.addr_for(7), a(4000));
        ep.spread = vec![a(4000), a(4001), a(4002)];
        assert_eq!(ep.addr_for(0), a(4000));
        assert_eq!(ep.addr_for(1), a(4000));
        let subs: Vec<u16> = (2..8).map(|i| ep.addr_for(i).port()).collect();
        assert_eq!(subs, [4000, 4001, 4002, 4000, 4001, 4002]);
    }

    #[test]
    fn tenants_spread_connections_over_host_names() {
        let mut ep = Endpoint {
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000),
            host: "127.0.0.1:4000".into(),
            path: "/socket/websocket".into(),
            apikey: "k".into(),
            source_addrs: 0,
            phoenix: true,
            tenants: 0,
            tenant_prefix: "lg".into(),
            spread: Vec::new(),
            spread_from: 0,
        };
        assert_eq!(ep.host_for(7), "127.0.0.1:4000");
        ep.tenants = 3;
        assert_eq!(ep.host_for(0), "lg0.localhost");
        assert_eq!(ep.host_for(4), "lg1.localhost");
        assert_eq!(ep.host_for(5), "lg2.localhost");
    }
}
