//! Buffers whose size comes from a file, allocated fallibly: a size the
//! machine cannot provide is an error, never an abort of the process.

use std::alloc::{alloc_zeroed, Layout};
use std::io;

mod sealed {
    /// Integer types, for which all-zero bytes are a valid value.
    pub trait Zeroable: Copy {}
    impl Zeroable for u8 {}
    impl Zeroable for u64 {}
}

/// A vector of `len` zeros, or an [`io::ErrorKind::OutOfMemory`] error
/// when the memory cannot be had (Python turns it into `MemoryError`).
/// Like `vec![0; len]`, large buffers come zeroed from the OS untouched.
pub fn try_zeroed<T: sealed::Zeroable>(len: usize) -> io::Result<Vec<T>> {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    let out_of_memory = || {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate a buffer of {bytes} bytes"),
        )
    };
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<T>(len).map_err(|_| out_of_memory())?;
    // SAFETY: the layout has a non-zero size (checked above).
    let pointer = unsafe { alloc_zeroed(layout) }.cast::<T>();
    if pointer.is_null() {
        return Err(out_of_memory());
    }
    // SAFETY: allocated by the global allocator with the layout of `len`
    // values of T, all initialised: zero bytes are a valid T (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(pointer, len, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_size_is_an_error_not_an_abort() {
        let error = try_zeroed::<u8>(usize::MAX / 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!(try_zeroed::<u64>(3).unwrap(), [0, 0, 0]);
        assert!(try_zeroed::<u8>(0).unwrap().is_empty());
    }
}
