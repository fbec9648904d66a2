//! Expired entries: invisible from the instant they expire (every read checks the clock), and deleted by a
//! background purger so the file tracks the live ones.
//!
//! The purger must not stall requests, however many entries the store holds. So it never scans in the writer:
//! it reads each table in chunks of [`SCAN_CHUNK`] entries, each in its own short read transaction (redb's MVCC
//! readers never wait for the writer, and a short one does not keep old pages from being reused), and hands the
//! expired keys it found to the writer in jobs of at most [`DELETE_CHUNK`] keys. Each job checks every key again
//! before deleting it (it may have been renewed since the scan) and goes through the writer's queue like any
//! request's write, so a request waits behind at most one small job. Measured with `tests/bench/scale.sh`: a
//! whole-table scan inside one write job (the earlier purger) held the writer for over a second with 1,000,000
//! live tokens.

use std::ops::Bound;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    Value, WriteTransaction,
};
use tokio::sync::mpsc;

use super::writer::{storage, submit, Job, OpError, Shared};
use super::{marker_until, EmbeddedStore, ISSUED, ONCE, RATES, RECORDS, REQUESTS, REVOKED};
use crate::store::StoreError;

/// Entries examined per read transaction.
const SCAN_CHUNK: usize = 4096;
/// Most keys one delete job removes: it keeps each of the writer's transactions small.
const DELETE_CHUNK: usize = 256;

/// The expiry of an entry of the records table: a record's, or a marker's (8 bytes; a record is a JSON object,
/// never that short). An undecodable record counts as expired (nothing can ever read it).
fn record_until(bytes: &[u8]) -> i64 {
    /// Only the field the purger needs: cheaper to decode than the whole record.
    #[derive(serde::Deserialize)]
    struct Expiry {
        expires_at_ms: i64,
    }
    if bytes.len() == 8 {
        return marker_until(bytes);
    }
    serde_json::from_slice::<Expiry>(bytes).map_or(i64::MIN, |e| e.expires_at_ms)
}

fn request_until(stored: &[u8]) -> i64 {
    stored
        .get(..8)
        .and_then(|until| until.try_into().ok())
        .map_or(i64::MIN, i64::from_be_bytes)
}

fn plain_until(until: i64) -> i64 {
    until
}

fn rate_until((_, _, _, expires): (i64, u32, i64, i64)) -> i64 {
    expires
}

/// What a purge pass reaches: weak handles, so a pass in progress never keeps a dropped store's file open.
struct Purger {
    shared: Weak<Shared>,
    jobs: mpsc::WeakSender<Job>,
    purged: Counter,
    pass_seconds: Histogram,
}

fn gone() -> StoreError {
    StoreError::Unavailable("token store closed".to_owned())
}

impl Purger {
    /// Deletes every entry expired at `now` from every table; returns how many. Deleted entries are counted as
    /// each delete job commits (a pass that fails half-way has still deleted those); the duration of a pass is
    /// recorded when it completes.
    async fn pass(&self, now: i64) -> Result<usize, StoreError> {
        let started = Instant::now();
        let mut removed = 0;
        for kind in Kind::ALL {
            removed += self.table(kind, now).await?;
        }
        self.pass_seconds.observe(started.elapsed().as_secs_f64());
        Ok(removed)
    }

    async fn table(&self, kind: Kind, now: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut after: Option<String> = None;
        loop {
            let shared = self.shared.upgrade().ok_or_else(gone)?;
            let start = after.take();
            let (expired, last) =
                tokio::task::spawn_blocking(move || kind.scan(&shared, start, now))
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?
                    .map_err(|e| match e {
                        OpError::Corrupt(cause) | OpError::Storage(cause) => {
                            StoreError::Unavailable(cause)
                        }
                    })?;
            for keys in expired.chunks(DELETE_CHUNK) {
                let keys = keys.to_vec();
                let jobs = self.jobs.upgrade().ok_or_else(gone)?;
                let deleted = submit(&jobs, move |txn| kind.delete(txn, &keys, now)).await?;
                self.purged.inc_by(deleted as u64);
                removed += deleted;
            }
            match last {
                Some(key) => after = Some(key),
                None => return Ok(removed),
            }
        }
    }
}

/// The tables whose entries expire.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Records,
    Once,
    Revoked,
    Issued,
    Requests,
    Rates,
}

