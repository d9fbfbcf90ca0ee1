//! `nats-client --client async-nats`: the shape a server would take with
//! async-nats. Each node gets one thread running a tokio current-thread
//! runtime with its async-nats client; its shards talk to that thread over
//! bounded crossbeam queues, one per direction:
//!
//! ```text
//! shard-pub --queue--> tokio-pub --TCP--> nats-server --TCP--> tokio-sub --queue--> shard-sub
//! ```
//!
//! A side that drains a queue sleeps in its own runtime when the queue is
//! empty, on a [`Doorbell`]: it raises a "parked" flag, looks at the queue
//! once more, and only then waits for a byte on a socket pair that its
//! runtime polls (glommio's io_uring, tokio's epoll). The filling side,
//! after each hand-over, pays a fence and a load, and writes that byte only
//! when it finds the flag raised. So a busy consumer costs no system call
//! and a sleeping one exactly one; neither side spins. A full queue is
//! retried after [`BACKOFF`] (counted: with `--queue` above `--window` it
//! never happens).

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use futures_lite::{AsyncReadExt, StreamExt};

use super::nats_client::{
    executor, phase_of, publish_side, receive_side, Inbound, Outbound, Phase, Shared, Sides,
    BACKOFF,
};
use crate::cli::NatsClientArgs;

/// Wakes the thread that drains a queue when it sleeps (see the module).
struct Doorbell {
    /// Raised by the consumer just before its last look at an empty queue.
    parked: AtomicBool,
    /// The producer's end of the socket pair (non-blocking).
    ring: StdUnixStream,
    /// The run's counters (`rings`).
    shared: Arc<Shared>,
}

impl Doorbell {
    /// A doorbell and the end its consumer reads.
    fn new(shared: &Arc<Shared>) -> Result<(Arc<Doorbell>, StdUnixStream), String> {
        let (ring, hear) = StdUnixStream::pair().map_err(|e| e.to_string())?;
        ring.set_nonblocking(true).map_err(|e| e.to_string())?;
        hear.set_nonblocking(true).map_err(|e| e.to_string())?;
        let door = Doorbell {
            parked: AtomicBool::new(false),
            ring,
            shared: shared.clone(),
        };
        Ok((Arc::new(door), hear))
    }

    /// After a hand-over: wakes the consumer if it is parked. A full
    /// socket buffer already holds a wake-up, so a failed write is fine.
    fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::Relaxed) {
            self.shared.rings.fetch_add(1, Ordering::Relaxed);
            let _ = (&self.ring).write(&[1]);
        }
    }

    /// Raises the flag; true when the consumer must really wait (`empty`
    /// still holds after it).
    fn park(&self, empty: impl Fn() -> bool) -> bool {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        empty()
    }

    fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }
}

/// The publishing shard's half: messages go into the queue to tokio-pub.
struct ToTokio {
    queue: Sender<Bytes>,
    door: Arc<Doorbell>,
}

impl Outbound for ToTokio {
    async fn send(&mut self, mut payload: Bytes) -> Result<(), String> {
        loop {
            match self.queue.try_send(payload) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(p)) => {
                    self.door.shared.queue_full.fetch_add(1, Ordering::Relaxed);
                    self.door.ring();
                    glommio::timer::sleep(BACKOFF).await;
                    payload = p;
                }
                Err(TrySendError::Disconnected(_)) => return Err("tokio-pub has gone".into()),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        self.door.ring();
        Ok(())
    }
}

/// The receiving shard's half: messages come from tokio-sub's queue.
struct FromTokio {
    queue: Receiver<Bytes>,
    door: Arc<Doorbell>,
    /// The consumer's end of the doorbell, in glommio's reactor.
    hear: glommio::net::UnixStream,
}

impl Inbound for FromTokio {
    async fn next(&mut self) -> Result<Bytes, String> {
        loop {
            match self.queue.try_recv() {
                Ok(p) => return Ok(p),
                Err(TryRecvError::Disconnected) => return Err("tokio-sub has gone".into()),
                Err(TryRecvError::Empty) => {
                    if self.door.park(|| self.queue.is_empty()) {
                        let mut buf = [0u8; 64];
                        let _ = self.hear.read(&mut buf).await;
                    }
                    self.door.unpark();
                }
            }
        }
    }
}

/// tokio-pub's sleep on an empty queue.
async fn tokio_wait(door: &Doorbell, hear: &tokio::net::UnixStream, empty: impl Fn() -> bool) {
    if door.park(empty) {
        let mut buf = [0u8; 64];
        loop {
            if hear.readable().await.is_err() {
                break;
            }
            match hear.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                _ => break,
            }
        }
    }
    door.unpark();
}

