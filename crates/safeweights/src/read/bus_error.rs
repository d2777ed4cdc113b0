//! A clear message instead of a bare "Bus error" when a memory-mapped file
//! is truncated under us.
//!
//! Reading a page of a map past the end of a file that shrank raises
//! `SIGBUS`, which kills the process with no word of which file or why.
//! Every map this crate (and the Python bindings, and the pickle reader)
//! makes is registered here with its address range and file name; the
//! handler installed by [`install_bus_error_handler`] checks the fault
//! address against them, writes one line naming the file and what
//! happened, and then lets the previous disposition act (by default, the
//! process ends with `SIGBUS` as before). Positioned reads (`pread`) never
//! fault: they return an error, which is why the CLI reads that way.
//!
//! Copies are different: a tool that copies bytes out of a map (a
//! converter, a loader that copies every tensor) should fail with an error,
//! as a positioned read does, not end the process. Maps registered with
//! [`register_copy_source`] (maps whose bytes are only ever copied, never
//! handed out as zero-copy views) can be read under [`guard`]: a bus error
//! inside one of them, on the thread running the guarded code, replaces the
//! lost page with zeros (so the access completes) and the guard returns a
//! [`BusFault`] naming the file instead of the closure's result. Zero-copy
//! maps are never patched: zeros there would be silent wrong data, so a
//! fault in them always ends the process with the message.
//!
//! The handler only reads atomics and fixed tables and calls `write(2)`,
//! `gettid(2)`, `mmap(2)` and `sigaction(2)`, system calls that are safe in
//! a signal handler.

use std::path::{Path, PathBuf};

/// A map registered for the bus-error message; unregistered when dropped.
#[derive(Debug)]
pub struct MappingRegistration {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    slot: Option<usize>,
}

/// Registers `len` bytes at `start`, a map of the file at `path`, so that a
/// bus error inside them is reported naming the file. Keep the returned
/// value alive exactly as long as the map.
pub fn register_mapping(start: *const u8, len: usize, path: &Path) -> MappingRegistration {
    register(start, len, path, false)
}

/// Registers a map whose bytes are only ever copied out (never viewed in
/// place after the copy), like [`register_mapping`]; in addition, a bus
/// error inside it under [`guard`] becomes that guard's error. After a
/// guard reports a fault, the map holds zeros where the file was cut:
/// drop it.
pub fn register_copy_source(start: *const u8, len: usize, path: &Path) -> MappingRegistration {
    register(start, len, path, true)
}

fn register(start: *const u8, len: usize, path: &Path, recoverable: bool) -> MappingRegistration {
    #[cfg(target_os = "linux")]
    {
        MappingRegistration {
            slot: linux::register(start as usize, len, path, recoverable),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (start, len, path, recoverable);
        MappingRegistration { slot: None }
    }
}

/// A bus error caught by [`guard`]: the file of a map was truncated (or
/// changed) while it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusFault {
    /// The mapped file.
    pub path: PathBuf,
    /// Offset of the faulting byte in the map.
    pub offset: usize,
}

impl std::fmt::Display for BusFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the file became shorter while it was read (bus error at byte {} of its map)",
            self.offset
        )
    }
}

impl std::error::Error for BusFault {}

impl From<BusFault> for std::io::Error {
    /// An `UnexpectedEof` error, the kind a positioned read of a truncated
    /// file gives (the path is left to the caller's error type).
    fn from(fault: BusFault) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, fault.to_string())
    }
}

/// Runs `read` on this thread; a bus error it causes inside a map
/// registered with [`register_copy_source`] makes this return the fault
/// (after `read` has run to its end over zeros where the file was cut)
/// instead of `read`'s result. Faults elsewhere act as without the guard.
/// Guards nest: the innermost one reports the fault.
pub fn guard<T>(read: impl FnOnce() -> T) -> Result<T, BusFault> {
    #[cfg(target_os = "linux")]
    {
        linux::install();
        linux::guarded(read)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(read())
    }
}

impl Drop for MappingRegistration {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(slot) = self.slot {
            linux::unregister(slot);
        }
    }
}

