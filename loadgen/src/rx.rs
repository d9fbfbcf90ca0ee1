//! Epoll receivers: the read side of every long-lived subscriber.
//!
//! Connections are opened and joined on the glommio executors (plain async
//! code), then handed here: one receiver thread per loadgen core, pinned to
//! it, drains an edge-triggered epoll set into one scratch buffer.
//!
//! Why not glommio for the reads too: glommio arms an io_uring `POLL_ADD`
//! per read, and io_uring completes it with task work that *interrupts the
//! loadgen thread* (an IPI) from inside the server's `send` — on loopback
//! the sender runs the receiver's wake-up. Profiles of the server under a
//! 10k-subscriber broadcast put about a fifth of its CPU in that wake-up.
//! An epoll callback only queues the socket on the ready list and wakes
//! the receiver if it is asleep, so the server pays what a remote client
//! would cost it, and the receiver gets many ready sockets per syscall.

use std::io;
use std::os::unix::io::RawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use realtime::proto::phoenix::Vsn;
use realtime::proto::ws::OpCode;

use crate::cli::Target;
use crate::conn::{Frame, Reader};
use crate::peers::{self, Inbound};
use crate::phx::{self, Control};
use crate::procfs;
use crate::runner::{Shared, RUN, STOP};
use crate::scenario::{note_control_at, note_disconnect_at, ExecOut, Recorder};
use crate::sched::Schedule;
use crate::stats::{bump, now_ns, Counters};
use crate::wire::{self, Mask};

/// Bytes read per `recv`.
const SCRATCH_LEN: usize = 256 * 1024;
/// Events taken per `epoll_wait`.
const MAX_EVENTS: usize = 1024;
/// How long a receiver sleeps when nothing happens (to notice new
/// connections and the end of the run).
const IDLE_WAIT_MS: i32 = 10;

/// What the messages on a connection mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Broadcast subscriber: kind 4 or text broadcasts with a timestamp.
    Broadcast,
    /// Presence member: `presence_diff`s, replies to its presence pushes.
    Presence,
    /// Idle holder: only control messages.
    Hold,
    /// A comparison peer's connection: deliveries in that peer's protocol,
    /// NATS `PING`s answered.
    Peer(Target),
}

/// A set-up connection moving to a receiver.
#[derive(Debug)]
pub struct Handoff {
    /// The socket (still owned by the executor, which closes it after the
    /// receivers have stopped).
    pub fd: RawFd,
    /// Bytes already read but not parsed.
    pub rd: Reader,
    /// Its serializer.
    pub vsn: Vsn,
    /// Its masking key (for pongs).
    pub mask: Mask,
    /// How to read it.
    pub role: Role,
}

/// The receiver threads of a run.
pub struct Receivers {
    /// One sender per receiver.
    txs: Vec<Sender<Handoff>>,
    /// The threads.
    handles: Vec<JoinHandle<ExecOut>>,
}

impl Receivers {
    /// One receiver per core in `cores`; receiver `i` counts into
    /// `shared.counters[i]` and buckets latencies by `sched`.
    pub fn start(
        cores: &[usize],
        shared: &Arc<Shared>,
        sched: Option<Schedule>,
    ) -> io::Result<Receivers> {
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for (i, &cpu) in cores.iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            let shared = shared.clone();
            let sched = sched.clone();
            shared.rx_running.fetch_add(1, Ordering::AcqRel);
            let h = std::thread::Builder::new()
                .name(format!("loadgen-rx-{i}"))
                .spawn(move || {
                    procfs::pin_current_thread(&[cpu]);
                    let out = run(i, &shared, rx, sched);
                    shared.rx_running.fetch_sub(1, Ordering::AcqRel);
                    out
                })?;
            txs.push(tx);
            handles.push(h);
        }
        Ok(Receivers { txs, handles })
    }

    /// Every sender, in receiver order.
    pub fn senders(&self) -> Vec<Sender<Handoff>> {
        self.txs.clone()
    }

    /// Waits for the receivers (they stop with the run) and returns their
    /// histograms.
    pub fn join(self) -> Result<Vec<ExecOut>, String> {
        drop(self.txs);
        self.handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a receiver thread panicked".to_string())
            })
            .collect()
    }
}

