//! The integration tests: one binary, shared helpers in `common`.

#![allow(clippy::unwrap_used)]

mod attacks;
mod bench;
mod binary;
mod binary_social;
mod chat_view;
mod cli;
mod common;
mod contacts_by_address;
mod control_order;
mod core_inprocess;
mod daemon;
mod delivery;
mod dht;
mod discovery_scale;
mod durability;
mod exchange;
mod flood;
mod fuzz;
mod hostile;
mod interop;
mod introductions;
mod ipc;
mod key_destruction;
mod layering;
mod limits;
mod logging;
mod netns;
mod netns_router;
mod prompt;
mod prompt_polish;
mod rotation;
mod security;
mod slots;
mod startup;
mod terminal;
mod upgrade;
mod versions;
mod web;
mod web_browser;
