//! One remote object read by byte ranges: coalesced, parallel, bounded.

use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::error::{Error, Result};
use crate::remote::config::{locate, Located, RemoteOptions};
use crate::remote::errors::{classify, is_not_partial, is_range_not_satisfiable};
use crate::remote::runtime::block_on;

/// Requests made and body bytes received, shared by every object of one
/// checkpoint (for `--json` reports and progress bars).
#[derive(Debug, Default)]
pub struct RemoteStats {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl RemoteStats {
    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn count(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A remote object of known length.
pub struct RemoteObject {
    url: String,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    len: u64,
    e_tag: Option<String>,
    options: Arc<RemoteOptions>,
    stats: Arc<RemoteStats>,
    /// The whole object, downloaded once when the server ignores Range.
    download: OnceLock<File>,
}

impl std::fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteObject")
            .field("url", &self.url)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// One request of a coalesced read: the byte range it fetches.
type Request = Range<u64>;

/// A request and the destinations it fills: `(offset, buffer)`, sorted.
type RequestPieces<'a> = (Request, Vec<(u64, &'a mut [u8])>);

impl RemoteObject {
    /// Opens `url` with one request for its first `options.first_read`
    /// bytes, which are returned with the object.
    pub fn open(
        url: &str,
        options: Arc<RemoteOptions>,
        stats: Arc<RemoteStats>,
    ) -> Result<(Self, Bytes)> {
        let Located { store, path } = locate(url, &options)?;
        Self::open_in(url.to_owned(), store, path, options, stats)
    }

    /// Opens another object of the same store (a shard beside its index).
    pub fn sibling(&self, name: &str) -> Result<(Self, Bytes)> {
        let base = self.url.rsplit_once('/').map_or("", |(base, _)| base);
        let url = format!("{base}/{name}");
        let mut parts: Vec<_> = self.path.parts().collect();
        parts.pop();
        let mut path: ObjectPath = parts.into_iter().collect();
        for part in name.split('/') {
            path = path.child(part);
        }
        Self::open_in(
            url,
            Arc::clone(&self.store),
            path,
            Arc::clone(&self.options),
            Arc::clone(&self.stats),
        )
    }

    fn open_in(
        url: String,
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        options: Arc<RemoteOptions>,
        stats: Arc<RemoteStats>,
    ) -> Result<(Self, Bytes)> {
        let first = options.first_read.max(1);
        let request = GetOptions {
            range: Some(GetRange::Bounded(0..first)),
            ..GetOptions::default()
        };
        let outcome = block_on(async {
            let result = store.get_opts(&path, request).await?;
            let meta = result.meta.clone();
            let bytes = result.bytes().await?;
            Ok::<_, object_store::Error>((meta, bytes))
        });
        let mut object = RemoteObject {
            url,
            store,
            path,
            len: 0,
            e_tag: None,
            options,
            stats,
            download: OnceLock::new(),
        };
        match outcome {
            Ok((meta, bytes)) => {
                object.stats.count(bytes.len() as u64);
                object.len = meta.size;
                object.e_tag = meta.e_tag;
                Ok((object, bytes))
            }
            Err(error) if is_not_partial(&error) => {
                object.stats.count(0);
                object.fall_back_to_download()?;
                let head = object.read_vec(0, first.min(object.len))?;
                Ok((object, Bytes::from(head)))
            }
            Err(error) if is_range_not_satisfiable(&error) => {
                object.stats.count(0);
                Ok((object, Bytes::new()))
            }
            Err(error) => Err(classify(error).in_file(&object.url)),
        }
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Length of the object in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Requests and bytes so far (shared with sibling objects).
    pub fn stats(&self) -> &Arc<RemoteStats> {
        &self.stats
    }

    /// Whether the server ignored Range and the object was downloaded.
    pub fn downloaded_whole(&self) -> bool {
        self.download.get().is_some()
    }

    /// Reads `len` bytes at `offset` into a new buffer.
    pub fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let len =
            usize::try_from(len).map_err(|_| Error::Io(std::io::ErrorKind::OutOfMemory.into()))?;
        let mut buffer = crate::read::try_zeroed(len)?;
        self.read_into(&mut [(offset, &mut buffer[..])])?;
        Ok(buffer)
    }

