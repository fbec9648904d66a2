//! The reset detector: an epoch key each instance checks (see the module doc of `store::redis`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::RedisStore;
use crate::store::{ResetPolicy, StoreError};

/// Prefix of an epoch written by `tokenmint store-acknowledge-reset`: instances that found the store reset adopt it.
pub(super) const ACKNOWLEDGED: &str = "ack-";

/// The store's epoch as this instance knows it.
#[derive(Debug, Default)]
pub(super) struct Epoch {
    /// The epoch value this instance serves under; `None` until Redis was first reached.
    known: Mutex<Option<String>>,
    /// The store was reset under this instance and nobody has acknowledged it yet.
    reset: AtomicBool,
}

impl RedisStore {
    pub(super) fn epoch_key(&self) -> String {
        self.key("meta", "epoch")
    }

    /// Checks the epoch key once against what this instance knows (see the module doc).
    pub(super) async fn check_epoch(&self) -> Result<(), StoreError> {
        let mut get = redis::cmd("GET");
        get.arg(self.epoch_key());
        let current: Option<String> = self.query(get).await?;
        let known = self
            .epoch
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (known, current) {
            (Some(known), Some(current)) if known == current => {}
            (None, Some(current)) => self.adopt(current),
            (None, None) => {
                tracing::warn!(
                    "no store epoch in Redis: this is a new store, or it was emptied before this instance \
                     started; writing one"
                );
                self.create_epoch().await?;
            }
            (Some(_), Some(current)) if current.starts_with(ACKNOWLEDGED) => {
                if self.epoch.reset.swap(false, Ordering::AcqRel) {
                    tracing::warn!("store reset acknowledged by an operator; serving again");
                } else {
                    tracing::error!(
                        "the store was reset and acknowledged before this instance noticed"
                    );
                }
                self.adopt(current);
            }
            (Some(_), current) => {
                let how = if current.is_none() {
                    "vanished"
                } else {
                    "changed"
                };
                match self.on_reset {
                    ResetPolicy::Continue => {
                        tracing::error!(
                            epoch = how,
                            "the Redis store was reset: replay guards, used tokens and revocations are lost; \
                             continuing (store.redis.on_reset = \"continue\")"
                        );
                        match current {
                            Some(current) => self.adopt(current),
                            None => self.create_epoch().await?,
                        }
                    }
                    ResetPolicy::Refuse => {
                        if !self.epoch.reset.swap(true, Ordering::AcqRel) {
                            tracing::error!(
                                epoch = how,
                                "the Redis store was reset: replay guards, used tokens and revocations are lost; \
                                 refusing state-dependent requests until `tokenmint store-acknowledge-reset`"
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn adopt(&self, epoch: String) {
        *self.epoch.known.lock().unwrap_or_else(|e| e.into_inner()) = Some(epoch);
    }

    /// Writes a fresh epoch unless another instance just did, then adopts whichever is there.
    async fn create_epoch(&self) -> Result<(), StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(self.epoch_key())
            .arg(format!("new-{:032x}", rand::random::<u128>()))
            .arg("NX");
        let _: Option<String> = self.query(set).await?;
        let mut get = redis::cmd("GET");
        get.arg(self.epoch_key());
        if let Some(current) = self.query::<Option<String>>(get).await? {
            self.adopt(current);
        }
        Ok(())
    }

    pub(super) fn spawn_epoch_watcher(&self, every: Duration) {
        let store = self.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // Only this task holds the epoch: every other handle of the store is gone.
                    if Arc::strong_count(&store.epoch) <= 1 {
                        break;
                    }
                    // An unreachable Redis is reported by the operations themselves.
                    let _ = store.check_epoch().await;
                }
            });
        }
    }

    /// Refuses state-dependent operations while an unacknowledged reset stands.
    pub(super) fn guard(&self) -> Result<(), StoreError> {
        if self.epoch.reset.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "redis store was reset (epoch key vanished or changed); waiting for `tokenmint \
                 store-acknowledge-reset`"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}
