//! An allocation counter around the server's allocator (jemalloc).
//!
//! Each bench binary installs [`CountingAlloc`] as its global allocator.
//! Counting is off by default, and while it is off the only extra work per
//! allocation is one relaxed load of a flag, so timed loops run at the speed
//! of plain jemalloc. [`count_allocs`] switches counting on around one
//! closure call (outside criterion's timed loops) to report allocations per
//! operation next to the timings.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tikv_jemallocator::Jemalloc;

/// Whether allocations are being counted right now.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations (including reallocations) while counting.
static NR_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by those allocations (a realloc counts its new size).
static NR_BYTES: AtomicU64 = AtomicU64::new(0);

/// jemalloc, with optional counting of allocations. Install it with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

impl CountingAlloc {
    #[inline]
    fn record(size: usize) {
        if COUNTING.load(Relaxed) {
            NR_ALLOCS.fetch_add(1, Relaxed);
            NR_BYTES.fetch_add(size as u64, Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to jemalloc, which upholds the
// `GlobalAlloc` contract; the counters have no effect on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { Jemalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::record(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { Jemalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::record(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { Jemalloc.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocStats {
    /// Number of allocations and reallocations.
    pub nr_allocs: u64,
    /// Bytes requested by them.
    pub nr_bytes: u64,
}

/// Runs `f` once with counting on and returns its result and the
/// allocations it made. Only meaningful in a binary whose global allocator
/// is [`CountingAlloc`] and while no other thread allocates (criterion is
/// idle between benchmarks, so call this outside its timed loops).
pub fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, AllocStats) {
    NR_ALLOCS.store(0, Relaxed);
    NR_BYTES.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let r = std::hint::black_box(f());
    COUNTING.store(false, Relaxed);
    let stats = AllocStats {
        nr_allocs: NR_ALLOCS.load(Relaxed),
        nr_bytes: NR_BYTES.load(Relaxed),
    };
    (r, stats)
}
