//! The one thread pool of the workspace, with one panic policy.
//!
//! Work runs on scoped threads. The first error stops the remaining work.
//! A panic in a worker is a bug: it is caught and becomes
//! [`Error::WorkerPanicked`], an internal error (exit code 3 in the CLI, a
//! `SystemError` in Python), never an unwinding caller and never a usage
//! error. The core's parallel reads and writes and the CLI's `stats`,
//! `diff` and `checksum` all run here.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use crate::error::{Error, Result};

/// Threads to use: `requested`, or every available core; at least one.
pub fn thread_count(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// The machine's parallelism, at most `max`.
pub(crate) fn threads_at_most(max: usize) -> usize {
    thread_count(None).min(max)
}

/// Runs `work(i)` for every `i < count` on up to `threads` threads, each
/// taking the next index, and returns the results in index order. The
/// first error (or panic, as [`Error::WorkerPanicked`]) stops the
/// remaining work and is returned.
pub fn run_indexed<T, E>(
    count: usize,
    threads: usize,
    work: impl Fn(usize) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E>
where
    T: Send,
    E: Send + From<Error>,
{
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<E>> = Mutex::new(None);
    let fail = |error: E| {
        next.store(count, Ordering::Relaxed);
        if let Ok(mut slot) = failure.lock() {
            slot.get_or_insert(error);
        }
    };
    let worker = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                return done;
            }
            match catch_unwind(AssertUnwindSafe(|| work(i))) {
                Ok(Ok(value)) => done.push((i, value)),
                Ok(Err(error)) => {
                    fail(error);
                    return done;
                }
                Err(panic) => {
                    fail(E::from(panicked(panic.as_ref())));
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
                // Only reachable if the bookkeeping itself panicked.
                Err(panic) => fail(E::from(panicked(panic.as_ref()))),
            }
        }
        all
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, v)| v).collect())
}

fn panicked(payload: &(dyn Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    Error::WorkerPanicked { message }
}

/// Splits `items` (in order) into contiguous groups of about
/// `total / groups` bytes each, so every thread works on a sequential region.
fn group_by_bytes<T>(
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
/// one group per thread, so each thread works through a sequential region.
pub(crate) fn run_grouped<T: Send>(
    items: Vec<T>,
    len: impl Fn(&T) -> usize,
    total: usize,
    threads: usize,
    work: impl Fn(T) -> Result<()> + Sync,
) -> Result<()> {
    let groups: Vec<Mutex<Option<Vec<T>>>> = group_by_bytes(items, len, total, threads)
        .into_iter()
        .map(|group| Mutex::new(Some(group)))
        .collect();
    run_indexed(groups.len(), groups.len(), |g| {
        let group = groups[g].lock().ok().and_then(|mut slot| slot.take());
        group.into_iter().flatten().try_for_each(&work)
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_index_order() {
        let squares = run_indexed::<_, Error>(100, 4, |i| Ok(i * i)).unwrap();
        assert_eq!(squares, (0..100).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_stops_the_work() {
        let error = run_indexed::<usize, Error>(50, 3, |i| {
            if i == 7 {
                Err(Error::Shard {
                    reason: "seven".into(),
                })
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert!(matches!(error, Error::Shard { .. }), "{error:?}");
    }

    #[test]
    fn a_panic_in_a_worker_is_an_internal_error_not_an_unwind() {
        let error = run_indexed::<usize, Error>(20, 4, |i| {
            assert!(i != 11, "worker {i} broke");
            Ok(i)
        })
        .unwrap_err();
        match &error {
            Error::WorkerPanicked { message } => assert!(message.contains("worker 11 broke")),
            other => panic!("{other:?}"),
        }
        assert!(!error.is_invalid_data());
        let grouped = run_grouped(
            vec![1usize, 2, 3, 4],
            |_| 1,
            4,
            2,
            |item| {
                assert!(item != 3, "item three");
                Ok(())
            },
        )
        .unwrap_err();
        assert!(
            matches!(grouped, Error::WorkerPanicked { .. }),
            "{grouped:?}"
        );
    }

    #[test]
    fn groups_are_contiguous_and_balanced() {
        let groups = group_by_bytes((0..10).collect(), |_| 10, 100, 3);
        assert_eq!(groups.concat(), (0..10).collect::<Vec<_>>());
        assert!(groups.iter().all(|g| g.len() <= 4), "{groups:?}");
    }
}
