//! Running one decoded request on the node: one arm per method, each turning the node's answer
//! (store rows, actor replies) into the API's typed [`Response`].

use std::sync::OnceLock;

use serde_json::Value;

use crate::api::{self, Request, Response};
use crate::node::{ApiError, NodeHandle};

/// Default and largest `limit` of `history`.
pub const DEFAULT_HISTORY: u64 = 100;
pub const MAX_HISTORY: u64 = 100_000;

/// The OpenRPC document, built once.
fn discover() -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(api::openrpc::document).clone()
}

/// Run one request. `subscribe` is the connection's business: here it only answers.
/// `client_gone` ends when the connection that sent `request` closes (an `open` is then withdrawn).
pub async fn dispatch(
    node: &NodeHandle,
    request: Request,
    client_gone: tokio::sync::watch::Receiver<()>,
) -> Result<Response, ApiError> {
    Ok(match request {
        Request::Whoami(_) => Response::Whoami(node.whoami().into()),
        Request::Status(_) => Response::Status(api::Status {
            whoami: node.whoami().into(),
            version: api::VersionInfo::current(),
            discovery: node.discovery_stats().await?.into(),
            dht: node.dht_status().await?.into(),
        }),
        Request::Version(_) => Response::Version(api::VersionInfo::current()),
        Request::Contacts(_) => Response::Contacts(contacts(node).await?),
        Request::Verify(r) => Response::Verify(
            (&node
                .set_verified(&r.contact, r.verified.unwrap_or(true))
                .await?)
                .into(),
        ),
        Request::ContactsFrom(r) => {
            Response::ContactsFrom(node.contacts_from(&r.peer).await?.into())
        }
        Request::NeverShare(r) => {
            let never = r.never.unwrap_or(true);
            Response::NeverShare(api::NeverShared {
                fingerprint: node.set_never_share(&r.contact, never).await?,
                never_share: never,
            })
        }
        Request::AddContact(r) => {
            let c = if r.dht == Some(true) {
                node.add_contact_dht(&r.address).await?
            } else {
                node.add_contact(&r.address).await?
            };
            Response::AddContact((&c).into())
        }
        Request::RemoveContact(r) => {
            Response::RemoveContact((&node.remove_contact(&r.contact).await?).into())
        }
        Request::Block(r) => {
            let blocked = r.blocked.unwrap_or(true);
            Response::Block(api::BlockAnswer {
                fingerprint: node.block(&r.fingerprint, blocked).await?,
                blocked,
            })
        }
        Request::Blocked(_) => Response::Blocked(node.blocked().await?),
        Request::Open(r) => {
            let mut gone = client_gone;
            // `changed` fails when the connection drops its sender: then the asker is gone.
            let gone = Box::pin(async move { while gone.changed().await.is_ok() {} });
            Response::Open(api::Opened {
                discussion_id: node.open_while(&r.contact, &r.password, Some(gone)).await?,
            })
        }
        Request::Cancel(r) => Response::Cancel(api::Cancelled {
            cancelled: node.cancel(&r.contact).await?,
        }),
        Request::Requests(r) if r.refused.unwrap_or(false) => {
            Response::Requests(api::RequestList::Refused(
                node.refused_requests()
                    .await?
                    .iter()
                    .map(api::Refusal::from)
                    .collect(),
            ))
        }
        Request::Requests(_) => Response::Requests(api::RequestList::Pending(
            node.requests()
                .await?
                .iter()
                .map(api::PendingRequest::from)
                .collect(),
        )),
        Request::Accept(r) => Response::Accept(api::Opened {
            discussion_id: node.accept(r.request, &r.password).await?,
        }),
        Request::Refuse(r) => {
            node.refuse(r.request).await?;
            Response::Refuse(api::RefusedAnswer { refused: true })
        }
        Request::Discussions(_) => Response::Discussions(
            node.discussions()
                .await?
                .iter()
                .map(api::Discussion::from)
                .collect(),
        ),
        Request::Send(r) => Response::Send((&node.send(&r.discussion, &r.text).await?).into()),
        Request::History(r) => {
            let limit = r.limit.map_or(DEFAULT_HISTORY, |l| l.min(MAX_HISTORY));
            let page = crate::store::HistoryPage {
                limit,
                before: r.before,
                after: r.after,
            };
            Response::History(
                node.history_page(&r.discussion, page)
                    .await?
                    .iter()
                    .map(|(position, m)| api::Message {
                        position: Some(*position),
                        ..api::Message::from(m)
                    })
                    .collect(),
            )
        }
        Request::MarkRead(r) => Response::MarkRead(api::MarkedRead {
            discussion_id: node.mark_read(&r.discussion).await?,
        }),
        Request::Close(r) => {
            let (id, state) = node.close(&r.discussion, r.force.unwrap_or(false)).await?;
            Response::Close(api::CloseAnswer {
                discussion_id: id,
                state: state.into(),
            })
        }
        Request::Rotate(r) => {
            let id = node.resolve(&r.discussion).await?;
            Response::Rotate(api::Rotated {
                key_id: node.rotate(&id).await?,
                discussion_id: id,
            })
        }
        Request::Introduce(r) => Response::Introduce(api::Introduced {
            introduction: node.introduce(&r.a, &r.b).await?,
        }),
        Request::Introductions(_) => Response::Introductions(
            node.introductions()
                .await?
                .iter()
                .map(api::Introduction::from)
                .collect(),
        ),
        Request::AcceptIntroduction(r) => Response::AcceptIntroduction(
            (&node
                .decide_introduction(local_id(r.introduction)?, true)
                .await?)
                .into(),
        ),
        Request::DeclineIntroduction(r) => Response::DeclineIntroduction(
            (&node
                .decide_introduction(local_id(r.introduction)?, false)
                .await?)
                .into(),
        ),
        Request::Shutdown(_) => {
            node.shutdown.notify_one();
            Response::Shutdown(api::Stopping { stopping: true })
        }
        Request::Subscribe(_) => Response::Subscribe(api::Subscribed { subscribed: true }),
        Request::Discover(_) => Response::Discover(discover()),
    })
}

/// Contacts, each with who introduced it (if an introduction brought it).
async fn contacts(node: &NodeHandle) -> Result<Vec<api::Contact>, ApiError> {
    let introduced = node.introduced_contacts().await?;
    Ok(node
        .contacts()
        .await?
        .iter()
        .map(|c| {
            let mut contact = api::Contact::from(c);
            contact.introduced_by = introduced
                .iter()
                .find(|(fp, _, _)| *fp == c.fingerprint)
                .map(|(_, fingerprint, name)| api::Introducer {
                    fingerprint: fingerprint.clone(),
                    name: name.clone(),
                });
            contact
        })
        .collect())
}

fn local_id(id: u64) -> Result<i64, ApiError> {
    i64::try_from(id).map_err(|_| ApiError::NotFound(format!("no introduction {id}").into()))
}
