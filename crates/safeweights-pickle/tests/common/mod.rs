//! Shared helpers, all from `safeweights-testkit`: the policy for missing
//! test dependencies, and running a fixture generator once per test binary.

// Not every test binary that includes this module uses each.
#[allow(unused_imports)]
pub use safeweights_testkit::{generate, python_with, require, unhex};