    /// Fills every `(offset, buffer)` with the object's bytes there. Nearby
    /// ranges are merged, long ones split, and at most
    /// `max_in_flight` requests run at once.
    pub fn read_into(&self, targets: &mut [(u64, &mut [u8])]) -> Result<()> {
        for (offset, buffer) in targets.iter() {
            let end = offset.checked_add(buffer.len() as u64);
            if end.is_none_or(|end| end > self.len) {
                return Err(truncated(&self.url));
            }
        }
        if let Some(file) = self.download.get() {
            return targets
                .iter_mut()
                .try_for_each(|(offset, buffer)| read_exact_at(file, buffer, *offset))
                .map_err(|e| Error::Io(e).in_file(&self.url));
        }
        targets.sort_by_key(|(offset, _)| *offset);
        let total: u64 = targets.iter().map(|(_, b)| b.len() as u64).sum();
        let requests = plan_requests(
            targets.iter().map(|(o, b)| *o..*o + b.len() as u64),
            self.options.coalesce_gap,
            request_size_for(total, &self.options),
        );
        let pieces = split_by_request(targets, requests);
        let outcome = block_on(async {
            futures::stream::iter(pieces)
                .map(|(range, destinations)| self.fetch_into(range, destinations))
                .buffer_unordered(self.options.max_in_flight.max(1))
                .try_for_each(|()| futures::future::ready(Ok(())))
                .await
        });
        outcome.map_err(|e| e.in_file(&self.url))
    }

    /// Fetches `range` and copies each piece of the body, as it arrives,
    /// straight into the destinations that want it (sorted, within the
    /// range): the body is never gathered into a buffer of its own, so
    /// every byte is copied once, from the connection's buffer to its
    /// place.
    async fn fetch_into(
        &self,
        range: Request,
        mut destinations: Vec<(u64, &mut [u8])>,
    ) -> Result<()> {
        let request = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match: self.e_tag.clone(),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.path, request)
            .await
            .map_err(classify)?;
        self.stats.count(0);
        let mut stream = result.into_stream();
        let mut at = range.start;
        while let Some(chunk) = stream.try_next().await.map_err(classify)? {
            let end = at + chunk.len() as u64;
            if end > range.end {
                return Err(truncated(&self.url));
            }
            copy_into(&mut destinations, at, &chunk);
            self.stats
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            at = end;
        }
        if at != range.end {
            return Err(truncated(&self.url));
        }
        Ok(())
    }

    /// Streams the whole object through `sink` in order, in the pieces the
    /// server sends, with one request.
    pub fn stream(&self, mut sink: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if let Some(file) = self.download.get() {
            let mut offset = 0;
            let mut buffer = vec![0u8; 1 << 20];
            while offset < self.len {
                let n = (self.len - offset).min(buffer.len() as u64) as usize;
                read_exact_at(file, &mut buffer[..n], offset)
                    .map_err(|e| Error::Io(e).in_file(&self.url))?;
                sink(&buffer[..n])?;
                offset += n as u64;
            }
            return Ok(());
        }
        let request = GetOptions {
            if_match: self.e_tag.clone(),
            ..GetOptions::default()
        };
        let outcome = block_on(async {
            let result = self
                .store
                .get_opts(&self.path, request)
                .await
                .map_err(classify)?;
            self.stats.count(0);
            let mut stream = result.into_stream();
            let mut received = 0u64;
            while let Some(chunk) = stream.try_next().await.map_err(classify)? {
                received += chunk.len() as u64;
                self.stats
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                sink(&chunk)?;
            }
            if received != self.len {
                return Err(truncated(&self.url));
            }
            Ok(())
        });
        outcome.map_err(|e| e.in_file(&self.url))
    }

    /// The server sent the whole object for a Range request: download it
    /// once into an unnamed temporary file, and read from that.
    fn fall_back_to_download(&mut self) -> Result<()> {
        (self.options.warn)(&format!(
            "{}: the server does not support HTTP Range requests; downloading the whole file once",
            self.url
        ));
        let mut file = tempfile::tempfile().map_err(|e| Error::Io(e).in_file(&self.url))?;
        let (store, path) = (Arc::clone(&self.store), self.path.clone());
        let stats = Arc::clone(&self.stats);
        let len = block_on(async {
            let result = store.get(&path).await.map_err(classify)?;
            stats.count(0);
            let mut stream = result.into_stream();
            let mut len = 0u64;
            while let Some(chunk) = stream.try_next().await.map_err(classify)? {
                std::io::Write::write_all(&mut file, &chunk).map_err(Error::Io)?;
                stats.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                len += chunk.len() as u64;
            }
            Ok::<_, Error>(len)
        })
        .map_err(|e| e.in_file(&self.url))?;
        self.len = len;
        // Set once, here, before the object is shared.
        let _unused = self.download.set(file);
        Ok(())
    }
}

/// Merges ranges closer than `gap` and splits the result into requests
/// of at most `max` bytes. `ranges` must be sorted by start.
pub(crate) fn plan_requests(
    ranges: impl Iterator<Item = Range<u64>>,
    gap: u64,
    max: u64,
) -> Vec<Request> {
    let mut merged: Vec<Range<u64>> = Vec::new();
    for range in ranges.filter(|r| r.start < r.end) {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(range.end);
            }
            _ => merged.push(range),
        }
    }
    let max = max.max(1);
    let mut requests = Vec::with_capacity(merged.len());
    for range in merged {
        let mut start = range.start;
        while start < range.end {
            let end = range.end.min(start + max);
            requests.push(start..end);
            start = end;
        }
    }
    requests
}

