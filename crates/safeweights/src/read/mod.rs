//! Reading: zero-copy views over bytes, and files through mmap or pread.

mod alloc;
pub mod bus_error;
pub(crate) mod file;
mod mmap;
mod parallel;
mod view;

pub use alloc::try_zeroed;
pub(crate) use file::read_header;
pub use file::{Backend, OpenOptions, SafetensorsFile};
pub use mmap::page_floor;
pub use view::{SafeTensors, TensorView};
