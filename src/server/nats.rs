//! One connection to nats-server, driven on a shard's executor over the
//! sans-io codec in [`crate::proto::nats`]: the transport between the
//! nodes of a cluster (see `cluster`).
//!
//! Writes are buffered and sent by [`NatsConn::flush`]; reads come from
//! [`NatsConn::next`], which answers the server's keep-alive `PING`s
//! itself and counts the answers to its own ([`NatsConn::ping`]), so the
//! caller can tell a server that stopped answering from a quiet one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::deadline::within;
use crate::proto::nats::{self, Decoder, Msg, NatsError, ServerOp, WriteError};

/// Why a connection failed. Every error but [`NatsConnError::Write`]
/// leaves it unusable.
#[derive(Debug, thiserror::Error)]
pub enum NatsConnError {
    #[error("nats: {0}")]
    Io(#[from] std::io::Error),
    #[error("nats: {0}")]
    Protocol(#[from] NatsError),
    #[error("nats-server refused: {0}")]
    Refused(String),
    #[error("nats: no answer to {0} in time")]
    Timeout(&'static str),
    #[error("nats-server closed the connection")]
    Closed,
    #[error("nats: {0}")]
    Write(#[from] WriteError),
    #[error("nats: payload of {len} bytes is over the server's max_payload of {max}")]
    TooLarge { len: usize, max: usize },
}

/// A connection past its handshake.
pub struct NatsConn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    timeout: Duration,
    /// Our `PING`s not answered yet.
    pings_out: u32,
    /// `PONG`s read since the handshake's.
    pongs: u64,
    /// Messages read while waiting for a `PONG`, not yet taken.
    pending: VecDeque<Msg>,
    /// The server's `server_id`, from its `INFO`.
    pub server_id: String,
}

const READ_CHUNK: usize = 64 * 1024;

impl NatsConn {
    /// Connects to `addr` as client `name` and completes the handshake
    /// (`INFO`, `CONNECT`, and a `PING` answered), all within `timeout`,
    /// which also bounds every later [`flush`](Self::flush).
    pub async fn connect(
        addr: SocketAddr,
        name: &str,
        timeout: Duration,
    ) -> Result<NatsConn, NatsConnError> {
        within(timeout, Self::open(addr, name, timeout))
            .await
            .unwrap_or(Err(NatsConnError::Timeout("the handshake")))
    }

    async fn open(
        addr: SocketAddr,
        name: &str,
        timeout: Duration,
    ) -> Result<NatsConn, NatsConnError> {
        let stream = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut conn = NatsConn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
            decoder: Decoder::default(),
            timeout,
            pings_out: 0,
            pongs: 0,
            pending: VecDeque::new(),
            server_id: String::new(),
        };
        match conn.read_op().await? {
            ServerOp::Info(info) => conn.take_info(&info),
            _ => {
                return Err(NatsError::Malformed {
                    op: "INFO",
                    why: "the server did not start with INFO",
                }
                .into())
            }
        }
        let options = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "headers": true,
            "no_responders": true,
            "name": name,
            "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1,
        });
        nats::write_connect(&mut conn.wbuf, &options.to_string());
        conn.flush().await?;
        loop {
            match conn.read_op().await? {
                ServerOp::Pong => return Ok(conn),
                ServerOp::Ping => nats::write_pong(&mut conn.wbuf),
                ServerOp::Err(e) => return Err(NatsConnError::Refused(e)),
                ServerOp::Info(info) => conn.take_info(&info),
                ServerOp::Ok | ServerOp::Msg(_) => {}
            }
        }
    }

    /// Reads what the server's `INFO` says that matters here.
    fn take_info(&mut self, info: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Info {
            #[serde(default)]
            server_id: String,
            max_payload: Option<usize>,
        }
        if let Ok(i) = serde_json::from_slice::<Info>(info) {
            self.server_id = i.server_id;
            if let Some(m) = i.max_payload {
                self.decoder.max_payload = m;
            }
        }
    }

    /// The largest payload the server takes.
    pub fn max_payload(&self) -> usize {
        self.decoder.max_payload
    }

    /// Queues a message to `subject` (replies to `reply`, if any).
    pub fn publish(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), NatsConnError> {
        if payload.len() > self.max_payload() {
            return Err(NatsConnError::TooLarge {
                len: payload.len(),
                max: self.max_payload(),
            });
        }
        Ok(nats::write_pub(&mut self.wbuf, subject, reply, payload)?)
    }

