//! Splitting work over tensors into pieces and running it on all cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use safeweights::analysis::granule_bytes;

use crate::exit::{CliError, CliResult};
use crate::source::Entry;

/// Bytes per piece of work: large enough to amortise scheduling, small
/// enough to balance threads and bound memory for remote reads.
pub const PIECE_BYTES: u64 = 16 << 20;

/// A byte range of one tensor.
#[derive(Debug, Clone, Copy)]
pub struct Piece {
    /// Index of the tensor in the caller's list.
    pub tensor: usize,
    /// Offset from the start of the tensor's bytes.
    pub offset: u64,
    /// Length in bytes (a whole number of elements).
    pub len: u64,
}

/// Cuts each tensor into pieces of about [`PIECE_BYTES`] that hold whole
/// elements; an empty tensor yields one empty piece.
pub fn split(entries: &[Entry<'_>]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for (tensor, entry) in entries.iter().enumerate() {
        let granule = granule_bytes(entry.info.dtype) as u64;
        let step = (PIECE_BYTES / granule).max(1) * granule;
        let total = entry.info.end - entry.info.begin;
        let mut offset = 0;
        loop {
            let len = step.min(total - offset);
            pieces.push(Piece {
                tensor,
                offset,
                len,
            });
            offset += len;
            if offset >= total {
                break;
            }
        }
    }
    pieces
}

/// Number of worker threads: `requested`, or every available core.
pub fn thread_count(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Runs `work(i)` for every `i < count` on `threads` threads and returns
/// the results in index order. The first error stops the remaining work.
pub fn run_indexed<T: Send>(
    count: usize,
    threads: usize,
    work: impl Fn(usize) -> CliResult<T> + Sync,
) -> CliResult<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<CliError>> = Mutex::new(None);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                return done;
            }
            match work(i) {
                Ok(value) => done.push((i, value)),
                Err(error) => {
                    next.store(count, Ordering::Relaxed);
                    if let Ok(mut slot) = failure.lock() {
                        slot.get_or_insert(error);
                    }
                    return done;
                }
            }
        }
    };
    let mut results: Vec<(usize, T)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(count).max(1))
            .map(|_| scope.spawn(worker))
            .collect();
        let mut all = Vec::with_capacity(count);
        for handle in handles {
            match handle.join() {
                Ok(done) => all.extend(done),
                Err(_) => return Err(CliError::usage("internal error: a worker thread panicked")),
            }
        }
        Ok(all)
    })?;
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, v)| v).collect())
}
