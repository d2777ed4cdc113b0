//! A pickle virtual machine that only rebuilds data.
//!
//! It accepts the opcodes and globals `torch.load(weights_only=True)`
//! accepts, interprets the allowed globals itself, and refuses everything
//! else with the opcode or global name and its byte offset.

mod globals;
mod obj;
pub(crate) mod ops;
mod value;
mod vm;

#[cfg(test)]
mod tests;

pub use value::{ObjectValue, StorageRef, TensorRef, Value, ViewKey};
pub use vm::{load_pickle, Loaded, Policy};

/// Whether `module.name` is on the allow-list the VM interprets.
pub fn is_allowed_global(module: &str, name: &str) -> bool {
    globals::Global::resolve(module, name).is_some()
}