impl Kind {
    const ALL: [Self; 6] = [
        Self::Records,
        Self::Once,
        Self::Revoked,
        Self::Issued,
        Self::Requests,
        Self::Rates,
    ];

    /// Reads up to [`SCAN_CHUNK`] entries after `after` (from the start when `None`); returns the expired keys
    /// among them, and the last key read when the table may hold more.
    fn scan(
        self,
        shared: &Shared,
        after: Option<String>,
        now: i64,
    ) -> Result<(Vec<String>, Option<String>), OpError> {
        let db = shared
            .handle()
            .ok_or_else(|| OpError::Storage("token store is being reopened".to_owned()))?;
        let txn = db.begin_read().map_err(storage)?;
        let after = after.as_deref();
        match self {
            Self::Records => scan(&txn, RECORDS, record_until, after, now),
            Self::Once => scan(&txn, ONCE, plain_until, after, now),
            Self::Revoked => scan(&txn, REVOKED, plain_until, after, now),
            Self::Issued => scan(&txn, ISSUED, plain_until, after, now),
            Self::Requests => scan(&txn, REQUESTS, request_until, after, now),
            Self::Rates => scan(&txn, RATES, rate_until, after, now),
        }
    }

    /// Deletes those of `keys` that are still expired at `now` (one may have been renewed since the scan).
    fn delete(self, txn: &WriteTransaction, keys: &[String], now: i64) -> Result<usize, OpError> {
        match self {
            Self::Records => delete(txn, RECORDS, record_until, keys, now),
            Self::Once => delete(txn, ONCE, plain_until, keys, now),
            Self::Revoked => delete(txn, REVOKED, plain_until, keys, now),
            Self::Issued => delete(txn, ISSUED, plain_until, keys, now),
            Self::Requests => delete(txn, REQUESTS, request_until, keys, now),
            Self::Rates => delete(txn, RATES, rate_until, keys, now),
        }
    }
}

fn scan<V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<&'static str, V>,
    until: impl Fn(V::SelfType<'_>) -> i64,
    after: Option<&str>,
    now: i64,
) -> Result<(Vec<String>, Option<String>), OpError> {
    let table = txn.open_table(table).map_err(storage)?;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut expired = Vec::new();
    let mut read = 0;
    for entry in table
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(storage)?
    {
        let (key, value) = entry.map_err(storage)?;
        if until(value.value()) <= now {
            expired.push(key.value().to_owned());
        }
        read += 1;
        if read == SCAN_CHUNK {
            return Ok((expired, Some(key.value().to_owned())));
        }
    }
    Ok((expired, None))
}

fn delete<V: Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<&'static str, V>,
    until: impl Fn(V::SelfType<'_>) -> i64,
    keys: &[String],
    now: i64,
) -> Result<usize, OpError> {
    let mut table = txn.open_table(table).map_err(storage)?;
    let mut deleted = 0;
    for key in keys {
        let still_expired = table
            .get(key.as_str())
            .map_err(storage)?
            .is_some_and(|value| until(value.value()) <= now);
        if still_expired {
            table.remove(key.as_str()).map_err(storage)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

impl EmbeddedStore {
    fn purger(&self) -> Purger {
        Purger {
            shared: Arc::downgrade(&self.shared),
            jobs: self.jobs.downgrade(),
            purged: self.shared.purged.clone(),
            pass_seconds: self.shared.purge_seconds.clone(),
        }
    }

    pub(super) fn spawn_purger(&self, every: Duration) {
        let purger = self.purger();
        let clock = self.clock.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let mut tick = tokio::time::interval(every);
                // A pass longer than the interval is followed by the next one, not by a burst of them.
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if purger.jobs.upgrade().is_none() {
                        break;
                    }
                    match purger.pass(clock.now_millis()).await {
                        Ok(removed) if removed > 0 => {
                            tracing::debug!(removed, "purged expired store entries");
                        }
                        Ok(_) => {}
                        Err(_) if purger.jobs.upgrade().is_none() => break,
                        Err(e) => tracing::warn!(error = %e, "store purge failed"),
                    }
                }
            });
        }
    }

    /// Removes every expired entry now (the background purger does this periodically); returns how many.
    pub async fn purge_now(&self) -> Result<usize, StoreError> {
        self.purger().pass(self.clock.now_millis()).await
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
