//! Prober actor: reaching nodes that broadcast cannot (issue 10, part 1). It adds a contact by
//! address ([`AddContact`], `add-contact HOST:PORT`): resolve, connect to the node's main port, ask
//! for its signed announce ([`crate::net::probe`]), and hand the verified announce to the contact
//! registry exactly as discovery does, marked [`ContactOrigin::Added`]. Every announce interval it
//! re-probes the contacts added by address that broadcast has not reached lately, on the registry's
//! schedule ([`crate::contacts::probing`]: bounded in number, exponential backoff for silent ones).
//!
//! Bounds: [`MAX_ADDS_IN_FLIGHT`] additions at once, [`MAX_RESOLVED_ADDRESSES`] addresses tried per
//! name, one probe in flight per contact, the schedule's [`MAX_PROBED_ADDRESSES`] per interval.
//! A probe is one small hello (under 50 bytes); what answers it is a signed announce (about a
//! kilobyte): nothing we send is larger than what answers it.
//!
//! Talks to: the key manager (verify), the contact registry. Lifecycle: started by the node, lives
//! as long as it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use thiserror::Error;
use tokio::net::TcpStream;

use crate::announce::VerifiedAnnounce;
use crate::contacts::probing::MAX_PROBED_ADDRESSES;
use crate::contacts::{
    AnnounceSeen, ContactRegistry, DueProbes, FindContact, IsBlocked, Probed, ProbedCount,
};
use crate::handshake::random_nonce;
use crate::keys::KeysHandle;
use crate::net::{self, probe::ProbeError};
use crate::settings::Settings;
use crate::store::{ContactOrigin, ContactRecord};

/// `add-contact` requests being probed at once; more are refused (a front-end's loop cannot pile
/// up connections).
pub const MAX_ADDS_IN_FLIGHT: usize = 4;
/// Addresses of one name tried in turn (a name may resolve to many).
pub const MAX_RESOLVED_ADDRESSES: usize = 4;
/// Longest `HOST:PORT` accepted (a DNS name is at most 253 characters).
pub const MAX_ADDRESS_CHARS: usize = 300;

/// Why a contact could not be added by address.
#[derive(Debug, Error)]
pub enum AddContactError {
    #[error("'{0}' is not HOST:PORT (HOST a name, an IPv4 address or [IPv6]; PORT the node's main TCP port, 1-65535)")]
    BadAddress(String),
    #[error("cannot resolve '{host}': {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach {address}: {source}")]
    Unreachable {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{address} is not a pgpchat node's main port ({why})")]
    NotPgpchat {
        address: SocketAddr,
        why: Box<ProbeError>,
    },
    #[error(
        "{address} runs an older pgpchat that does not answer probes ({why}); it can be added \
         once its user updates, or met by broadcast on its network"
    )]
    TooOld {
        address: SocketAddr,
        why: Box<ProbeError>,
    },
    #[error("{address}: {why}")]
    Probe {
        address: SocketAddr,
        why: Box<ProbeError>,
    },
    #[error("{address} answers as {found}, not {expected}")]
    OtherKey {
        address: SocketAddr,
        expected: String,
        found: String,
    },
    #[error("{0} is this node's own address")]
    Own(SocketAddr),
    #[error("{0} is blocked (unblock it first)")]
    Blocked(String),
    #[error(
        "already {MAX_PROBED_ADDRESSES} contacts added by address (the maximum); remove one first"
    )]
    TooMany,
    #[error("already {MAX_ADDS_IN_FLIGHT} contacts being added; try again when they are done")]
    Busy,
    #[error("{0} could not be added: the contact table is full of verified, added and introduced contacts and contacts with a discussion")]
    TableFull(String),
    #[error("the contact registry is unavailable")]
    Unavailable,
}

