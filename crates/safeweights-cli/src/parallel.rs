//! Splitting work over tensors into pieces and running it on all cores.

use safeweights::analysis::granule_bytes;

use std::sync::Mutex;

use crate::exit::CliResult;
use crate::source::{Checkpoint, Entry};

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

/// How far ahead of the reading position [`ReadAhead`] asks for data:
/// about a tenth of a second of this machine's disk, many times the
/// kernel's own read-ahead window.
pub const AHEAD_BYTES: u64 = 128 << 20;

/// Keeps the disk busy while threads compute over a checkpoint's tensors.
///
/// With a cold page cache, a worker that reads a piece and then hashes or
/// summarises it leaves the disk idle while it computes, and the kernel's
/// read-ahead only covers the next few MiB of that one stream. Workers
/// report where they are about to read (`reached`), and the bytes up to
/// [`AHEAD_BYTES`] beyond, in the order the work is claimed, are asked
/// for without waiting (`posix_fadvise(WILLNEED)`), each byte once. A
/// warm file pays one cheap system call per piece.
pub struct ReadAhead<'a> {
    checkpoint: &'a Checkpoint,
    entries: &'a [Entry<'a>],
    /// Where each entry starts in the order of the work, in bytes.
    starts: Vec<u64>,
    /// The first byte not asked for yet: (entry, offset into it).
    next: Mutex<(usize, u64)>,
}

impl<'a> ReadAhead<'a> {
    /// Read-ahead over `entries`, read in this order.
    pub fn new(checkpoint: &'a Checkpoint, entries: &'a [Entry<'a>]) -> Self {
        let mut position = 0;
        let starts = entries
            .iter()
            .map(|e| {
                let start = position;
                position += e.info.end - e.info.begin;
                start
            })
            .collect();
        ReadAhead {
            checkpoint,
            entries,
            starts,
            next: Mutex::new((0, 0)),
        }
    }

    /// A worker is about to read entry `index` from `offset` bytes in.
    pub fn reached(&self, index: usize, offset: u64) {
        if self.checkpoint.is_remote() {
            return;
        }
        let Some(&start) = self.starts.get(index) else {
            return;
        };
        let target = start + offset + AHEAD_BYTES;
        // A worker that finds another one hinting goes back to its own
        // work: a hint can wait for room in the disk's queue, and the
        // other worker is asking for these bytes already.
        let Ok(mut next) = self.next.try_lock() else {
            return;
        };
        while let Some(&entry) = self.entries.get(next.0) {
            let at = self.starts[next.0] + next.1;
            if at >= target {
                break;
            }
            let len = entry.info.end - entry.info.begin;
            // At most a piece per call, so the first hints come soon.
            let step = (target - at).min(len - next.1).min(PIECE_BYTES);
            self.checkpoint.advise_will_need(entry, next.1, step);
            next.1 += step;
            if next.1 >= len {
                *next = (next.0 + 1, 0);
            }
        }
    }
}

pub use safeweights::pool::thread_count;

/// Runs `work(i)` for every `i < count` on the workspace's one thread pool
/// ([`safeweights::pool::run_indexed`]): results in index order, the first
/// error stops the rest, a panicking worker is an internal error (exit 3).
pub fn run_indexed<T: Send>(
    count: usize,
    threads: usize,
    work: impl Fn(usize) -> CliResult<T> + Sync,
) -> CliResult<Vec<T>> {
    safeweights::pool::run_indexed(count, threads, work)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{CliError, ErrorKind};

    #[test]
    fn a_panicking_worker_is_an_internal_error_with_exit_code_3() {
        let error = run_indexed(8, 2, |i| {
            assert!(i != 5, "broken worker");
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert_eq!(error.exit_code(), 3);
        assert!(error.message.contains("broken worker"), "{}", error.message);
    }

    #[test]
    fn command_errors_pass_through_the_pool_unchanged() {
        let error = run_indexed::<usize>(8, 2, |_| Err(CliError::usage("bad"))).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Usage);
    }
}
