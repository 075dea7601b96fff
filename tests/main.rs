//! The integration tests: one binary, shared helpers in `common`.

mod common;
mod core_inprocess;
