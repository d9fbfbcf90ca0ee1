//! A client socket's I/O: the stream its tasks share, reads, the request
//! head loop, and the two ways it is written. Every other driver module
//! goes through this one; it knows none of them.
//!
//! # Who writes a socket when
//!
//! A socket has one writer at a time, fixed by its phase:
//!
//! 1. **Before an upgrade** (request heads, REST answers, the 101 or a
//!    refusal) the task serving the socket writes, with
//!    [`SharedStream::write_all`]. No write queue exists yet.
//! 2. **Once upgraded**, from the moment its write queue (`outq::OutQueue`)
//!    is created right after the 101, only that queue writes: the shard's
//!    flusher with [`SharedStream::send_gathered`], or, while the kernel
//!    buffer is full, the queue's drain task with
//!    [`SharedStream::poll_write`]. The queue's listing says which of the
//!    two owns it, so they never write at once. The session task then only
//!    reads; everything it has to say (pongs, replies, the close frame)
//!    goes through the queue.
//!
//! When the flusher hands a blocked queue to its drain task, the frame the
//! kernel took only part of is finished by the drain task from the offset
//! the queue tracks, so frames reach the wire whole and in order. The
//! queue's `kill` shuts the socket down both ways, so a read still
//! pending on it sees EOF.
//!
//! Reads belong to the task serving the socket in either phase. The stream
//! sits in a `RefCell` and is borrowed only within a single poll or system
//! call, never across an await, so the reader and the writers never meet
//! a held borrow.

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::deadline::within;
use crate::config::Config;
use crate::proto::http;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 4096;
/// Longest wait for any single read of a request head or body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffers gathered per `sendmsg`.
pub const MAX_IOV: usize = 64;
/// Bytes gathered per `sendmsg` (a single larger buffer still goes whole).
pub const MAX_SEND: usize = 256 * 1024;

