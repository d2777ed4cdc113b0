//! Splitting large reads across threads.

use crate::error::Result;
use crate::pool::{run_grouped, threads_at_most};

/// Reads above this size are split so that both disk queues and memory
/// copies run on several cores.
const CHUNK_BYTES: usize = 16 << 20;

/// Below this total, thread start-up costs more than it saves.
const PARALLEL_THRESHOLD: usize = 32 << 20;

/// A destination buffer and the data-section offset it is read from.
pub(crate) struct Chunk<'b> {
    pub(crate) offset: u64,
    pub(crate) buffer: &'b mut [u8],
}

/// Fills every chunk with `read(offset, buffer)`, on several threads when
/// the total is large. Work is split into contiguous groups of about equal
/// byte counts, so each thread reads a sequential region.
pub(crate) fn read_chunks_parallel(
    chunks: Vec<Chunk<'_>>,
    read: &(dyn Fn(u64, &mut [u8]) -> Result<()> + Sync),
) -> Result<()> {
    let pieces = split_pieces(chunks);
    let total: usize = pieces.iter().map(|c| c.buffer.len()).sum();
    let threads = threads_at_most(8);
    if total < PARALLEL_THRESHOLD || threads < 2 {
        return pieces
            .into_iter()
            .try_for_each(|c| read(c.offset, c.buffer));
    }
    run_grouped(
        pieces,
        |c| c.buffer.len(),
        total,
        threads,
        |c| read(c.offset, c.buffer),
    )
}

fn split_pieces(chunks: Vec<Chunk<'_>>) -> Vec<Chunk<'_>> {
    let mut pieces = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let mut offset = chunk.offset;
        for buffer in chunk.buffer.chunks_mut(CHUNK_BYTES) {
            let len = buffer.len() as u64;
            pieces.push(Chunk { offset, buffer });
            offset += len;
        }
    }
    pieces
}