/// One registered connection.
struct Slot {
    fd: RawFd,
    rd: Reader,
    /// Peer protocol state (a NATS message cut by a frame boundary).
    inbound: Inbound,
    vsn: Vsn,
    mask: Mask,
    role: Role,
}

/// Per-batch tallies, flushed to the atomics once per `epoll_wait`.
#[derive(Default)]
struct Tally {
    deliveries: u64,
    untimed: u64,
    acks: u64,
    bytes: u64,
    /// The connection being drained owes the NATS server a `PONG`.
    nats_pong: bool,
}

/// The receiver loop.
fn run(id: usize, shared: &Shared, rx: Receiver<Handoff>, sched: Option<Schedule>) -> ExecOut {
    let c = &shared.counters[id];
    let mut rec = Recorder::plain(sched);
    // SAFETY: epoll_create1 has no preconditions.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        shared
            .reasons
            .note(format!("epoll_create1: {}", io::Error::last_os_error()));
        return rec.take();
    }
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut scratch = vec![0u8; SCRATCH_LEN];
    loop {
        let phase = shared.phase();
        if phase == STOP {
            break;
        }
        if phase == RUN && rec.start_ns == 0 {
            rec.start_ns = shared.start_ns.load(Ordering::Acquire);
        }
        let mut t = Tally::default();
        while let Ok(h) = rx.try_recv() {
            let i = free.pop().unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            let mut slot = Slot {
                fd: h.fd,
                rd: h.rd,
                inbound: Inbound::default(),
                vsn: h.vsn,
                mask: h.mask,
                role: h.role,
            };
            // Frames read before the handoff.
            let now = now_ns();
            let meta = Meta {
                vsn: slot.vsn,
                role: slot.role,
            };
            let inbound = &mut slot.inbound;
            let ok = slot.rd.feed(&[], &mut |f| {
                on_frame(shared, c, &mut rec, &mut t, &meta, inbound, f, now)
            });
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            // SAFETY: ep and the fd are open; ev is a valid event.
            let added = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, slot.fd, &mut ev) };
            if ok.is_err() || added != 0 {
                note_disconnect_at(shared, c, "could not register for reading");
                free.push(i);
                continue;
            }
            slots[i] = Some(slot);
        }
        // SAFETY: events has MAX_EVENTS entries.
        let n =
            unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), MAX_EVENTS as i32, IDLE_WAIT_MS) };
        for ev in events.iter().take(n.max(0) as usize) {
            let i = ev.u64 as usize;
            let Some(slot) = slots.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if let Err(why) = drain(shared, c, &mut rec, &mut t, slot, &mut scratch) {
                // SAFETY: removing a registered fd; the executor still owns it.
                unsafe {
                    libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, slot.fd, std::ptr::null_mut());
                }
                note_disconnect_at(shared, c, why);
                slots[i] = None;
                free.push(i);
            }
        }
        bump(&c.deliveries, t.deliveries);
        bump(&c.untimed, t.untimed);
        bump(&c.acks, t.acks);
        bump(&c.bytes_in, t.bytes);
    }
    // SAFETY: closing our own epoll descriptor.
    unsafe { libc::close(ep) };
    rec.take()
}

/// What `on_frame` needs to know about a connection.
struct Meta {
    vsn: Vsn,
    role: Role,
}