thread_local! {
    /// Per-shard read scratch. Reads land here first and only the bytes
    /// read are copied into the socket's own buffer, so a socket waiting
    /// for data owns no read buffer at all.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// A client socket shared by the task serving it and, once upgraded, its
/// write queue (see the module docs for who writes when).
#[derive(Clone)]
pub struct SharedStream(Rc<RefCell<TcpStream>>);

impl SharedStream {
    /// Shares `stream` as it is.
    pub fn new(stream: TcpStream) -> Self {
        Self(Rc::new(RefCell::new(stream)))
    }

    /// Shares a socket about to send a request head: each read is bounded
    /// (the head as a whole is also bounded, see [`SharedStream::read_head`]).
    pub fn accepted(stream: TcpStream) -> Self {
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        Self::new(stream)
    }

    /// Drops the per-read timeout: an upgraded socket's silence is timed by
    /// the shard's idle sweep instead, which costs no reactor timer per socket.
    pub fn clear_read_timeout(&self) {
        let _ = self.0.borrow().set_read_timeout(None);
    }

    /// The socket's descriptor, open for as long as this stream lives.
    pub fn fd(&self) -> RawFd {
        self.0.borrow().as_raw_fd()
    }

    /// Reads at most `READ_CHUNK` more bytes into `buf`; 0 means EOF.
    pub async fn read_some(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        poll_fn(|cx| self.poll_read_some(cx, buf)).await
    }

    /// One poll of [`SharedStream::read_some`].
    pub fn poll_read_some(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut s = self.0.borrow_mut();
            let r = Pin::new(&mut *s).poll_read(cx, &mut scratch[..]);
            if let Poll::Ready(Ok(n)) = r {
                buf.extend_from_slice(&scratch[..n]);
            }
            r
        })
    }

    /// Writes all of `data`: phase 1 only (see the module docs).
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_write(cx, data)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Writes a prefix of `data` now, or waits until the kernel takes some.
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, data)
    }

    /// One non-blocking vectored send of the leading `bufs`, at most
    /// [`MAX_IOV`] of them and [`MAX_SEND`] bytes (unless the first alone is
    /// larger), straight from their memory. Returns (bytes sent, bytes
    /// offered): fewer sent than offered means the kernel buffer is full.
    pub fn send_gathered<'a>(
        &self,
        bufs: impl IntoIterator<Item = &'a [u8]>,
    ) -> std::io::Result<(usize, usize)> {
        // Left uninitialised: zeroing 1 KiB of iovecs per send would cost
        // more than the usual single frame it describes.
        let mut iov = [const { std::mem::MaybeUninit::<libc::iovec>::uninit() }; MAX_IOV];
        let mut n = 0;
        let mut offered = 0;
        for b in bufs {
            if n == MAX_IOV || (n > 0 && offered + b.len() > MAX_SEND) {
                break;
            }
            iov[n].write(libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            });
            offered += b.len();
            n += 1;
        }
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr().cast::<libc::iovec>();
        msg.msg_iovlen = n as _;
        // The shared borrow keeps the descriptor in use for the call.
        let s = self.0.borrow();
        // SAFETY: the first `n` iovecs were written above (MaybeUninit<T>
        // has T's layout) and point into buffers borrowed for this call;
        // the descriptor is held open by `s`.
        let r =
            unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok((r as usize, offered))
        }
    }

    /// Shuts the socket down both ways: the peer sees EOF and so does a
    /// read pending here. The descriptor stays open until the last clone
    /// of the stream goes.
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on a descriptor this stream keeps open.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_RDWR) };
    }

    /// Reads one request head into `buf` and returns it, `buf` then holding
    /// only the bytes after it. `None` when the socket is done: closed, or
    /// answered with an error (400 malformed, 431 too large, 408 too slow).
    ///
    /// The whole head must arrive within `request_head_timeout_ms` of the
    /// call, however steadily it trickles in (slowloris); the per-read
    /// timeout alone would let one byte every few seconds hold the socket
    /// for ever. A client that never completed its request line is closed
    /// without an answer, as Cowboy does.
    pub async fn read_head(
        &self,
        config: &Config,
        buf: &mut BytesMut,
    ) -> Option<http::RequestHead> {
        enum Outcome {
            Head(http::RequestHead),
            Refused(u16),
            Gone,
            Late,
        }
        let read = async {
            // Bytes already parsed without success, once a parse has run.
            let mut scanned: Option<usize> = None;
            loop {
                // A head can only complete with a line end: parsing again
                // only when one arrived keeps a byte-at-a-time head linear.
                let due = scanned.is_none_or(|n| buf[n..].contains(&b'\n'))
                    || buf.len() >= http::MAX_HEAD_BYTES;
                if due {
                    match http::parse_head(buf) {
                        Ok(Some(h)) => return Outcome::Head(h),
                        Ok(None) => {}
                        Err(e) => return Outcome::Refused(e.status()),
                    }
                }
                scanned = Some(buf.len());
                match self.read_some(buf).await {
                    Ok(0) | Err(_) => return Outcome::Gone,
                    Ok(_) => {}
                }
            }
        };
        let limit = Duration::from_millis(config.request_head_timeout_ms);
        let status = match within(limit, read).await.unwrap_or(Outcome::Late) {
            Outcome::Head(head) => {
                let _ = buf.split_to(head.head_len);
                let too_long = head
                    .headers
                    .iter()
                    .any(|(_, v)| v.len() > config.max_header_length);
                if !too_long {
                    return Some(head);
                }
                // Cowboy's max_header_value_length (MAX_HEADER_LENGTH).
                431
            }
            Outcome::Refused(status) => status,
            Outcome::Gone => return None,
            Outcome::Late if http::request_line_received(buf) => 408,
            Outcome::Late => return None,
        };
        let _ = self
            .write_all(&http::response(status, None, &[], b""))
            .await;
        None
    }
}
