//! A global allocator that counts allocations per thread, for the zero-allocation tests
//! (included by path from the test files of several crates).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

static ALL: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts (per thread).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        ALL.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        ALL.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made so far on the calling thread.
pub fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

/// Allocations (and reallocations) made so far on every thread of the process (for work
/// that runs on rayon's threads; meaningful in a test binary with a single test).
#[allow(dead_code)]
pub fn all_allocs() -> usize {
    ALL.load(Ordering::Relaxed)
}
