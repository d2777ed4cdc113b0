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
//! The handler only reads atomics and a fixed table and calls `write(2)`
//! and `sigaction(2)`, which are async-signal-safe.

use std::path::Path;

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
    #[cfg(target_os = "linux")]
    {
        MappingRegistration {
            slot: linux::register(start as usize, len, path),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (start, len, path);
        MappingRegistration { slot: None }
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
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
    };
    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

    pub(super) fn register(start: usize, len: usize, path: &Path) -> Option<usize> {
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
        slot.state.store(READY, Ordering::Release);
        Some(index)
    }

    pub(super) fn unregister(index: usize) {
        let slot = &TABLE[index];
        slot.state.store(BUSY, Ordering::Release);
        slot.len.store(0, Ordering::Relaxed);
        slot.state.store(FREE, Ordering::Release);
    }

    static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

    pub(super) fn install() {
        PREVIOUS.get_or_init(|| {
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

    fn report(name: &[u8], offset: usize) {
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
              to get an exception instead of this crash.\n",
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
