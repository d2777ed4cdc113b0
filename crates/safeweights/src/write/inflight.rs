//! Temporary files of writes in progress: a registry, so that a program
//! stopped by a signal can remove them before it exits; their naming
//! pattern, so that leftovers of a killed process can be recognised and
//! cleaned; and a scoped check that lets a caller abandon a long write.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Paths of the temporary files this process is writing right now.
static IN_FLIGHT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Locks the registry; a panic elsewhere never makes it unusable.
pub(crate) fn registry() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds a file to remove if the process is stopped by a signal: a shard
/// of a set that is not published yet.
pub(crate) fn track(path: &Path) {
    registry().insert(path.to_owned());
}

/// Takes a file off the list of [`track`].
pub(crate) fn untrack(path: &Path) {
    registry().remove(path);
}

/// Removes every temporary file this process is writing and keeps the
/// registry locked for the rest of the process's life, so that no write
/// can commit afterwards. For a program about to exit on a signal (run
/// it from a normal thread, such as `signal-hook`'s iterator thread, not
/// from inside a signal handler). Returns how many files were removed.
pub fn remove_temporary_files_for_exit() -> usize {
    let mut files = registry();
    let removed = files
        .iter()
        .filter(|path| std::fs::remove_file(path).is_ok())
        .count();
    files.clear();
    // Never unlocked: a writer that reaches its rename now blocks until
    // the process exits, instead of publishing a file after the cleanup.
    std::mem::forget(files);
    removed
}

/// The temporary file name for `destination_name`: `.NAME.` + random + `.tmp`.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Length of the random part tempfile puts between prefix and suffix.
pub(crate) const RANDOM_LEN: usize = 6;

/// Whether `name` is a temporary file name of our writers:
/// `.NAME.XXXXXX.tmp`, with six alphanumeric characters.
pub fn is_temporary_file_name(name: &str) -> bool {
    let Some(inner) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
    else {
        return false;
    };
    let Some((destination, random)) = inner.rsplit_once('.') else {
        return false;
    };
    !destination.is_empty()
        && random.len() == RANDOM_LEN
        && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether the temporary file at `path` is being written by a live
/// process: writers hold an exclusive `flock` on it until they commit or
/// give up. Always false where `flock` is not available.
pub fn temporary_file_in_use(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    match try_lock(&file) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive advisory lock on `file`, without waiting; released
/// when the file is closed.
#[cfg(target_os = "linux")]
pub(crate) fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only takes the descriptor, open for this call's duration.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn try_lock(_file: &File) -> io::Result<()> {
    Ok(())
}

thread_local! {
    static INTERRUPT: Cell<Option<&'static dyn Fn() -> bool>> = const { Cell::new(None) };
}

/// Runs `work` on this thread with `interrupted` checked between the
/// chunks of every file write it makes: when it returns true, the write
/// stops with an [`io::ErrorKind::Interrupted`] error, its temporary file
/// is removed and the destination is left as it was. Python saves use it
/// to honour Ctrl-C (the check runs the interpreter's signal handlers).
pub fn interruptible<R>(interrupted: &dyn Fn() -> bool, work: impl FnOnce() -> R) -> R {
    // SAFETY: the 'static lifetime is a lie kept inside this function: the
    // reference is removed (by the guard, even on panic) before `interrupted`
    // goes out of scope, and it is only read on this thread meanwhile.
    let extended: &'static dyn Fn() -> bool = unsafe { std::mem::transmute(interrupted) };
    struct Restore(Option<&'static dyn Fn() -> bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERRUPT.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(INTERRUPT.with(|cell| cell.replace(Some(extended))));
    work()
}

/// An [`io::ErrorKind::Interrupted`] error if the current
/// [`interruptible`] scope's check says so.
pub(crate) fn check_interrupt() -> io::Result<()> {
    match INTERRUPT.with(Cell::get) {
        Some(interrupted) if interrupted() => Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the write was interrupted; the destination was left as it was",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temporary_file_name(".model.safetensors.a1B2c3.tmp"));
        assert!(is_temporary_file_name(".x.Zz9999.tmp"));
        for other in [
            "model.safetensors",
            ".model.safetensors.tmp",
            ".model.safetensors.a1B2c.tmp",
            ".model.safetensors.a1B2c3d.tmp",
            "model.safetensors.a1B2c3.tmp",
            "..a1B2c3.tmp",
            ".model.a1-2c3.tmp",
        ] {
            assert!(!is_temporary_file_name(other), "{other}");
        }
    }

    #[test]
    fn the_interrupt_check_is_scoped_to_the_call() {
        assert!(check_interrupt().is_ok());
        let stop = || true;
        let inside = interruptible(&stop, check_interrupt);
        assert_eq!(inside.unwrap_err().kind(), io::ErrorKind::Interrupted);
        assert!(check_interrupt().is_ok());
    }
}
