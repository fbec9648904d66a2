//! Expired entries: invisible from the instant they expire (every read checks the clock), and deleted by a
//! background purger so the file tracks the live ones.

use std::time::Duration;

use redb::{ReadableTableMetadata, WriteTransaction};

use super::writer::{storage, submit, OpError};
use super::{decode, EmbeddedStore, ISSUED, ONCE, RATES, RECORDS, REQUESTS, REVOKED};
use crate::store::StoreError;

impl EmbeddedStore {
    pub(super) fn spawn_purger(&self, every: Duration) {
        // The purger holds only a weak sender, so it ends once every store handle (and with it the writer) is gone.
        let jobs = self.jobs.downgrade();
        let clock = self.clock.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(jobs) = jobs.upgrade() else { break };
                    let now = clock.now_millis();
                    let store_jobs = jobs.clone();
                    drop(jobs);
                    match submit(&store_jobs, move |txn| purge(txn, now)).await {
                        Ok(removed) if removed > 0 => {
                            tracing::debug!(removed, "purged expired store entries");
                        }
                        Err(e) => tracing::warn!(error = %e, "store purge failed"),
                        Ok(_) => {}
                    }
                }
            });
        }
    }

    /// Removes every expired entry now (the background purger does this periodically); returns how many.
    pub async fn purge_now(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_millis();
        self.write(move |txn| purge(txn, now)).await
    }

    /// Number of entries stored across all tables, expired or not (for tests of the purge).
    pub async fn stored_entries(&self) -> Result<u64, StoreError> {
        self.read(|txn| {
            let mut total = 0;
            total += txn
                .open_table(RECORDS)
                .map_err(storage)?
                .len()
                .map_err(storage)?;
            total += txn
                .open_table(ONCE)
                .map_err(storage)?
                .len()
                .map_err(storage)?;
            total += txn
                .open_table(RATES)
                .map_err(storage)?
                .len()
                .map_err(storage)?;
            total += txn
                .open_table(REVOKED)
                .map_err(storage)?
                .len()
                .map_err(storage)?;
            total += txn
                .open_table(ISSUED)
                .map_err(storage)?
                .len()
                .map_err(storage)?;
            Ok(total)
        })
        .await
    }
}

fn purge(txn: &WriteTransaction, now: i64) -> Result<usize, OpError> {
    let mut removed = 0usize;
    {
        let mut table = txn.open_table(RECORDS).map_err(storage)?;
        table
            .retain(|_, bytes| {
                let keep = decode(bytes).is_ok_and(|r| r.expires_at_ms > now);
                removed += usize::from(!keep);
                keep
            })
            .map_err(storage)?;
    }
    for table_def in [ONCE, REVOKED, ISSUED] {
        let mut table = txn.open_table(table_def).map_err(storage)?;
        table
            .retain(|_, until| {
                removed += usize::from(until <= now);
                until > now
            })
            .map_err(storage)?;
    }
    {
        let mut table = txn.open_table(REQUESTS).map_err(storage)?;
        table
            .retain(|_, stored| {
                let keep = stored
                    .get(..8)
                    .and_then(|until| until.try_into().ok())
                    .is_some_and(|until| i64::from_be_bytes(until) > now);
                removed += usize::from(!keep);
                keep
            })
            .map_err(storage)?;
    }
    let mut table = txn.open_table(RATES).map_err(storage)?;
    table
        .retain(|_, (_, _, _, expires)| {
            removed += usize::from(expires <= now);
            expires > now
        })
        .map_err(storage)?;
    Ok(removed)
}
