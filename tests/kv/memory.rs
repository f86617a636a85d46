//! Memory per key, measured with a per-thread counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use rocinante::kv::Store;
use rocinante::kv::command::{Command, Op};
use rocinante::raft::Index;

/// Counts the bytes this thread has allocated and not freed, so the figure is not disturbed by
/// tests running on other threads.
struct CountingAlloc;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// The same, with each allocation rounded as glibc malloc does (8-byte header, 16-byte
    /// granularity, 32-byte minimum chunk): closer to what the process really pays.
    static LIVE_CHUNK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn chunk(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

fn track(size: usize, sign: isize) {
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + sign * size as isize));
    let _ = LIVE_CHUNK_BYTES.try_with(|c| c.set(c.get() + sign * chunk(size)));
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(layout.size(), -1);
        track(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn memory_per_key_is_under_twice_the_raw_size() {
    const KEYS: u64 = 20_000;
    let value = Bytes::from(vec![7u8; 128]);
    let live = || (LIVE_BYTES.with(Cell::get), LIVE_CHUNK_BYTES.with(Cell::get));
    let mut s = Store::default();
    // Random-ish key order, as clients write: the B-tree's nodes are then partly full.
    let entries: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("user/{:010}", i.wrapping_mul(2_654_435_761) % 1_000_000_007).into_bytes())
        .map(|k| {
            Command {
                leader_time_ms: 1,
                idempotency: None,
                op: Op::Put {
                    key: Bytes::from(k),
                    value: value.clone(),
                    if_revision: None,
                },
            }
            .encode()
        })
        .collect();
    let before = live();
    for (i, data) in entries.iter().enumerate() {
        s.apply(Index(i as u64 + 1), data);
    }
    let after = live();
    let raw: isize = s
        .list(b"", None, KEYS as usize)
        .items
        .iter()
        .map(|kv| kv.key.len() + kv.value.len())
        .sum::<usize>() as isize;
    let requested = (after.0 - before.0) as f64 / raw as f64;
    let chunked = (after.1 - before.1) as f64 / raw as f64;
    println!(
        "memory per key (15-byte key, 128-byte value): {requested:.2}x raw requested, {chunked:.2}x with malloc chunks"
    );
    assert_eq!(s.len() as u64, KEYS);
    assert!(chunked < 2.0, "{chunked:.2}x raw size");
}