/// Installs the `SIGBUS` handler once per process (later calls do
/// nothing). Faults outside registered maps, and every fault after the
/// message, go to the disposition that was in place before.
pub fn install_bus_error_handler() {
    #[cfg(target_os = "linux")]
    linux::install();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::UnsafeCell;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
    use std::sync::OnceLock;

    const SLOTS: usize = 1024;
    const NAME_LEN: usize = 480;
    const FREE: u8 = 0;
    const BUSY: u8 = 1;
    const READY: u8 = 2;

    struct Slot {
        state: AtomicU8,
        start: AtomicUsize,
        len: AtomicUsize,
        name_len: AtomicUsize,
        name: UnsafeCell<[u8; NAME_LEN]>,
        recoverable: AtomicBool,
    }

    // SAFETY: `name` is written only by the thread that moved `state` from
    // FREE to BUSY, and read only while `state` is READY.
    unsafe impl Sync for Slot {}

    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        state: AtomicU8::new(FREE),
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        name_len: AtomicUsize::new(0),
        name: UnsafeCell::new([0; NAME_LEN]),
        recoverable: AtomicBool::new(false),
    };
    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

    pub(super) fn register(
        start: usize,
        len: usize,
        path: &Path,
        recoverable: bool,
    ) -> Option<usize> {
        let index = TABLE.iter().position(|slot| {
            slot.state
                .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        })?;
        let slot = &TABLE[index];
        let bytes = path.as_os_str().as_bytes();
        let n = bytes.len().min(NAME_LEN);
        // SAFETY: this thread owns the BUSY slot (see `Sync` above).
        unsafe { (&mut *slot.name.get())[..n].copy_from_slice(&bytes[..n]) };
        slot.name_len.store(n, Ordering::Relaxed);
        slot.start.store(start, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        slot.recoverable.store(recoverable, Ordering::Relaxed);
        slot.state.store(READY, Ordering::Release);
        Some(index)
    }

    pub(super) fn unregister(index: usize) {
        let slot = &TABLE[index];
        slot.state.store(BUSY, Ordering::Release);
        slot.len.store(0, Ordering::Relaxed);
        slot.state.store(FREE, Ordering::Release);
    }

    /// A thread running guarded code: who, and the fault it met, if any.
    struct Guard {
        /// The thread's id; 0 when the entry is free.
        tid: AtomicI32,
        faulted: AtomicBool,
        offset: AtomicUsize,
        name_len: AtomicUsize,
        name: UnsafeCell<[u8; NAME_LEN]>,
    }

    // SAFETY: an entry is used only by the thread whose id it holds (and
    // that thread's signal handler, which interrupts it): claimed with a
    // compare-exchange from 0, released by its owner.
    unsafe impl Sync for Guard {}

    const GUARDS: usize = 256;
    #[allow(clippy::declare_interior_mutable_const)]
    const FREE_GUARD: Guard = Guard {
        tid: AtomicI32::new(0),
        faulted: AtomicBool::new(false),
        offset: AtomicUsize::new(0),
        name_len: AtomicUsize::new(0),
        name: UnsafeCell::new([0; NAME_LEN]),
    };
    static GUARD_TABLE: [Guard; GUARDS] = [FREE_GUARD; GUARDS];
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

    fn current_tid() -> i32 {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as i32 }
    }

    fn find_guard(tid: i32) -> Option<&'static Guard> {
        GUARD_TABLE
            .iter()
            .find(|g| g.tid.load(Ordering::Acquire) == tid)
    }

    pub(super) fn guarded<T>(read: impl FnOnce() -> T) -> Result<T, super::BusFault> {
        let tid = current_tid();
        let (guard, owned) = match find_guard(tid) {
            Some(outer) => (Some(outer), false),
            None => (
                GUARD_TABLE.iter().find(|g| {
                    g.tid
                        .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                }),
                true,
            ),
        };
        let Some(guard) = guard else {
            // Every entry taken: run unguarded (a fault ends the process
            // with the message, as without a guard).
            return Ok(read());
        };
        let faulted_before = guard.faulted.swap(false, Ordering::AcqRel);
        let result = read();
        let fault = guard.faulted.load(Ordering::Acquire).then(|| {
            let n = guard.name_len.load(Ordering::Relaxed).min(NAME_LEN);
            // SAFETY: only this thread (and its own signal handler, which
            // is not running now) touches its entry.
            let name = unsafe { &(&*guard.name.get())[..n] };
            super::BusFault {
                path: PathBuf::from(OsStr::from_bytes(name)),
                offset: guard.offset.load(Ordering::Relaxed),
            }
        });
        // An outer guard keeps its own earlier fault.
        guard.faulted.store(faulted_before, Ordering::Release);
        if owned {
            guard.tid.store(0, Ordering::Release);
        }
        match fault {
            Some(fault) => Err(fault),
            None => Ok(result),
        }
    }

    /// Under a guard, in a recoverable map: replaces the page at `address`
    /// with zeros and records the fault. False when it cannot.
    fn recover(slot: &Slot, address: usize, offset: usize) -> bool {
        if !slot.recoverable.load(Ordering::Relaxed) {
            return false;
        }
        let Some(guard) = find_guard(current_tid()) else {
            return false;
        };
        let page = PAGE_SIZE.load(Ordering::Relaxed);
        if page == 0 {
            return false;
        }
        // SAFETY: MAP_FIXED over one page of a map registered (so alive)
        // as only copied from: the page read past the file's end becomes
        // zeros and the faulting access completes.
        let mapped = unsafe {
            libc::mmap(
                (address & !(page - 1)) as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return false;
        }
        if !guard.faulted.load(Ordering::Relaxed) {
            let n = slot.name_len.load(Ordering::Relaxed).min(NAME_LEN);
            // SAFETY: READY slots are not written; the guard entry is this
            // thread's (see `Sync` above).
            unsafe {
                let name = &(&*slot.name.get())[..n];
                (&mut *guard.name.get())[..n].copy_from_slice(name);
            }
            guard.name_len.store(n, Ordering::Relaxed);
            guard.offset.store(offset, Ordering::Relaxed);
            guard.faulted.store(true, Ordering::Release);
        }
        true
    }

    static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

    pub(super) fn install() {
        PREVIOUS.get_or_init(|| {
            // SAFETY: sysconf with a valid name.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            PAGE_SIZE.store(usize::try_from(page).unwrap_or(0), Ordering::Relaxed);
            // SAFETY: plain sigaction calls with valid, zero-initialised
            // structures; the handler only does async-signal-safe work.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_bus_error as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGBUS, &action, &mut previous);
                previous
            }
        });
    }

    extern "C" fn on_bus_error(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let address = unsafe { (*info).si_addr() } as usize;
        for slot in &TABLE {
            if slot.state.load(Ordering::Acquire) != READY {
                continue;
            }
            let start = slot.start.load(Ordering::Relaxed);
            let len = slot.len.load(Ordering::Relaxed);
            if address >= start && address - start < len {
                if recover(slot, address, address - start) {
                    return; // The access repeats over zeros; the guard reports.
                }
                let n = slot.name_len.load(Ordering::Relaxed).min(NAME_LEN);
                // SAFETY: READY slots are not written (see `Sync` above).
                let name = unsafe { &(&*slot.name.get())[..n] };
                report(name, address - start);
                break;
            }
        }
        // Hand the fault back: once this returns, the access repeats under
        // the previous disposition (by default the process ends on SIGBUS).
        if let Some(previous) = PREVIOUS.get() {
            // SAFETY: restoring a disposition the kernel gave us.
            unsafe { libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()) };
        }
    }

    /// 0: nobody has reported; 1: a thread is writing its report; 2: done.
    static REPORTING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

    fn report(name: &[u8], offset: usize) {
        // Threads that fault together write one message, not interleaved
        // copies: the others wait for it to be written before the fault
        // ends the process.
        if REPORTING
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            while REPORTING.load(Ordering::Acquire) != 2 {
                // SAFETY: nanosleep is async-signal-safe; `pause` is valid.
                unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
            }
            return;
        }
        write_report(name, offset);
        REPORTING.store(2, Ordering::Release);
    }

    fn write_report(name: &[u8], offset: usize) {
        let mut number = [0u8; 20];
        let mut at = number.len();
        let mut rest = offset;
        loop {
            at -= 1;
            number[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for part in [
            b"safeweights: fatal: " as &[u8],
            name,
            b": the file was truncated or changed on disk while it was memory-mapped \
              (bus error reading byte ",
            &number[at..],
            b" of the map); tensors loaded from it can no longer be read. Do not \
              modify files in place while they are loaded; load with backend=\"pread\" \
              (mmap=False for load and load_checkpoint) to get an exception instead \
              of this crash.\n",
        ] {
            write_stderr(part);
        }
    }

    fn write_stderr(mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: write(2) on stderr with a valid buffer; async-signal-safe.
            let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            if n <= 0 {
                return;
            }
            bytes = &bytes[n as usize..];
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    fn mapped_file(pages: usize) -> (tempfile::NamedTempFile, memmap2::Mmap) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&vec![7u8; pages * 4096]).unwrap();
        file.flush().unwrap();
        // SAFETY: a test file only this test truncates, and only under guard.
        let map = unsafe { memmap2::Mmap::map(file.as_file()).unwrap() };
        (file, map)
    }

    #[test]
    fn a_guarded_read_past_a_truncation_is_a_fault_naming_the_file() {
        let (file, map) = mapped_file(4);
        let _registration = register_copy_source(map.as_ptr(), map.len(), file.path());
        file.as_file().set_len(4096).unwrap();
        let sum = || map.iter().map(|&b| u64::from(b)).sum::<u64>();
        let fault = guard(sum).unwrap_err();
        assert_eq!(fault.path, file.path());
        assert_eq!(fault.offset, 4096);
        let error = std::io::Error::from(fault);
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(error.to_string().contains("became shorter"), "{error}");
        // The page still in the file reads as before, and a guard that
        // meets no fault returns the closure's result.
        assert_eq!(guard(|| map[..4096].iter().all(|&b| b == 7)), Ok(true));
    }

    #[test]
    fn nested_guards_report_the_fault_to_the_innermost() {
        let (file, map) = mapped_file(2);
        let _registration = register_copy_source(map.as_ptr(), map.len(), file.path());
        file.as_file().set_len(0).unwrap();
        let outer = guard(|| {
            let inner = guard(|| std::hint::black_box(map[4096]));
            assert!(inner.is_err());
            5
        });
        assert_eq!(outer, Ok(5));
    }
}
