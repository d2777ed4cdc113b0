//! Splitting work over tensors into pieces and running it on all cores.

use safeweights::analysis::granule_bytes;

use crate::exit::CliResult;

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