/// A current-thread runtime on a thread of its own running `body`;
/// errors go to the run's error slot.
fn tokio_thread<F, Fut>(
    name: &str,
    shared: &Arc<Shared>,
    body: F,
) -> Result<std::thread::JoinHandle<()>, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (shared, label) = (shared.clone(), name.to_string());
    std::thread::Builder::new()
        .name(format!("lg-{name}"))
        .spawn(move || {
            shared.register_thread(&label);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt.block_on(body()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                shared.fail(format!("{label}: {e}"));
            }
        })
        .map_err(|e| e.to_string())
}

/// Connects an async-nats client named `name`, counting its slow-consumer
/// events.
async fn connect(
    addr: SocketAddr,
    name: &str,
    shared: &Arc<Shared>,
) -> Result<async_nats::Client, String> {
    let shared = shared.clone();
    async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |e| {
            let shared = shared.clone();
            async move {
                if let async_nats::Event::SlowConsumer(_) = e {
                    shared.slow_consumer.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .connect(format!("nats://{addr}"))
        .await
        .map_err(|e| e.to_string())
}

/// Starts tokio-pub, tokio-sub and the two executors.
pub fn start(a: &NatsClientArgs, sh: &Arc<Shared>, nats_pid: Option<u32>) -> Result<Sides, String> {
    let addr = SocketAddr::V4(a.nats);
    let subject = async_nats::Subject::from(a.subject.as_str());

    // tokio-sub -> shard-sub.
    let (in_tx, in_rx) = crossbeam_channel::bounded::<Bytes>(a.queue);
    let (in_door, in_hear) = Doorbell::new(sh)?;
    let (door, sh2, subj) = (in_door.clone(), sh.clone(), subject.clone());
    let tokio_sub = tokio_thread("tokio-sub", sh, move || async move {
        let client = connect(addr, "lg-sub", &sh2).await?;
        let mut sub = client.subscribe(subj).await.map_err(|e| e.to_string())?;
        while let Some(m) = sub.next().await {
            let stop = phase_of(&m.payload) == Some(Phase::Stop);
            let mut p = m.payload;
            loop {
                match in_tx.try_send(p) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        sh2.queue_full.fetch_add(1, Ordering::Relaxed);
                        door.ring();
                        tokio::time::sleep(BACKOFF).await;
                        p = back;
                    }
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
            door.ring();
            if stop {
                return Ok(());
            }
        }
        Err("the subscription ended".into())
    })?;

    // shard-pub -> tokio-pub.
    let (out_tx, out_rx) = crossbeam_channel::bounded::<Bytes>(a.queue);
    let (out_door, out_hear) = Doorbell::new(sh)?;
    let (door, sh2) = (out_door.clone(), sh.clone());
    let tokio_pub = tokio_thread("tokio-pub", sh, move || async move {
        let hear = tokio::net::UnixStream::from_std(out_hear).map_err(|e| e.to_string())?;
        let client = connect(addr, "lg-pub", &sh2).await?;
        loop {
            match out_rx.try_recv() {
                Ok(p) => {
                    let stop = phase_of(&p) == Some(Phase::Stop);
                    let sent = client.publish(subject.clone(), p).await;
                    sent.map_err(|e| e.to_string())?;
                    if stop {
                        return client.flush().await.map_err(|e| e.to_string());
                    }
                }
                Err(TryRecvError::Empty) => tokio_wait(&door, &hear, || out_rx.is_empty()).await,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
    })?;

    let sh2 = sh.clone();
    let rx = executor("lg-shard-sub")
        .spawn(move || async move {
            sh2.register_thread("shard-sub");
            // SAFETY: an open socket whose ownership moves here.
            let hear = unsafe { glommio::net::UnixStream::from_raw_fd(in_hear.into_raw_fd()) };
            let mut inb = FromTokio {
                queue: in_rx,
                door: in_door,
                hear,
            };
            receive_side(&mut inb, &sh2)
                .await
                .inspect_err(|e| sh2.fail(format!("receiver: {e}")))
        })
        .map_err(|e| e.to_string())?;
    let (sh2, a2) = (sh.clone(), a.clone());
    let tx = executor("lg-shard-pub")
        .spawn(move || async move {
            sh2.register_thread("shard-pub");
            let mut out = ToTokio {
                queue: out_tx,
                door: out_door,
            };
            publish_side(&mut out, &a2, &sh2, nats_pid)
                .await
                .inspect_err(|e| sh2.fail(format!("publisher: {e}")))
        })
        .map_err(|e| e.to_string())?;
    Ok(Sides {
        tx,
        rx,
        others: vec![tokio_sub, tokio_pub],
    })
}
