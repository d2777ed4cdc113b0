//! Chunked conversion of one tensor on every core, with bounded memory:
//! chunk N+1 is converted, split by whole units across threads, while a
//! writer thread writes chunk N. At most three output buffers exist at a
//! time, reused in turn, whatever the tensor's size.

use std::sync::mpsc;
use std::thread;

/// Output bytes per chunk (also the most input bytes per chunk): large
/// enough that thread start-up is noise, small enough to stay bounded.
const CHUNK_BYTES: usize = 8 << 20;

/// The smallest piece a conversion can be split at (one quantization block,
/// or one element of a plain type), in input and in output bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unit {
    pub input: usize,
    pub output: usize,
}

/// Converts `input`, whole units, chunk by chunk with `convert(offset,
/// part, out)` (`offset`: the part's first byte within `input`; `out`: the
/// part's output, exactly its size) on every core, and hands each chunk's
/// output, in order, to `sink` on a writer thread. Returns the bytes
/// written, or the first error (the earliest in `input` among those of a
/// chunk).
pub(super) fn convert_chunked<E: Send>(
    input: &[u8],
    unit: Unit,
    convert: impl Fn(usize, &[u8], &mut [u8]) -> Result<(), E> + Sync,
    mut sink: impl FnMut(&[u8]) -> Result<(), E> + Send,
) -> Result<u64, E> {
    let unit = Unit {
        input: unit.input.max(1),
        output: unit.output.max(1),
    };
    let chunk_units = (CHUNK_BYTES / unit.input.max(unit.output)).max(1);
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    thread::scope(|scope| {
        let io = scope.spawn(move || -> Result<u64, E> {
            let mut written = 0;
            for buf in full_rx {
                sink(&buf)?;
                written += buf.len() as u64;
                // The converter may be done already; then the buffer is freed.
                empty_tx.send(buf).ok();
            }
            Ok(written)
        });
        let mut converted = Ok(());
        let chunks = input.chunks(chunk_units * unit.input);
        for (i, chunk) in chunks.enumerate() {
            let mut buf = empty_rx.try_recv().unwrap_or_default();
            buf.resize(chunk.len() / unit.input * unit.output, 0);
            let offset = i * chunk_units * unit.input;
            if let Err(e) = on_threads(threads, offset, chunk, &mut buf, unit, &convert) {
                converted = Err(e);
                break;
            }
            if full_tx.send(buf).is_err() {
                break; // The writer stopped on an error, returned below.
            }
        }
        drop(full_tx);
        let written = io
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        converted.map(|()| written)
    })
}

/// Splits one chunk into `threads` parts of whole units, converts the first
/// on this thread and the others on their own, and returns the earliest
/// part's error.
fn on_threads<E: Send>(
    threads: usize,
    offset: usize,
    chunk: &[u8],
    out: &mut [u8],
    unit: Unit,
    convert: &(impl Fn(usize, &[u8], &mut [u8]) -> Result<(), E> + Sync),
) -> Result<(), E> {
    let units = chunk.len() / unit.input;
    let per_part = units.div_ceil(threads.max(1)).max(1);
    if threads <= 1 || units < 2 {
        return convert(offset, chunk, out);
    }
    let mut parts = chunk
        .chunks(per_part * unit.input)
        .zip(out.chunks_mut(per_part * unit.output))
        .enumerate()
        .map(|(k, (part, out))| (offset + k * per_part * unit.input, part, out));
    thread::scope(|scope| {
        let first = parts.next();
        let others: Vec<_> = parts
            .map(|(at, part, out)| scope.spawn(move || convert(at, part, out)))
            .collect();
        let mut result = first.map_or(Ok(()), |(at, part, out)| convert(at, part, out));
        for handle in others {
            let done = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if result.is_ok() {
                result = done;
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_arrives_in_order_and_whole() {
        let input: Vec<u8> = (0..(3 * CHUNK_BYTES + 100) as u32)
            .map(|i| i as u8)
            .collect();
        let mut got = Vec::new();
        let unit = Unit {
            input: 2,
            output: 1,
        };
        let written = convert_chunked(
            &input,
            unit,
            |_, part: &[u8], out: &mut [u8]| {
                for (o, pair) in out.iter_mut().zip(part.chunks_exact(2)) {
                    *o = pair[0] ^ pair[1];
                }
                Ok::<_, ()>(())
            },
            |buf| {
                got.extend_from_slice(buf);
                Ok(())
            },
        )
        .unwrap();
        let want: Vec<u8> = input.chunks_exact(2).map(|p| p[0] ^ p[1]).collect();
        assert_eq!(written, want.len() as u64);
        assert_eq!(got, want);
    }

    #[test]
    fn the_earliest_error_wins_and_names_its_offset() {
        let input = vec![0u8; 2 * CHUNK_BYTES];
        let unit = Unit {
            input: 1,
            output: 1,
        };
        let bad = CHUNK_BYTES + 5;
        let result = convert_chunked(
            &input,
            unit,
            // Every part from the bad byte on fails; the earliest must win.
            |at, part: &[u8], _: &mut [u8]| match at + part.len() > bad {
                true => Err(at.max(bad)),
                false => Ok(()),
            },
            |_| Ok(()),
        );
        assert_eq!(result, Err(bad));
    }

    #[test]
    fn a_writer_error_stops_the_conversion() {
        let input = vec![0u8; 4 * CHUNK_BYTES];
        let unit = Unit {
            input: 1,
            output: 1,
        };
        let result = convert_chunked(&input, unit, |_, _, _| Ok(()), |_| Err("disk full"));
        assert_eq!(result, Err("disk full"));
    }
}
