//! The integration tests: one binary, shared helpers in `common`.

mod attacks;
mod binary;
mod common;
mod core_inprocess;
mod interop;