/// Reads a ready socket until it would block.
fn drain(
    shared: &Shared,
    c: &Counters,
    rec: &mut Recorder,
    t: &mut Tally,
    slot: &mut Slot,
    scratch: &mut [u8],
) -> Result<(), String> {
    let meta = Meta {
        vsn: slot.vsn,
        role: slot.role,
    };
    loop {
        // SAFETY: scratch is a valid writable buffer of its length.
        let r = unsafe {
            libc::recv(
                slot.fd,
                scratch.as_mut_ptr() as *mut libc::c_void,
                scratch.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            let r = r as usize;
            t.bytes += r as u64;
            let now = now_ns();
            let inbound = &mut slot.inbound;
            slot.rd
                .feed(&scratch[..r], &mut |f| {
                    on_frame(shared, c, rec, t, &meta, inbound, f, now)
                })
                .map_err(|e| format!("framing: {e}"))?;
            let mut out = Vec::new();
            if let Some(p) = slot.rd.pong.take() {
                wire::put_frame(&mut out, OpCode::Pong, &p, slot.mask);
            }
            if std::mem::take(&mut t.nats_pong) {
                wire::put_frame(&mut out, OpCode::Binary, peers::NATS_PONG, slot.mask);
            }
            if !out.is_empty() {
                // SAFETY: sending from a valid buffer on an open socket;
                // a pong that does not fit is simply lost.
                unsafe {
                    libc::send(
                        slot.fd,
                        out.as_ptr() as *const libc::c_void,
                        out.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
            }
            if let Some(code) = slot.rd.closed {
                return Err(format!("server sent a close frame (code {code})"));
            }
            if r < scratch.len() {
                // A short read drained the socket; the next data is a new edge.
                return Ok(());
            }
        } else if r == 0 {
            return Err("server closed the connection".into());
        } else {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => Err(format!("read: {e}")),
            };
        }
    }
}

/// Handles one message according to the connection's role.
#[allow(clippy::too_many_arguments)]
fn on_frame(
    shared: &Shared,
    c: &Counters,
    rec: &mut Recorder,
    t: &mut Tally,
    m: &Meta,
    inbound: &mut Inbound,
    f: Frame<'_>,
    now: u64,
) {
    match (m.role, f) {
        (Role::Peer(target), f) => {
            let r = inbound.feed(target, f, &mut |e| match e {
                peers::Event::Delivery(p) => {
                    t.deliveries += 1;
                    match phx::find_ts(p) {
                        Some(ts) => rec.delivery(ts, now),
                        None => t.untimed += 1,
                    }
                }
                peers::Event::Ping => t.nats_pong = true,
                peers::Event::Error(why) => shared
                    .reasons
                    .note(format!("peer error: {}", String::from_utf8_lossy(why))),
                peers::Event::Confirmed => {}
            });
            if let Err(e) = r {
                shared.reasons.note(e);
            }
        }
        (Role::Broadcast, Frame::Binary(b)) => {
            if let Some(ts) = phx::kind4_ts(b) {
                t.deliveries += 1;
                if let Some(ts) = ts {
                    rec.delivery(ts, now);
                }
            }
        }
        (Role::Broadcast, Frame::Text(x)) => match phx::find_ts(x) {
            Some(ts) => {
                t.deliveries += 1;
                rec.delivery(ts, now);
            }
            None => control(shared, c, t, m.vsn, x, None),
        },
        (Role::Presence, Frame::Text(x)) => match phx::presence_diff_ts(x) {
            Some(Some(ts)) => {
                t.deliveries += 1;
                rec.delivery(ts, now);
            }
            Some(None) => {
                t.deliveries += 1;
                t.untimed += 1;
            }
            None => control(
                shared,
                c,
                t,
                m.vsn,
                x,
                Some(crate::scenario::presence::PRESENCE_REF),
            ),
        },
        (Role::Hold, Frame::Text(x)) => control(shared, c, t, m.vsn, x, None),
        (_, Frame::Binary(_)) => {}
    }
}

/// A control message: heartbeat replies are ignored, ok replies to
/// `ack_ref` are acks, trouble is counted.
fn control(
    shared: &Shared,
    c: &Counters,
    t: &mut Tally,
    vsn: Vsn,
    x: &[u8],
    ack_ref: Option<&str>,
) {
    match phx::control(vsn, x) {
        Control::Reply { topic, .. } if topic == "phoenix" => {}
        Control::Reply {
            msg_ref: Some(r),
            ok: true,
            ..
        } if Some(r.as_str()) == ack_ref => t.acks += 1,
        other => note_control_at(shared, c, &other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phx::{write_ts, TS_DIGITS};
    use realtime::proto::phoenix::{encode_user_broadcast, Encoding};
    use realtime::proto::ws::server_frame;

    /// A connected pair of stream sockets: (reader end, writer end).
    fn pair() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills the two-element array.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        (fds[0], fds[1])
    }

    fn write(fd: RawFd, b: &[u8]) {
        // SAFETY: writing a valid buffer to an open socket.
        let n = unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) };
        assert_eq!(n as usize, b.len());
    }

    fn slot(fd: RawFd, role: Role) -> Slot {
        Slot {
            fd,
            rd: Reader::default(),
            inbound: Inbound::default(),
            vsn: Vsn::V2,
            mask: Mask([1, 2, 3, 4]),
            role,
        }
    }

    #[test]
    fn broadcast_deliveries_are_timed_and_controls_counted() {
        let shared = Shared::new(1);
        let c = &shared.counters[0];
        let mut rec = Recorder::plain(None);
        let (r, w) = pair();
        let (payload, at) = phx::ts_payload(100);
        let mut p = payload.clone();
        let mut d = [0u8; TS_DIGITS];
        write_ts(&mut d, 1_000);
        p[at..at + TS_DIGITS].copy_from_slice(&d);
        let mut k4 = bytes::BytesMut::new();
        encode_user_broadcast(&mut k4, "realtime:t", "e", b"", Encoding::Json, &p).unwrap();
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(&server_frame(OpCode::Binary, &k4));
        }
        stream.extend_from_slice(&server_frame(
            OpCode::Text,
            br#"[null,"hb","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
        ));
        stream.extend_from_slice(&server_frame(
            OpCode::Text,
            br#"["1","1","realtime:t","phx_close",{}]"#,
        ));
        // Split mid-frame: the tail arrives in a second read.
        write(w, &stream[..stream.len() - 7]);
        let mut s = slot(r, Role::Broadcast);
        let mut t = Tally::default();
        let mut scratch = vec![0u8; 4096];
        // SAFETY: make the read end non-blocking so drain stops at EAGAIN.
        unsafe { libc::fcntl(r, libc::F_SETFL, libc::O_NONBLOCK) };
        drain(&shared, c, &mut rec, &mut t, &mut s, &mut scratch).unwrap();
        assert_eq!(t.deliveries, 3);
        assert_eq!(c.snapshot().channel_closed, 0);
        write(w, &stream[stream.len() - 7..]);
        drain(&shared, c, &mut rec, &mut t, &mut s, &mut scratch).unwrap();
        assert_eq!(c.snapshot().channel_closed, 1);
        let out = rec.take();
        assert_eq!(out.lat.len(), 3);
        // SAFETY: closing the writer end we own.
        unsafe { libc::close(w) };
        assert!(drain(&shared, c, &mut rec, &mut t, &mut s, &mut scratch).is_err());
        // SAFETY: closing the reader end we own.
        unsafe { libc::close(r) };
    }

    #[test]
    fn presence_diffs_and_acks() {
        let shared = Shared::new(1);
        let c = &shared.counters[0];
        let mut rec = Recorder::plain(None);
        let (r, w) = pair();
        let mut stream = Vec::new();
        stream.extend_from_slice(&server_frame(
            OpCode::Text,
            br#"[null,null,"realtime:p","presence_diff",{"joins":{"m1":{"metas":[{"phx_ref":"x","lg_t":"0000000000000500"}]}},"leaves":{}}]"#,
        ));
        stream.extend_from_slice(&server_frame(
            OpCode::Text,
            br#"[null,null,"realtime:p","presence_diff",{"joins":{},"leaves":{"m1":{"metas":[{"lg_t":"0000000000000500"}]}}}]"#,
        ));
        stream.extend_from_slice(&server_frame(
            OpCode::Text,
            br#"["1","p","realtime:p","phx_reply",{"response":{},"status":"ok"}]"#,
        ));
        write(w, &stream);
        // SAFETY: non-blocking read end.
        unsafe { libc::fcntl(r, libc::F_SETFL, libc::O_NONBLOCK) };
        let mut s = slot(r, Role::Presence);
        let mut t = Tally::default();
        let mut scratch = vec![0u8; 4096];
        drain(&shared, c, &mut rec, &mut t, &mut s, &mut scratch).unwrap();
        assert_eq!((t.deliveries, t.untimed, t.acks), (2, 1, 1));
        assert_eq!(rec.take().lat.len(), 1);
        // SAFETY: closing both ends we own.
        unsafe {
            libc::close(w);
            libc::close(r);
        }
    }
}
