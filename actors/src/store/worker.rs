//! [`StoreWorker`]: the actor that owns the node's [`Store`], so that no SQLite call ever runs on
//! an event loop.
//!
//! Role: runs store jobs (closures over `&mut Store`) one at a time on its own thread (a
//! `SyncArbiter` of one: SQLite writes are serialised anyway, and one connection keeps
//! transactions simple). Messages: [`Exec`]. Peers: every actor that reads or writes the store,
//! through a [`StoreHandle`]. Lifecycle: started by the node builder once the store opened
//! (migrated, [`Store::open_with_key`]); stops with the System, closing the connection.

use std::path::Path;

use actix::prelude::*;

use super::sealing::STORAGE_KEY_BYTES;
use super::{Store, StoreError};

pub struct StoreWorker {
    store: Option<Store>,
}

impl StoreWorker {
    /// Open the database (a bad path, or a store newer than this code, fails here with the reason)
    /// and start its worker thread.
    pub fn start(
        store_path: &Path,
        key: &[u8; STORAGE_KEY_BYTES],
    ) -> Result<StoreHandle, StoreError> {
        let cell = std::sync::Mutex::new(Some(Store::open_with_key(store_path, Some(key))?));
        // One thread: the factory runs once and takes the connection opened above.
        let addr = SyncArbiter::start(1, move || StoreWorker {
            store: cell.lock().ok().and_then(|mut c| c.take()),
        });
        Ok(StoreHandle(addr))
    }
}

impl Actor for StoreWorker {
    type Context = SyncContext<Self>;
}

/// A unit of work for the store worker.
pub type StoreJob<R> = Box<dyn FnOnce(&mut Store) -> Result<R, StoreError> + Send>;

/// Run a closure against the store on the worker thread.
pub struct Exec<R: Send + 'static>(pub StoreJob<R>);

impl<R: Send + 'static> Message for Exec<R> {
    type Result = Result<R, StoreError>;
}

impl<R: Send + 'static> Handler<Exec<R>> for StoreWorker {
    type Result = Result<R, StoreError>;
    fn handle(&mut self, msg: Exec<R>, _: &mut SyncContext<Self>) -> Self::Result {
        match &mut self.store {
            Some(store) => (msg.0)(store),
            None => Err(StoreError::Unavailable),
        }
    }
}

/// A cheap handle to the store worker.
#[derive(Clone)]
pub struct StoreHandle(pub Addr<StoreWorker>);

impl StoreHandle {
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.0
            .send(Exec(Box::new(f)))
            .await
            .map_err(|_| StoreError::Unavailable)?
    }
}