    /// Queues a subscription to `subject` under id `sid` (in `queue`, if
    /// given: one member of the group gets each message).
    pub fn subscribe(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: u64,
    ) -> Result<(), NatsConnError> {
        Ok(nats::write_sub(&mut self.wbuf, subject, queue, sid)?)
    }

    /// Queues the end of subscription `sid`.
    pub fn unsubscribe(&mut self, sid: u64) {
        nats::write_unsub(&mut self.wbuf, sid);
    }

    /// Queues a `PING`; [`pings_out`](Self::pings_out) counts it until
    /// its `PONG` is read.
    pub fn ping(&mut self) {
        nats::write_ping(&mut self.wbuf);
        self.pings_out += 1;
    }

    /// Our `PING`s the server has not answered yet.
    pub fn pings_out(&self) -> u32 {
        self.pings_out
    }

    /// `PONG`s read since the handshake: the server has taken in
    /// everything written before the `PING` of each.
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    /// Queues operations already written with [`crate::proto::nats`]'s
    /// writers, to go with the next [`flush`](Self::flush). A `PING`
    /// among them is counted in [`pongs`](Self::pongs) when answered, not
    /// in [`pings_out`](Self::pings_out).
    pub fn queue_written(&mut self, ops: &[u8]) {
        self.wbuf.extend_from_slice(ops);
    }

    /// The next message, or `None` when a `PONG` was read (see
    /// [`pongs`](Self::pongs)). The server's `PING`s are answered in the
    /// write buffer without sending: for a caller that flushes on its own
    /// schedule and may drop this future while it waits (it is
    /// cancel-safe: nothing read is lost and nothing is half written).
    pub async fn next_unflushed(&mut self) -> Result<Option<Msg>, NatsConnError> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            match self.read_op().await? {
                ServerOp::Msg(m) => return Ok(Some(m)),
                ServerOp::Ping => nats::write_pong(&mut self.wbuf),
                ServerOp::Pong => {
                    self.take_op(ServerOp::Pong)?;
                    return Ok(None);
                }
                op => self.take_op(op)?,
            }
        }
    }

    /// Whether a `PONG` is owed to the server.
    pub fn has_queued(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Sends everything queued, within the connection's timeout.
    pub async fn flush(&mut self) -> Result<(), NatsConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let (stream, buf) = (&mut self.stream, &self.wbuf);
        within(self.timeout, async {
            stream.write_all(buf).await?;
            stream.flush().await
        })
        .await
        .ok_or(NatsConnError::Timeout("a write"))??;
        self.wbuf.clear();
        Ok(())
    }

    /// Sends a `PING` and waits, within the connection's timeout, for its
    /// `PONG`: everything queued before it (subscriptions included) is in
    /// effect at the server when this returns. Messages read meanwhile
    /// are kept for [`next`](Self::next).
    pub async fn round_trip(&mut self) -> Result<(), NatsConnError> {
        self.ping();
        self.flush().await?;
        let answered = self.pings_out - 1;
        let timeout = self.timeout;
        within(timeout, async {
            while self.pings_out > answered {
                self.read_one().await?;
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(NatsConnError::Timeout("a ping")))
    }

    /// The next message of any subscription. Waits as long as it takes
    /// (a subscription may be quiet for hours): a caller that must know
    /// the server is alive pings and watches [`pings_out`](Self::pings_out).
    /// Cancel-safe while it waits for bytes: what was read stays buffered.
    pub async fn next(&mut self) -> Result<Msg, NatsConnError> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(m);
            }
            self.read_one().await?;
        }
    }

    /// Reads and handles one operation of the server's.
    async fn read_one(&mut self) -> Result<(), NatsConnError> {
        match self.read_op().await? {
            ServerOp::Msg(m) => self.pending.push_back(m),
            ServerOp::Ping => {
                nats::write_pong(&mut self.wbuf);
                self.flush().await?;
            }
            op => self.take_op(op)?,
        }
        Ok(())
    }

    /// Handles an operation other than a message or a server's `PING`.
    fn take_op(&mut self, op: ServerOp) -> Result<(), NatsConnError> {
        match op {
            ServerOp::Pong => {
                self.pings_out = self.pings_out.saturating_sub(1);
                self.pongs += 1;
            }
            ServerOp::Err(e) => return Err(NatsConnError::Refused(e)),
            ServerOp::Info(info) => self.take_info(&info),
            ServerOp::Ok | ServerOp::Ping | ServerOp::Msg(_) => {}
        }
        Ok(())
    }

    async fn read_op(&mut self) -> Result<ServerOp, NatsConnError> {
        loop {
            if let Some(op) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(op);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(NatsConnError::Closed);
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
}
