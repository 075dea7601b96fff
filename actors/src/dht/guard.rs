//! The one place a `mainline::Dht` is built, so the network-safety rules hold by construction:
//!
//! - the bootstrap list is always explicit and never empty: `mainline`'s built-in list of public
//!   bootstrap nodes (used when none is given) is never used, even by mistake;
//! - with `loopback_only` (every test sets it; see `tests/common`), every bootstrap address must be
//!   a loopback address and the DHT socket binds 127.0.0.1, so a test cannot reach the public DHT.
//!
//! Building binds a UDP socket and starts `mainline`'s own thread: call it outside the actix
//! runtime (a worker thread or `spawn_blocking`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};

use thiserror::Error;

/// How a node's DHT client is built (from `[dht]` in the settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtConfig {
    /// `host:port` of the nodes to join through; never empty.
    pub bootstrap: Vec<String>,
    /// Address of the DHT's UDP socket.
    pub bind: Ipv4Addr,
    /// UDP port of the DHT socket; 0 picks a free one.
    pub port: u16,
    /// Refuse any non-loopback bootstrap node and bind 127.0.0.1 (tests).
    pub loopback_only: bool,
}

#[derive(Debug, Error)]
pub enum GuardError {
    #[error("dht.bootstrap is empty: list the nodes to join through (see docs/configuration.md)")]
    NoBootstrap,
    #[error("dht.bootstrap: '{0}' is not a host:port")]
    BadBootstrap(String),
    #[error("dht.bootstrap: '{0}' is not a loopback address, and this node is loopback-only")]
    NotLoopback(String),
    #[error("dht.bind: {0} is not a loopback address, and this node is loopback-only")]
    BindNotLoopback(Ipv4Addr),
    #[error("dht: {0}")]
    Io(#[from] std::io::Error),
}

/// Resolve and check the bootstrap list (IPv4 only: the crate speaks IPv4).
pub fn checked_bootstrap(config: &DhtConfig) -> Result<Vec<SocketAddrV4>, GuardError> {
    if config.bootstrap.is_empty() {
        return Err(GuardError::NoBootstrap);
    }
    if config.loopback_only && !config.bind.is_loopback() {
        return Err(GuardError::BindNotLoopback(config.bind));
    }
    let mut out = Vec::new();
    for entry in &config.bootstrap {
        let resolved: Vec<SocketAddr> = if config.loopback_only {
            // No name resolution at all in loopback-only mode: a literal address or nothing.
            vec![entry
                .parse::<SocketAddr>()
                .map_err(|_| GuardError::NotLoopback(entry.clone()))?]
        } else {
            entry
                .to_socket_addrs()
                .map_err(|_| GuardError::BadBootstrap(entry.clone()))?
                .collect()
        };
        for addr in resolved {
            if config.loopback_only && !addr.ip().is_loopback() {
                return Err(GuardError::NotLoopback(entry.clone()));
            }
            if let SocketAddr::V4(v4) = addr {
                out.push(v4);
            }
        }
    }
    if out.is_empty() {
        return Err(GuardError::NoBootstrap);
    }
    Ok(out)
}

/// Build the DHT client (blocking: binds a socket, starts `mainline`'s thread).
pub fn build(config: &DhtConfig) -> Result<mainline::Dht, GuardError> {
    let bootstrap = checked_bootstrap(config)?;
    let bind = if config.loopback_only {
        Ipv4Addr::LOCALHOST
    } else {
        config.bind
    };
    let mut builder = mainline::Dht::builder();
    // `bootstrap` replaces mainline's default (public) list; it is never empty here.
    builder.bootstrap(&bootstrap).bind_address(bind);
    if config.port != 0 {
        builder.port(config.port);
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bootstrap: &[&str], loopback_only: bool) -> DhtConfig {
        DhtConfig {
            bootstrap: bootstrap.iter().map(|s| s.to_string()).collect(),
            bind: Ipv4Addr::UNSPECIFIED,
            port: 0,
            loopback_only,
        }
    }

    #[test]
    fn an_empty_bootstrap_list_is_refused_never_replaced_by_the_public_one() {
        assert!(matches!(
            checked_bootstrap(&config(&[], false)),
            Err(GuardError::NoBootstrap)
        ));
        assert!(matches!(
            build(&config(&[], true)),
            Err(GuardError::NoBootstrap)
        ));
    }

    #[test]
    fn loopback_only_refuses_any_other_address_and_any_name() {
        let mut c = config(&["127.0.0.1:6881"], true);
        c.bind = Ipv4Addr::LOCALHOST;
        assert!(checked_bootstrap(&c).is_ok());
        for bad in [
            "router.bittorrent.com:6881",
            "67.215.246.10:6881",
            "10.0.0.1:1",
            "localhost:1",
        ] {
            let mut c = config(&["127.0.0.1:6881", bad], true);
            c.bind = Ipv4Addr::LOCALHOST;
            assert!(
                matches!(checked_bootstrap(&c), Err(GuardError::NotLoopback(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            checked_bootstrap(&config(&["127.0.0.1:6881"], true)),
            Err(GuardError::BindNotLoopback(_))
        ));
    }
}
