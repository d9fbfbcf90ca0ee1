//! The executor pool: one glommio executor per shard, pinned to a core, plus
//! what shards share: tenant-to-shard routing, the cross-shard mesh and the
//! per-shard counters.
//!
//! # Layout
//!
//! - [`home_shard`]: the stable hash that decides which shard owns a tenant.
//! - [`PoolBuilder`]: starts the executors and hands each a [`Shard`] handle.
//! - [`Shard`]: this executor's id, its senders to every other shard, its
//!   receivers, and the shared [`ShardStats`] table.
//! - [`outbox::Outbox`]: ordered, bounded, never-waiting queues to the
//!   other shards on top of the mesh.
//! - [`ShardStats`]: monotonic counters and gauges each shard writes only for
//!   itself (relaxed atomics, so `/metrics` on any shard can read them all).

pub mod outbox;

use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{CpuSet, LocalExecutorBuilder, Placement};

/// Which shard owns `tenant` when there are `nr_shards` shards.
///
/// FNV-1a over the tenant id: stable across runs and builds, so logs and
/// benchmarks can predict placement (std's `DefaultHasher` makes no such
/// promise).
pub fn home_shard(tenant: &str, nr_shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % nr_shards.max(1) as u64) as usize
}

/// Counters one shard keeps about itself. Each shard writes only its own row,
/// so relaxed ordering is enough and there is no contention.
///
/// The rows sit side by side in one slice, so each is aligned (and thereby
/// padded) to 128 bytes: two cache lines, because x86's adjacent-line
/// prefetcher pulls lines in pairs. Unpadded, rows of under 128 bytes straddle lines
/// and every increment on one core would evict its neighbour's row from the
/// other core's cache (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    /// Open WebSocket connections (gauge).
    pub connections: AtomicI64,
    /// Joined channels (gauge).
    pub channels: AtomicI64,
    /// Successful joins since start.
    pub joins: AtomicU64,
    /// Client messages received (WebSocket data frames).
    pub messages_in: AtomicU64,
    /// Frames queued to sockets.
    pub messages_out: AtomicU64,
    /// Bytes read from WebSockets.
    pub bytes_in: AtomicU64,
    /// Bytes written to WebSockets.
    pub bytes_out: AtomicU64,
    /// Sockets disconnected because their outbound queue overflowed.
    pub queue_drops: AtomicU64,
    /// Messages forwarded to other shards (one per target shard).
    pub forwards_out: AtomicU64,
    /// Forwarded messages dropped: the queue to their shard was full.
    pub forward_drops: AtomicU64,
    /// Sockets closed because forwarded messages of their topic were
    /// dropped on the way here.
    pub forward_gap_closes: AtomicU64,
    /// Sockets handed to this shard by another one.
    pub handoffs_in: AtomicU64,
    /// 1 while this shard's NATS connection is up (a cluster node).
    pub nats_up: AtomicI64,
    /// Messages published to the other nodes.
    pub nats_out: AtomicU64,
    /// Messages of other nodes delivered here.
    pub nats_in: AtomicU64,
    /// Messages for the other nodes dropped: NATS down, or too many
    /// waiting for it.
    pub nats_drops: AtomicU64,
    /// Messages from NATS that were not valid archives.
    pub nats_invalid: AtomicU64,
    /// Other nodes' shards this shard hears (heartbeats within
    /// `NODE_TIMEOUT_MS`): the cluster as this shard sees it (gauge).
    pub nats_peers: AtomicI64,
    /// REST requests served.
    pub http_requests: AtomicU64,
    /// Failed `accept` calls (descriptor limit and the like).
    pub accept_failures: AtomicU64,
    /// Panics caught at a WebSocket connection's boundary.
    pub panics_connection: AtomicU64,
    /// Panics caught at a REST request's boundary.
    pub panics_request: AtomicU64,
    /// Panics caught at a replication stream session's boundary.
    pub panics_stream: AtomicU64,
    /// Tenants with live state on this shard (gauge).
    pub tenants_active: AtomicI64,
    /// Tasks working for tenants' databases on this shard (gauge).
    pub tenant_tasks: AtomicI64,
    /// Tenant records read from the control database.
    pub tenant_lookups: AtomicU64,
    /// Private-channel policy checks asked (joins, token refreshes, first
    /// broadcasts and tracks, REST private messages).
    pub rls_checks: AtomicU64,
    /// Policy checks run on a tenant database (asks sharing one counted once).
    pub rls_queries: AtomicU64,
    /// Round trips those ran in (checks sent together counted once).
    pub rls_round_trips: AtomicU64,
    /// Rows of `realtime.messages` broadcast (Broadcast from Database).
    pub db_broadcasts: AtomicU64,
    /// Rows of `realtime.messages` dropped (`UnableToBroadcastChanges`).
    pub db_broadcast_drops: AtomicU64,
}

