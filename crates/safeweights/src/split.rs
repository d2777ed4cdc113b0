//! Splitting work into per-thread groups of about equal byte counts.

use std::thread;

use crate::error::Result;

/// Threads to use: the machine's parallelism, at most `max`.
pub(crate) fn thread_count(max: usize) -> usize {
    thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(max)
}

/// Splits `items` (in order) into contiguous groups of about
/// `total / groups` bytes each, so every thread works on a sequential region.
pub(crate) fn group_by_bytes<T>(
    items: Vec<T>,
    len: impl Fn(&T) -> usize,
    total: usize,
    groups: usize,
) -> Vec<Vec<T>> {
    let target = total.div_ceil(groups).max(1);
    let mut out: Vec<Vec<T>> = vec![Vec::new()];
    let mut filled = 0;
    for item in items {
        if filled >= target {
            out.push(Vec::new());
            filled = 0;
        }
        filled += len(&item);
        if let Some(last) = out.last_mut() {
            last.push(item);
        }
    }
    out
}

/// Runs `work` on every item, the items split by [`group_by_bytes`] into
/// one group per thread, each group on its own scoped thread. Returns the
/// first error; a panic in a thread is passed on to the caller.
pub(crate) fn run_grouped<T: Send>(
    items: Vec<T>,
    len: impl Fn(&T) -> usize,
    total: usize,
    threads: usize,
    work: impl Fn(T) -> Result<()> + Sync,
) -> Result<()> {
    let groups = group_by_bytes(items, len, total, threads);
    let work = &work;
    thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| scope.spawn(move || group.into_iter().try_for_each(work)))
            .collect();
        handles.into_iter().try_for_each(|handle| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}
