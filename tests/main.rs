//! The integration tests: one binary, shared helpers in `common`.

#![allow(clippy::unwrap_used)]

mod attacks;
mod binary;
mod common;
mod core_inprocess;
mod delivery;
mod durability;
mod flood;
mod fuzz;
mod interop;
mod ipc;
mod netns;
mod prompt;
mod security;
mod startup;
mod terminal;