impl ShardStats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Moves a gauge by `delta`.
    #[inline]
    pub fn gauge(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Handle a shard's code gets: who it is and how to reach the others.
pub struct Shard<M: Send + 'static> {
    /// This shard's index, `0..nr_shards`.
    pub id: usize,
    /// How many shards run.
    pub nr_shards: usize,
    /// Every shard's counters, indexed by shard id.
    pub stats: Arc<[ShardStats]>,
    /// Senders to every shard (none to ourselves); `None` with a single shard.
    senders: Option<Senders<M>>,
    /// Receivers from every other shard, taken once by [`Shard::take_receivers`].
    receivers: Option<Receivers<M>>,
}

impl<M: Send + 'static> Shard<M> {
    /// This shard's own counters.
    pub fn my_stats(&self) -> &ShardStats {
        &self.stats[self.id]
    }

    /// Queues `msg` to shard `to` if its queue has room, without waiting.
    /// Gives the message back with whether that shard has gone away
    /// (`true`) or its queue is full (`false`).
    pub fn try_send_to(&self, to: usize, msg: M) -> Result<(), (M, bool)> {
        debug_assert_ne!(to, self.id, "a shard handles its own work directly");
        match &self.senders {
            Some(s) => s.try_send_to(to, msg).map_err(|e| match e {
                glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m)) => (m, false),
                glommio::GlommioError::Closed(glommio::ResourceType::Channel(m)) => (m, true),
                other => panic!("unexpected mesh error: {other}"),
            }),
            None => Err((msg, true)),
        }
    }

    /// Sends `msg` to shard `to`, waiting while its queue is full.
    /// Returns the message back if that shard has gone away.
    pub async fn send_to(&self, to: usize, msg: M) -> Result<(), M> {
        debug_assert_ne!(to, self.id, "a shard handles its own work directly");
        match &self.senders {
            Some(s) => s.send_to(to, msg).await.map_err(|e| match e {
                glommio::GlommioError::Closed(glommio::ResourceType::Channel(m)) => m,
                glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m)) => m,
                other => panic!("unexpected mesh error: {other}"),
            }),
            None => Err(msg),
        }
    }

    /// Takes the per-peer receivers (once); each yields messages from one shard.
    pub fn take_receivers(
        &mut self,
    ) -> Vec<glommio::channels::shared_channel::ConnectedReceiver<M>> {
        match self.receivers.as_mut() {
            Some(r) => r.streams().into_iter().map(|(_, r)| r).collect(),
            None => Vec::new(),
        }
    }
}

/// The cores shards may be pinned to, ascending: the online cores this
/// process is allowed to run on (`taskset`, cgroup cpusets). Shard `i` goes to
/// the `i`-th of these (round robin), so `taskset -c 0` with one shard really
/// runs it on core 0. Empty if neither set can be read (shards then float).
pub fn pinnable_cpus() -> Vec<usize> {
    let online: Vec<usize> = CpuSet::online()
        .map(|s| s.into_iter().map(|l| l.cpu).collect())
        .unwrap_or_default();
    pick_cpus(online, process_affinity())
}

/// Sorts and dedups `online`, keeping only the cores in `allowed` when that
/// is known. If the two sets do not meet (a stale topology view), the allowed
/// set wins: pinning outside the affinity mask would fail anyway.
fn pick_cpus(mut online: Vec<usize>, allowed: Option<Vec<usize>>) -> Vec<usize> {
    online.sort_unstable();
    online.dedup();
    let Some(mut allowed) = allowed else {
        return online;
    };
    allowed.sort_unstable();
    let both: Vec<usize> = online
        .iter()
        .copied()
        .filter(|c| allowed.binary_search(c).is_ok())
        .collect();
    if both.is_empty() {
        allowed
    } else {
        both
    }
}

/// The cores in this process's affinity mask (`sched_getaffinity(0)`), or
/// `None` if the call fails.
fn process_affinity() -> Option<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain bits, so all-zero is a valid value; the
    // kernel writes at most `size_of::<cpu_set_t>()` bytes into it, and
    // CPU_ISSET only reads it, bounded by CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        (!cpus.is_empty()).then_some(cpus)
    }
}

/// Starts the shard executors.
pub struct PoolBuilder {
    nr_shards: usize,
    pin: bool,
    io_memory: usize,
    mesh_capacity: usize,
}

impl PoolBuilder {
    /// A pool of `nr_shards` executors, pinned one per core in ascending order
    /// of the cores this process may use ([`pinnable_cpus`]; round robin when
    /// there are more shards than cores).
    pub fn new(nr_shards: usize) -> Self {
        Self {
            nr_shards: nr_shards.max(1),
            pin: true,
            io_memory: 2 << 20,
            mesh_capacity: 1024,
        }
    }

