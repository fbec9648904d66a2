//! The embedded backend: redb, one file, durable group commit.
//!
//! Writes go through one writer thread that drains whatever jobs are queued, runs them in one write transaction
//! and commits once (redb's default durability: fsync'd before `commit` returns), then answers every job. So a
//! caller is told "done" only after its write is on disk, and N concurrent writes cost one fsync, not N.
//! A job that cannot be done on its own (an undecodable record) is refused before it writes anything and is
//! answered with its own error, while the rest of the batch commits. A storage failure (a full disk, an I/O
//! error) aborts the whole batch, so nothing is half-written; redb then refuses every later write until the
//! database is closed and opened again, so the writer does exactly that before its next batch, and keeps trying
//! until it succeeds (space returned). From a failed write until a readiness probe has durably written a
//! megabyte of headroom, the store reports itself not ready.
//! Reads use redb's MVCC read transactions and never wait for the writer.
//! A dedicated OS thread (not a tokio task) runs the writer (`writer.rs`) because redb's calls block on disk I/O.

mod purge;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::mpsc;

use self::writer::{open_database, storage, submit, writer, Job, OpError, Shared};

use super::{
    issue_step, millis, rate_step, use_step, Admission, EmbeddedSettings, Guard, Issued,
    RateDecision, RateLimit, RecordKey, RecordState, Repeat, StoreError, StoreMetrics, TokenRecord,
    TokenStore,
};
use crate::ttl::SharedClock;

/// Records (`<record key>` → the record, JSON) and, right beside each, the markers of tokens issued under it
/// (`<record key>` U+0001 `<token digest>` → until, 8 bytes big-endian ms; see `Store::was_issued`). A marker sorts
/// next to its record, so issuing a token writes one leaf of one B-tree, not a second leaf in a table keyed by
/// digest (which measured ~15-30 % of getToken's durable throughput). Record values are JSON objects and never 8
/// bytes long, so the two kinds are told apart by their value too (the purger does).
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const ONCE: TableDefinition<&str, i64> = TableDefinition::new("once");
/// (window start, count, locked until, entry expiry), ms.
const RATES: TableDefinition<&str, (i64, u32, i64, i64)> = TableDefinition::new("rates");
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked");
/// Markers written by earlier versions (`<token digest>:<record key>` → until, ms): still read, and purged as
/// they expire; new markers are written beside their record in [`RECORDS`].
const ISSUED: TableDefinition<&str, i64> = TableDefinition::new("issued");
/// Requests remembered with a digest (replay guards): key → until (8 bytes, big-endian ms) then the digest.
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
/// Written by readiness probes while writes are failing, to learn whether they work again.
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("probe");

/// How much a readiness probe writes (then deletes) after a write failure: a probe that fits in whatever few free
/// pages the file still has would say "ready" while real batches keep failing on a full disk.
const PROBE_HEADROOM: usize = 1024 * 1024;

/// The redb-backed store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    clock: SharedClock,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<TokenRecord, OpError> {
    serde_json::from_slice(bytes).map_err(|e| OpError::Corrupt(format!("undecodable record: {e}")))
}