/// The largest request for a read of `total` bytes: `request_size`, or
/// for a long read (a whole model) `total / max_in_flight`, up to
/// [`MAX_REQUEST`], so that a long read still keeps every slot busy but
/// makes few requests. Each request costs a round trip before its first
/// byte (and a fee on S3); some servers (moto) even copy the whole object
/// for every ranged GET. Memory does not grow with it: bodies stream
/// straight into their destinations.
fn request_size_for(total: u64, options: &RemoteOptions) -> u64 {
    let floor = options.request_size.max(1);
    let spread = total.div_ceil(options.max_in_flight.max(1) as u64);
    spread.clamp(floor, floor.max(MAX_REQUEST))
}

/// Largest request a long read is split into.
const MAX_REQUEST: u64 = 64 << 20;

/// Cuts the sorted `targets` at the requests' boundaries: each request
/// gets the pieces of the targets it covers (the requests cover every
/// target, as [`plan_requests`] planned them), as disjoint buffers, so
/// the requests can fill them concurrently.
fn split_by_request<'a>(
    targets: &mut [(u64, &'a mut [u8])],
    requests: Vec<Request>,
) -> Vec<RequestPieces<'a>> {
    let mut pieces: Vec<RequestPieces<'a>> =
        requests.into_iter().map(|r| (r, Vec::new())).collect();
    for (offset, buffer) in targets.iter_mut() {
        let mut at = *offset;
        let mut rest: &'a mut [u8] = std::mem::take(buffer);
        let mut i = pieces.partition_point(|(r, _)| r.end <= at);
        while !rest.is_empty() && i < pieces.len() {
            let (range, list) = &mut pieces[i];
            let len = (range.end.min(at + rest.len() as u64) - at) as usize;
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            list.push((at, head));
            at += len as u64;
            rest = tail;
            i += 1;
        }
    }
    pieces
}

/// Copies the parts of `bytes` (which start at `start`) that the sorted
/// targets want.
fn copy_into(targets: &mut [(u64, &mut [u8])], start: u64, bytes: &[u8]) {
    let end = start + bytes.len() as u64;
    let first = targets.partition_point(|(o, b)| o + b.len() as u64 <= start);
    for (offset, buffer) in targets[first..].iter_mut() {
        if *offset >= end {
            break;
        }
        let from = start.max(*offset);
        let to = end.min(*offset + buffer.len() as u64);
        if from < to {
            let dst = (from - *offset) as usize..(to - *offset) as usize;
            let src = (from - start) as usize..(to - start) as usize;
            buffer[dst].copy_from_slice(&bytes[src]);
        }
    }
}

fn truncated(url: &str) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the object is shorter than its header says, or changed while it was read",
    ))
    .in_file(url)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

impl From<object_store::Error> for Error {
    fn from(error: object_store::Error) -> Self {
        classify(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_ranges_merge_and_long_ones_split() {
        let ranges = [0..10, 15..20, 100..130, 1000..1001];
        let plan = plan_requests(ranges.into_iter(), 10, 16);
        assert_eq!(plan, vec![0..16, 16..20, 100..116, 116..130, 1000..1001]);
    }

    #[test]
    fn targets_are_cut_at_request_boundaries() {
        let (mut a, mut b) = ([0u8; 6], [0u8; 3]);
        let mut targets = [(2u64, &mut a[..]), (10u64, &mut b[..])];
        let pieces = split_by_request(&mut targets, vec![0..4, 4..8, 10..13]);
        let shape: Vec<(Request, Vec<(u64, usize)>)> = pieces
            .into_iter()
            .map(|(r, list)| (r, list.iter().map(|(o, b)| (*o, b.len())).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0..4, vec![(2, 2)]),
                (4..8, vec![(4, 4)]),
                (10..13, vec![(10, 3)])
            ]
        );
    }

    #[test]
    fn long_reads_use_fewer_larger_requests() {
        let options = RemoteOptions::default();
        assert_eq!(request_size_for(1 << 20, &options), 8 << 20);
        assert_eq!(request_size_for(256 << 20, &options), 32 << 20);
        assert_eq!(request_size_for(4 << 30, &options), MAX_REQUEST);
    }

    #[test]
    fn pieces_land_in_every_overlapping_target() {
        let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
        let mut targets = [(2u64, &mut a[..]), (8u64, &mut b[..])];
        copy_into(&mut targets, 0, &(0u8..10).collect::<Vec<_>>());
        copy_into(&mut targets, 10, &[10, 11]);
        assert_eq!(a, [2, 3, 4, 5]);
        assert_eq!(b, [8, 9, 10, 11]);
    }
}
