pub mod codec;
pub mod crypto;
pub mod handshake;
pub mod wire;
pub mod settings;
pub mod store;
