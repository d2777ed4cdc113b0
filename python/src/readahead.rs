//! Reading a mapped file into memory with several reads in flight.
//!
//! A tensor of a private file map is read by page faults as it is touched:
//! one fault, and at most one read-ahead window, at a time. From a cold page
//! cache that leaves the disk idle between requests. Here worker threads
//! each ask the kernel to read and map a chunk (`MADV_POPULATE_READ`), so
//! that several requests are always queued, as the fastest streaming
//! loaders do with parallel `pread`s; the tensors stay zero-copy views of
//! the map, so from a warm cache this only replaces the page faults.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::storage::Backing;

/// Bytes each worker asks for at a time.
const CHUNK: usize = 8 << 20;

/// Reads in flight: the disk, not the CPU, is what is waited for, so even
/// a 2-core machine gets 8.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(8, |n| n.get().clamp(8, 16))
}

/// Bytes of memory the kernel says it can give without swapping
/// (`MemAvailable`), or `None` where that is not known.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether reading `len` bytes ahead is sure to fit: at most half of the
/// available memory, so a model larger than memory is left to page faults
/// (reading it all first would only evict its own beginning).
pub fn fits_in_memory(len: u64) -> bool {
    available_memory().is_some_and(|available| len <= available / 2)
}

/// Reads bytes `[offset, offset + len)` of `backing` into the page cache
/// and maps them, with parallel requests. Does nothing for memory that is
/// not a file map. Only a hint: a refused advice (an old kernel) changes
/// nothing but speed, and a read error shows when the bytes are touched.
pub fn populate(backing: &Backing, offset: usize, len: usize) {
    let Backing::Map(map) = backing else {
        return;
    };
    let end = offset.saturating_add(len).min(map.len());
    if offset >= end || resident(map, offset, end - offset) {
        return;
    }
    let chunks = (end - offset).div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= chunks {
            return;
        }
        let start = offset + i * CHUNK;
        let len = CHUNK.min(end - start);
        // A partly warm file: only the chunks not in memory are read.
        if !resident(map, start, len) {
            advise(map, start, len);
        }
    };
    let workers = workers().min(chunks);
    std::thread::scope(|scope| {
        for _ in 1..workers {
            scope.spawn(work);
        }
        work();
    });
}

/// Asks the kernel to start reading bytes `[offset, offset + len)` of
/// `backing` into the page cache, without waiting (`MADV_WILLNEED`);
/// nothing for memory that is not a file map, or that is in memory
/// already. Only a hint, as [`populate`].
pub fn hint(backing: &Backing, offset: usize, len: usize) {
    let Backing::Map(map) = backing else {
        return;
    };
    let end = offset.saturating_add(len).min(map.len());
    if offset >= end || resident(map, offset, end - offset) {
        return;
    }
    let _ = map.advise_range(memmap2::Advice::WillNeed, offset, end - offset);
}

/// Pages apart that [`resident`] looks at: one per MiB.
const SAMPLE_STRIDE: usize = 1 << 20;

/// Whether `[start, start + len)` of `map` is in memory already, judged
/// by `mincore` on one page per [`SAMPLE_STRIDE`] and the last page: a
/// warm load then keeps its cheaper page faults, and the hints, which walk
/// the page cache even when it holds everything, are skipped. Sampled
/// because `mincore` looks up every page it is given (about 70 ns each
/// here: 18 ms for 1 GiB, as long as the reference's whole warm load); a
/// page the samples miss is read by its page fault, as without hints.
#[cfg(target_os = "linux")]
fn resident(map: &memmap2::MmapMut, start: usize, len: usize) -> bool {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let base = map.as_ptr() as usize;
    let end = base + start + len;
    // A map starts on a page boundary, so rounding down stays inside it.
    let first = (base + start) & !(page - 1);
    let last = (end - 1) & !(page - 1);
    (first..last)
        .step_by(SAMPLE_STRIDE)
        .chain(std::iter::once(last))
        .all(|at| page_resident(at, page))
}

/// `mincore` of the one page at `at`.
#[cfg(target_os = "linux")]
fn page_resident(at: usize, page: usize) -> bool {
    let mut status = 0u8;
    // SAFETY: `at` is the page-aligned start of a page inside the mapping
    // (the caller clamps ranges to its length), and `status` has room for
    // the one byte `mincore` writes for one page.
    let result = unsafe { libc::mincore(at as *mut libc::c_void, page, &mut status) };
    result == 0 && status & 1 == 1
}

#[cfg(not(target_os = "linux"))]
fn resident(_: &memmap2::MmapMut, _: usize, _: usize) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn advise(map: &memmap2::MmapMut, start: usize, len: usize) {
    // Hints, see `populate`. The first queues the chunk's reads without
    // waiting for them (a page fault asks for one read-ahead window at a
    // time), the second waits for them and maps the pages.
    let _ = map.advise_range(memmap2::Advice::WillNeed, start, len);
    let _ = map.advise_range(memmap2::Advice::PopulateRead, start, len);
}

#[cfg(not(target_os = "linux"))]
fn advise(map: &memmap2::MmapMut, start: usize, len: usize) {
    let _ = map.advise_range(memmap2::Advice::WillNeed, start, len);
}