    /// Whether executors are pinned to cores (default true).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Locked memory each executor registers for io_uring buffers.
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = bytes;
        self
    }

    /// Slots in each shard-to-shard queue.
    pub fn mesh_capacity(mut self, n: usize) -> Self {
        self.mesh_capacity = n;
        self
    }

    /// Runs `main` on every shard and waits for all of them to return.
    pub fn run<M, F, Fut>(self, main: F) -> std::io::Result<()>
    where
        M: Send + 'static,
        F: Fn(Shard<M>) -> Fut + Send + Clone + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let nr = self.nr_shards;
        let stats: Arc<[ShardStats]> = (0..nr).map(|_| ShardStats::default()).collect();
        let mesh = (nr > 1).then(|| MeshBuilder::<M, _>::full(nr, self.mesh_capacity));
        let cpus = pinnable_cpus();
        let mut handles = Vec::with_capacity(nr);
        for id in 0..nr {
            let placement = match (self.pin, cpus.is_empty()) {
                (true, false) => Placement::Fixed(cpus[id % cpus.len()]),
                _ => Placement::Unbound,
            };
            let main = main.clone();
            let stats = stats.clone();
            let mesh = mesh.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{id}"))
                .io_memory(self.io_memory)
                .preempt_timer(Duration::from_millis(50))
                .spawn(move || async move {
                    let (senders, receivers) = match mesh {
                        Some(m) => {
                            let (s, r) = join_awake(m).await;
                            (Some(s), Some(r))
                        }
                        None => (None, None),
                    };
                    // The mesh numbers peers in join order; routing uses that order.
                    let id = senders.as_ref().map_or(0, |s| s.peer_id());
                    main(Shard {
                        id,
                        nr_shards: nr,
                        stats,
                        senders,
                        receivers,
                    })
                    .await
                })
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            handles.push(handle);
        }
        for h in handles {
            h.join().map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

/// Joins the mesh, keeping this executor awake until it has.
///
/// A channel's `connect` waits for its peer's with a waker that only this
/// executor's reactor wakes, on its next turn: the peer connecting does
/// not wake it. An executor that went to sleep in the meantime (nothing
/// else to do at startup) slept for good, and the process never served:
/// seen with four shards on two busy cores. A timer every millisecond
/// until the join is done gives the reactor its turns.
async fn join_awake<M: Send + 'static>(mesh: MeshBuilder<M, Full>) -> (Senders<M>, Receivers<M>) {
    let joined = Rc::new(std::cell::Cell::new(false));
    let done = joined.clone();
    let ticker = glommio::spawn_local(async move {
        while !done.get() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    });
    let r = mesh.join().await.expect("joining the shard mesh");
    joined.set(true);
    ticker.await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_rows_share_no_cache_line() {
        let stats: Arc<[ShardStats]> = (0..4).map(|_| ShardStats::default()).collect();
        for pair in stats.windows(2) {
            let a = &pair[0] as *const ShardStats as usize;
            let b = &pair[1] as *const ShardStats as usize;
            assert_eq!(a % 128, 0, "row not on a 128-byte boundary");
            assert!(
                b - a >= 128,
                "rows {a:#x} and {b:#x} share a cache-line pair"
            );
        }
    }

    #[test]
    fn home_shard_is_stable_and_in_range() {
        assert_eq!(home_shard("realtime-dev", 1), 0);
        for n in 1..9 {
            for t in ["a", "b", "realtime-dev", "tenant-42"] {
                let s = home_shard(t, n);
                assert!(s < n);
                assert_eq!(s, home_shard(t, n));
            }
        }
        // FNV-1a of "a" is a published test vector.
        assert_eq!(
            home_shard("a", usize::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % usize::MAX as u64) as usize
        );
    }

    #[test]
    fn pinning_order_is_sorted_and_respects_affinity() {
        // glommio's online set is unordered; shard 0 must land on the lowest core.
        assert_eq!(pick_cpus(vec![3, 1, 0, 2], None), vec![0, 1, 2, 3]);
        // `taskset -c 0`: only core 0 is allowed.
        assert_eq!(pick_cpus(vec![1, 0], Some(vec![0])), vec![0]);
        assert_eq!(pick_cpus(vec![2, 0, 1, 3], Some(vec![3, 1])), vec![1, 3]);
        // Disjoint views: trust the affinity mask.
        assert_eq!(pick_cpus(vec![0], Some(vec![5])), vec![5]);
        // The live answer is a sorted subset of this process's mask.
        let live = pinnable_cpus();
        assert!(live.windows(2).all(|w| w[0] < w[1]));
        if let Some(mask) = process_affinity() {
            assert!(live.iter().all(|c| mask.contains(c)));
        }
    }

    #[test]
    fn mesh_delivers_between_shards() {
        use std::sync::atomic::AtomicUsize;
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        PoolBuilder::new(2)
            .pin(false)
            .run(move |mut shard: Shard<u32>| {
                let g = g.clone();
                async move {
                    let mut rx = shard.take_receivers();
                    let other = 1 - shard.id;
                    shard.send_to(other, 7 + shard.id as u32).await.unwrap();
                    let v = rx.remove(0).recv().await.unwrap();
                    assert_eq!(v, 7 + other as u32);
                    g.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 2);
    }
}