/// The record stored under `key`, decoded.
fn read_record(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<TokenRecord>, OpError> {
    match table.get(key).map_err(storage)? {
        Some(bytes) => decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// A marker's time (8 bytes, big-endian ms); anything else counts as long past.
fn marker_until(stored: &[u8]) -> i64 {
    stored.try_into().map_or(i64::MIN, i64::from_be_bytes)
}

fn encode(record: &TokenRecord) -> Result<Vec<u8>, OpError> {
    serde_json::to_vec(record).map_err(|e| OpError::Corrupt(e.to_string()))
}

/// Refuses a store file that exists but is empty: it was truncated, or is not a store at all, and opening it
/// would silently start with no tokens, revocations or replay guards. Returns whether the file is new.
fn check_existing_file(path: &Path) -> Result<bool, StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => Err(unavailable(format!(
            "{} is empty (0 bytes): it was truncated or is not a tokenmint store; restore it from a backup, or \
             move it away to start with an empty store",
            path.display()
        ))),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(unavailable(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Separates a record key from a token digest in a marker's key. Record keys never contain it: NetEase room names
/// are NERTC characters, uids decimal, app keys validated at start-up; [`IssueJob::run`] refuses one that does.
const MARKER_SEPARATOR: char = '\u{1}';

/// The key of the marker of `token` issued under `key`, in [`RECORDS`].
fn marker_key(key: &RecordKey, token: &str) -> String {
    format!(
        "{}{MARKER_SEPARATOR}{}",
        key.encoded(),
        super::token_digest(token)
    )
}

/// An issue-or-extend, ready to run inside a write transaction.
struct IssueJob {
    key: String,
    candidate: String,
    ttl: Duration,
    single_use: bool,
    marker: Option<(String, i64)>,
}

impl IssueJob {
    fn new(
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Self {
        Self {
            marker: mark_issued_until.map(|until| (marker_key(key, candidate), until)),
            key: key.encoded(),
            candidate: candidate.to_owned(),
            ttl,
            single_use,
        }
    }

    fn run(&self, txn: &WriteTransaction, now: i64) -> Result<Issued, OpError> {
        if self.key.contains(MARKER_SEPARATOR) {
            return Err(OpError::Corrupt(
                "a record key cannot contain U+0001".to_owned(),
            ));
        }
        let mut table = txn.open_table(RECORDS).map_err(storage)?;
        let existing = read_record(&table, &self.key)?;
        let issued = issue_step(existing, &self.candidate, now, self.ttl, self.single_use);
        table
            .insert(self.key.as_str(), encode(&issued.record)?.as_slice())
            .map_err(storage)?;
        // In the same transaction as the record, beside it: no issued token is ever stored without its marker.
        if let (true, Some((marker, until))) = (issued.created, &self.marker) {
            table
                .insert(marker.as_str(), until.to_be_bytes().as_slice())
                .map_err(storage)?;
        }
        Ok(issued)
    }
}

/// Records `key` for `ttl` unless it is remembered; `true` the first time.
fn remember_once_in(
    txn: &WriteTransaction,
    key: &str,
    ttl: Duration,
    now: i64,
) -> Result<bool, OpError> {
    let mut table = txn.open_table(ONCE).map_err(storage)?;
    let seen = table
        .get(key)
        .map_err(storage)?
        .is_some_and(|until| until.value() > now);
    if !seen {
        table
            .insert(key, now.saturating_add(millis(ttl)))
            .map_err(storage)?;
    }
    Ok(!seen)
}

/// Records request `key` with `digest` for `ttl` unless it is remembered; says whether it was new, the same or
/// another request.
fn remember_request_in(
    txn: &WriteTransaction,
    key: &str,
    digest: &str,
    ttl: Duration,
    now: i64,
) -> Result<Repeat, OpError> {
    let mut table = txn.open_table(REQUESTS).map_err(storage)?;
    let seen = table.get(key).map_err(storage)?.and_then(|stored| {
        let stored = stored.value();
        let until = i64::from_be_bytes(stored.get(..8)?.try_into().ok()?);
        (until > now).then(|| stored[8..] == *digest.as_bytes())
    });
    match seen {
        Some(true) => Ok(Repeat::Same),
        Some(false) => Ok(Repeat::Different),
        None => {
            let mut value = now.saturating_add(millis(ttl)).to_be_bytes().to_vec();
            value.extend_from_slice(digest.as_bytes());
            table.insert(key, value.as_slice()).map_err(storage)?;
            Ok(Repeat::First)
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file and starts the writer thread and the purger.
    pub fn open(settings: &EmbeddedSettings, clock: SharedClock) -> Result<Self, StoreError> {
        Self::open_with_metrics(settings, clock, &StoreMetrics::new("embedded"))
    }

    /// Like [`EmbeddedStore::open`], recording batch sizes and commit times into `metrics`.
    pub fn open_with_metrics(
        settings: &EmbeddedSettings,
        clock: SharedClock,
        metrics: &StoreMetrics,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let created = check_existing_file(&settings.path)?;
        let cache_bytes = settings.cache_mb.max(1).saturating_mul(1 << 20);
        let db = open_database(&settings.path, cache_bytes).map_err(unavailable)?;
        if created {
            tracing::warn!(
                path = %settings.path.display(),
                "created a new, empty token store: no earlier tokens, revocations or replay guards exist; if one \
                 was expected here, stop and check the store path and volume"
            );
        }
        let shared = Arc::new(Shared {
            path: settings.path.clone(),
            cache_bytes,
            db: RwLock::new(Some(Arc::new(db))),
            writable: AtomicBool::new(true),
            batch_size: metrics.batch_size.clone(),
            commit_seconds: metrics.commit_seconds.clone(),
            purged: metrics.purged.clone(),
            purge_seconds: metrics.purge_seconds.clone(),
        });

        let (tx, rx) = mpsc::channel::<Job>(4096);
        let max_batch = if settings.group_commit {
            settings.max_batch.max(1)
        } else {
            1
        };
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("tokenmint-store-writer".to_owned())
            .spawn(move || writer(&writer_shared, rx, max_batch))
            .map_err(unavailable)?;
        let store = Self {
            shared,
            jobs: tx,
            clock,
        };
        store.spawn_purger(Duration::from_secs(settings.purge_interval_secs.max(1)));
        Ok(store)
    }

    /// Runs `op` in the writer's next transaction and waits until that transaction is durable.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&WriteTransaction) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T, StoreError> {
        submit(&self.jobs, op).await
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&redb::ReadTransaction) -> Result<T, OpError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self
            .shared
            .handle()
            .ok_or_else(|| unavailable("token store is being reopened after a write failure"))?;
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            op(&txn)
        })
        .await
        .map_err(unavailable)?
        .map_err(|e| match e {
            OpError::Corrupt(cause) => StoreError::Corrupt(cause),
            OpError::Storage(cause) => StoreError::Unavailable(cause),
        })
    }
}

impl TokenStore for EmbeddedStore {
    async fn issue_or_extend(
        &self,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Result<Issued, StoreError> {
        let issue = IssueJob::new(key, candidate, ttl, single_use, mark_issued_until);
        let now = self.clock.now_millis();
        self.write(move |txn| issue.run(txn, now)).await
    }

    async fn guarded_issue(
        &self,
        guard: &Guard,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Result<Option<Issued>, StoreError> {
        let issue = IssueJob::new(key, candidate, ttl, single_use, mark_issued_until);
        let (guard, now) = (guard.clone(), self.clock.now_millis());
        // One transaction, one commit: the guard and the record are durable together or not at all.
        self.write(move |txn| {
            let admitted = match &guard.digest {
                Some(digest) => {
                    remember_request_in(txn, &guard.key, digest, guard.ttl, now)?
                        != Repeat::Different
                }
                None => remember_once_in(txn, &guard.key, guard.ttl, now)?,
            };
            if admitted {
                issue.run(txn, now).map(Some)
            } else {
                Ok(None)
            }
        })
        .await
    }

    async fn was_issued(&self, key: &RecordKey, token: &str) -> Result<bool, StoreError> {
        let (marker, earlier, now) = (
            marker_key(key, token),
            super::issued_id(key, token),
            self.clock.now_millis(),
        );
        self.read(move |txn| {
            let beside = txn
                .open_table(RECORDS)
                .map_err(storage)?
                .get(marker.as_str())
                .map_err(storage)?
                .map(|until| marker_until(until.value()));
            let until = match beside {
                Some(until) => until,
                // Not beside its record: maybe written by an earlier version, in the old table.
                None => txn
                    .open_table(ISSUED)
                    .map_err(storage)?
                    .get(earlier.as_str())
                    .map_err(storage)?
                    .map_or(i64::MIN, |until| until.value()),
            };
            Ok(until > now)
        })
        .await
    }

    async fn use_token(&self, key: &RecordKey, token: &str) -> Result<Admission, StoreError> {
        let (key, token, now) = (key.encoded(), token.to_owned(), self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(storage)?;
            let existing = read_record(&table, &key)?;
            let (admission, write_back) = use_step(existing, &token, now);
            if let Some(record) = write_back {
                table
                    .insert(key.as_str(), encode(&record)?.as_slice())
                    .map_err(storage)?;
            }
            Ok(admission)
        })
        .await
    }

    async fn revoke(&self, key: &RecordKey) -> Result<Option<TokenRecord>, StoreError> {
        let (key, now) = (key.encoded(), self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(storage)?;
            let existing = read_record(&table, &key)?;
            match existing {
                Some(mut record)
                    if record.expires_at_ms > now && record.state != RecordState::Revoked =>
                {
                    record.state = RecordState::Revoked;
                    table
                        .insert(key.as_str(), encode(&record)?.as_slice())
                        .map_err(storage)?;
                    Ok(Some(record))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    async fn remember_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (key, now) = (key.to_owned(), self.clock.now_millis());
        self.write(move |txn| remember_once_in(txn, &key, ttl, now))
            .await
    }

    async fn remember_request(
        &self,
        key: &str,
        digest: &str,
        ttl: Duration,
    ) -> Result<Repeat, StoreError> {
        let (key, digest, now) = (key.to_owned(), digest.to_owned(), self.clock.now_millis());
        self.write(move |txn| remember_request_in(txn, &key, &digest, ttl, now))
            .await
    }

    async fn hit(&self, key: &str, limit: &RateLimit) -> Result<RateDecision, StoreError> {
        let (key, limit, now) = (key.to_owned(), *limit, self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RATES).map_err(storage)?;
            let state = table
                .get(key.as_str())
                .map_err(storage)?
                .map(|v| v.value())
                .filter(|(_, _, _, expires)| *expires > now)
                .map(|(start, count, locked, _)| (start, count, locked));
            let ((start, count, locked), decision) = rate_step(state, now, &limit);
            let expires = (start.saturating_add(millis(limit.window))).max(locked);
            table
                .insert(key.as_str(), (start, count, locked, expires))
                .map_err(storage)?;
            Ok(decision)
        })
        .await
    }

    async fn revoke_until(&self, subject: &str, until_ms: i64) -> Result<(), StoreError> {
        let subject = subject.to_owned();
        self.write(move |txn| {
            let mut table = txn.open_table(REVOKED).map_err(storage)?;
            table.insert(subject.as_str(), until_ms).map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn is_revoked(&self, subject: &str) -> Result<bool, StoreError> {
        let (subject, now) = (subject.to_owned(), self.clock.now_millis());
        self.read(move |txn| {
            let table = txn.open_table(REVOKED).map_err(storage)?;
            Ok(table
                .get(subject.as_str())
                .map_err(storage)?
                .is_some_and(|until| until.value() > now))
        })
        .await
    }

    /// Ready when the database is open and writes work. After a write failure, each call tries one small write
    /// (which also reopens the database when needed), so readiness returns as soon as writes do.
    async fn ping(&self) -> Result<(), StoreError> {
        if self.shared.writable.load(Ordering::Acquire) && self.shared.handle().is_some() {
            return self
                .read(|txn| txn.open_table(RECORDS).map(|_| ()).map_err(storage))
                .await;
        }
        // Writes failed: ready again only once [`PROBE_HEADROOM`] can be written durably (then freed for use).
        self.write(|txn| {
            txn.open_table(PROBE)
                .map_err(storage)?
                .insert("headroom", vec![0u8; PROBE_HEADROOM].as_slice())
                .map_err(storage)?;
            Ok(())
        })
        .await?;
        self.write(|txn| {
            txn.open_table(PROBE)
                .map_err(storage)?
                .remove("headroom")
                .map_err(storage)?;
            Ok(())
        })
        .await?;
        if !self.shared.writable.swap(true, Ordering::AcqRel) {
            tracing::info!("token store writes work again");
        }
        Ok(())
    }
}
