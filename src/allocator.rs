//! A global allocator that counts the bytes the process holds, so that `meshsim run`
//! can stop a run that passes its memory budget cleanly (exit 2, a message, nothing
//! written) instead of aborting inside an allocation. The binary installs it
//! (`src/main.rs`); the engine and the model never see it: the CLI reads `held`
//! between two events, at the run's progress pauses.
//!
//! One relaxed atomic add or subtract per allocation: the count is a gauge read now and
//! then, never a synchronisation point, so no ordering is needed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting.
pub struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

/// Bytes allocated and not yet freed, by every thread (0 when `Counting` is not the
/// global allocator: tests and library users).
pub fn held() -> u64 {
    HELD.load(Relaxed) as u64
}

// SAFETY: every call is forwarded to `System` with the same arguments; the counter is
// a side effect that never touches the memory.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (the caller's contract).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Relaxed);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                HELD.fetch_add(new_size - layout.size(), Relaxed);
            } else {
                HELD.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}
