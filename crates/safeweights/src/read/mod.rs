//! Reading: zero-copy views over bytes, and files through mmap or pread.

mod file;
mod mmap;
mod parallel;
mod view;

pub use file::{Backend, OpenOptions, SafetensorsFile};
pub use view::{SafeTensors, TensorView};
