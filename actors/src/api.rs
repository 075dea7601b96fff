//! The core's API: every request a front-end can make, every answer and every event, as types
//! shared by the core (`ipc`), the client library (`client`), the `pgpchat` front-end and the tests.
//! A renamed field is a compile error on both sides, not an empty string at run time.
//!
//! On the wire this is JSON-RPC 2.0, one object per line (`docs/ipc.md`); these types are its
//! `params`, `result`, `error.data` and notification `params`. They are the API's own, apart from
//! the store's rows (the core converts its rows into them), so the store may change without the
//! API changing.
//!
//! Files: [`request`] (one struct per method, the [`Request`] enum), [`response`] (the results),
//! [`event`] (notifications), [`error`] (machine-readable error kinds and JSON-RPC codes),
//! [`version`] (the API version and compatibility rule), [`openrpc`] (the self-description served
//! by `rpc.discover` and kept in `docs/openrpc.json`).

pub mod error;
pub mod event;
pub mod openrpc;
pub mod request;
pub mod response;
pub mod version;

pub use error::{ErrorData, ErrorKind, RpcError};
pub use event::{Event, Notification};
pub use request::*;
pub use response::*;
pub use version::{ApiVersion, VersionInfo, API_VERSION};
