//! Reading: zero-copy views over bytes, and files through mmap or pread.

mod file;
mod mmap;
mod parallel;
mod view;

pub(crate) use file::read_header;
pub use file::{Backend, OpenOptions, SafetensorsFile};
pub use view::{SafeTensors, TensorView};