/// Split `HOST:PORT` (`[IPv6]:PORT`): the host (brackets removed) and the port.
pub fn parse_host_port(s: &str) -> Result<(String, u16), AddContactError> {
    let bad = || AddContactError::BadAddress(s.chars().take(80).collect());
    let s = s.trim();
    if s.len() > MAX_ADDRESS_CHARS {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        (v6, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        // An IPv6 address without brackets is ambiguous with its port.
        if host.contains(':') {
            return Err(bad());
        }
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if port == 0 || !valid_host {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Probe the node at `HOST:PORT`: its verified announce, and the address that answered.
pub async fn probe_address(
    keys: &KeysHandle,
    deadline: Duration,
    max_frame_bytes: usize,
    address: &str,
) -> Result<(VerifiedAnnounce, SocketAddr), AddContactError> {
    let (host, port) = parse_host_port(address)?;
    let resolved: Vec<SocketAddr> =
        tokio::time::timeout(deadline, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| AddContactError::Resolve {
                host: host.clone(),
                source: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|source| AddContactError::Resolve {
                host: host.clone(),
                source,
            })?
            .take(MAX_RESOLVED_ADDRESSES)
            .collect();
    let mut last = None;
    for to in resolved {
        let stream = match tokio::time::timeout(deadline, TcpStream::connect(to)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = Some(e);
                continue;
            }
            Err(_) => {
                last = Some(std::io::ErrorKind::TimedOut.into());
                continue;
            }
        };
        let mut conn = net::framed(stream, max_frame_bytes);
        return match net::probe::ask(&mut conn, keys, random_nonce(), deadline).await {
            Ok(a) => Ok((a, to)),
            Err(why @ (ProbeError::NoAnswer | ProbeError::Peer(_))) => {
                // Closed without a word, or a pgpchat Error: ask whether it speaks pgpchat at all.
                let pgpchat = match tokio::time::timeout(deadline, TcpStream::connect(to)).await {
                    Ok(Ok(s)) => {
                        let mut conn = net::framed(s, max_frame_bytes);
                        net::probe::speaks_pgpchat(&mut conn, deadline).await
                    }
                    _ => false,
                };
                if pgpchat {
                    Err(AddContactError::TooOld {
                        address: to,
                        why: Box::new(why),
                    })
                } else {
                    Err(AddContactError::NotPgpchat {
                        address: to,
                        why: Box::new(why),
                    })
                }
            }
            Err(
                why @ (ProbeError::NotPgpchat | ProbeError::Unexpected(_) | ProbeError::Timeout),
            ) => Err(AddContactError::NotPgpchat {
                address: to,
                why: Box::new(why),
            }),
            Err(why) => Err(AddContactError::Probe {
                address: to,
                why: Box::new(why),
            }),
        };
    }
    Err(AddContactError::Unreachable {
        address: address.trim().to_string(),
        source: last.unwrap_or_else(|| std::io::Error::other("the name has no address")),
    })
}

/// Counters, readable through [`GetProbeStats`].
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ProbeStats {
    /// Re-probes started (not counting `add-contact`).
    pub reprobes: u64,
    pub reprobes_answered: u64,
}

pub struct Prober {
    node: String,
    settings: Settings,
    keys: KeysHandle,
    contacts: Addr<ContactRegistry>,
    /// Contacts being re-probed now (one probe each at most).
    reprobing: HashSet<String>,
    adds_in_flight: usize,
    stats: ProbeStats,
}

impl Prober {
    pub fn new(settings: Settings, keys: KeysHandle, contacts: Addr<ContactRegistry>) -> Self {
        Self {
            node: settings.node.name.clone(),
            settings,
            keys,
            contacts,
            reprobing: HashSet::new(),
            adds_in_flight: 0,
            stats: ProbeStats::default(),
        }
    }

    /// Probe every contact the registry says is due.
    fn reprobe(&mut self, ctx: &mut Context<Self>) {
        let contacts = self.contacts.clone();
        ctx.spawn(
            async move { contacts.send(DueProbes).await.unwrap_or_default() }
                .into_actor(self)
                .map(|due, act, ctx| {
                    for (fingerprint, address) in due {
                        if !act.reprobing.insert(fingerprint.clone()) {
                            continue;
                        }
                        act.stats.reprobes += 1;
                        act.reprobe_one(fingerprint, address, ctx);
                    }
                }),
        );
    }

    fn reprobe_one(&mut self, fingerprint: String, address: String, ctx: &mut Context<Self>) {
        let keys = self.keys.clone();
        let deadline = self.settings.handshake_timeout();
        let max = self.settings.limits.max_frame_bytes;
        let contacts = self.contacts.clone();
        let fp = fingerprint.clone();
        let fut = async move {
            let answered = match probe_address(&keys, deadline, max, &address).await {
                Ok((a, from)) if a.fingerprint == fp => {
                    let seen = AnnounceSeen::new(a, from.ip(), ContactOrigin::Added);
                    let _ = contacts.send(seen).await;
                    Ok(())
                }
                Ok((a, _)) => Err(format!("answered as another key, {}", a.fingerprint)),
                Err(e) => Err(e.to_string()),
            };
            let _ = contacts
                .send(Probed {
                    fingerprint: fp,
                    answered: answered.is_ok(),
                })
                .await;
            answered
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
            act.reprobing.remove(&fingerprint);
            match res {
                Ok(()) => act.stats.reprobes_answered += 1,
                Err(e) => log::debug!("[{}] re-probe of {fingerprint}: {e}", act.node),
            }
        }));
    }
}

impl Actor for Prober {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let interval = Duration::from_secs(self.settings.discovery.interval_secs);
        ctx.run_interval(interval, |act, ctx| act.reprobe(ctx));
    }
}

/// Add the node at `HOST:PORT` as a contact; answers with the contact once stored in the registry.
#[derive(Message)]
#[rtype(result = "Result<ContactRecord, AddContactError>")]
pub struct AddContact {
    pub address: String,
    /// Only this fingerprint may answer (`add-contact --dht`: the address came from its DHT
    /// record, which anyone can overwrite): another key is refused before anything is stored.
    pub expect: Option<String>,
}

impl Handler<AddContact> for Prober {
    type Result = ResponseActFuture<Self, Result<ContactRecord, AddContactError>>;
    fn handle(&mut self, m: AddContact, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = parse_host_port(&m.address) {
            return Box::pin(fut::ready(Err(e)));
        }
        if self.adds_in_flight >= MAX_ADDS_IN_FLIGHT {
            return Box::pin(fut::ready(Err(AddContactError::Busy)));
        }
        self.adds_in_flight += 1;
        let keys = self.keys.clone();
        let deadline = self.settings.handshake_timeout();
        let max = self.settings.limits.max_frame_bytes;
        let contacts = self.contacts.clone();
        let address = m.address.trim().to_string();
        let expect = m.expect;
        let fut = async move {
            let gone = |_| AddContactError::Unavailable;
            if contacts.send(ProbedCount).await.map_err(gone)? >= MAX_PROBED_ADDRESSES {
                return Err(AddContactError::TooMany);
            }
            let (announce, from) = probe_address(&keys, deadline, max, &address).await?;
            let fp = announce.fingerprint.clone();
            if let Some(expected) = expect.filter(|e| *e != fp) {
                return Err(AddContactError::OtherKey {
                    address: from,
                    expected,
                    found: fp,
                });
            }
            if fp == keys.fingerprint() {
                return Err(AddContactError::Own(from));
            }
            if contacts.send(IsBlocked(fp.clone())).await.map_err(gone)? {
                return Err(AddContactError::Blocked(fp));
            }
            let mut seen = AnnounceSeen::new(announce, from.ip(), ContactOrigin::Added);
            seen.probe_address = Some(address);
            contacts.send(seen).await.map_err(gone)?;
            contacts
                .send(FindContact(fp.clone()))
                .await
                .map_err(gone)?
                .map_err(|_| AddContactError::TableFull(fp))
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            act.adds_in_flight -= 1;
            if let Ok(c) = &res {
                log::info!(
                    "[{}] contact {} {} added by address",
                    act.node,
                    c.name,
                    c.fingerprint
                );
            }
            res
        }))
    }
}

#[derive(Message)]
#[rtype(result = "ProbeStats")]
pub struct GetProbeStats;

impl Handler<GetProbeStats> for Prober {
    type Result = MessageResult<GetProbeStats>;
    fn handle(&mut self, _: GetProbeStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("127.0.0.1:4000").unwrap(),
            ("127.0.0.1".into(), 4000)
        );
        assert_eq!(
            parse_host_port(" localhost:9 ").unwrap(),
            ("localhost".into(), 9)
        );
        assert_eq!(parse_host_port("[::1]:4000").unwrap(), ("::1".into(), 4000));
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "::1:4000",
            "[::1]4000",
            ":4000",
            "a b:1",
            "[nothex]:1",
        ] {
            assert!(
                matches!(parse_host_port(bad), Err(AddContactError::BadAddress(_))),
                "{bad}"
            );
        }
    }
}
