//! The embedded backend: redb, one file, durable group commit.
//!
//! Writes go through one writer thread that drains whatever jobs are queued, runs them in one write transaction
//! and commits once (redb's default durability: fsync'd before `commit` returns), then answers every job. So a
//! caller is told "done" only after its write is on disk, and N concurrent writes cost one fsync, not N.
//! A batch is all-or-nothing: if any job in it fails, the transaction is aborted and every job in it gets the
//! error, so nothing is half-written. Reads use redb's MVCC read transactions and never wait for the writer.
//! A dedicated OS thread (not a tokio task) runs the writer because redb's calls block on disk I/O.

use std::sync::Arc;
use std::time::Duration;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    issue_step, matching_unexpired, millis, rate_step, use_step, Admission, EmbeddedSettings,
    Issued, RateDecision, RateLimit, RecordKey, RecordState, StoreError, TokenRecord,
};
use crate::ttl::SharedClock;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const ONCE: TableDefinition<&str, i64> = TableDefinition::new("once");
/// (window start, count, locked until, entry expiry), ms.
const RATES: TableDefinition<&str, (i64, u32, i64, i64)> = TableDefinition::new("rates");
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked");

type Finisher = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&WriteTransaction) -> Result<Finisher, String> + Send>;

/// The redb-backed store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
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

fn decode(bytes: &[u8]) -> Result<TokenRecord, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("undecodable record: {e}"))
}

/// The record stored under `key`, decoded.
fn read_record(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<TokenRecord>, String> {
    match table.get(key).map_err(|e| e.to_string())? {
        Some(bytes) => decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

fn encode(record: &TokenRecord) -> Result<Vec<u8>, String> {
    serde_json::to_vec(record).map_err(|e| e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the database file and starts the writer thread and the purger.
    pub fn open(settings: &EmbeddedSettings, clock: SharedClock) -> Result<Self, StoreError> {
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db =
            Arc::new(Database::create(&settings.path).map_err(|e| {
                unavailable(format!("cannot open {}: {e}", settings.path.display()))
            })?);
        // Create the tables up front so read transactions always find them.
        let txn = db.begin_write().map_err(unavailable)?;
        {
            txn.open_table(RECORDS).map_err(unavailable)?;
            txn.open_table(ONCE).map_err(unavailable)?;
            txn.open_table(RATES).map_err(unavailable)?;
            txn.open_table(REVOKED).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;

        let (tx, rx) = mpsc::channel::<Job>(4096);
        let max_batch = if settings.group_commit {
            settings.max_batch.max(1)
        } else {
            1
        };
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("tokenmint-store-writer".to_owned())
            .spawn(move || writer(writer_db, rx, max_batch))
            .map_err(unavailable)?;
        let store = Self {
            db,
            jobs: tx,
            clock,
        };
        store.spawn_purger(Duration::from_secs(settings.purge_interval_secs.max(1)));
        Ok(store)
    }

    fn spawn_purger(&self, every: Duration) {
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
                    let (tx, rx) = oneshot::channel();
                    let job: Job = Box::new(move |txn| {
                        let removed = purge(txn, now)?;
                        Ok(Box::new(move |res: Result<(), String>| {
                            let _ = tx.send(res.map(|()| removed));
                        }) as Finisher)
                    });
                    if jobs.send(job).await.is_err() {
                        break;
                    }
                    match rx.await {
                        Ok(Ok(removed)) if removed > 0 => {
                            tracing::debug!(removed, "purged expired store entries")
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "store purge failed"),
                        _ => {}
                    }
                }
            });
        }
    }

    /// Runs `op` in the writer's next transaction and waits until that transaction is durable.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&WriteTransaction) -> Result<T, String> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel::<Result<T, String>>();
        let job: Job = Box::new(move |txn| {
            let value = op(txn)?;
            Ok(Box::new(move |committed: Result<(), String>| {
                let _ = tx.send(committed.map(|()| value));
            }) as Finisher)
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| unavailable("store writer stopped"))?;
        rx.await
            .map_err(|_| unavailable("store writer dropped the request"))?
            .map_err(StoreError::Unavailable)
    }

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&redb::ReadTransaction) -> Result<T, String> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            op(&txn)
        })
        .await
        .map_err(unavailable)?
        .map_err(StoreError::Unavailable)
    }

    pub(super) async fn issue_or_extend(
        &self,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
    ) -> Result<Issued, StoreError> {
        let (key, candidate, now) = (key.encoded(), candidate.to_owned(), self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
            let existing = read_record(&table, &key)?;
            let issued = issue_step(existing, &candidate, now, ttl, single_use);
            table
                .insert(key.as_str(), encode(&issued.record)?.as_slice())
                .map_err(|e| e.to_string())?;
            Ok(issued)
        })
        .await
    }

    pub(super) async fn lookup(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let (key, token, now) = (key.encoded(), token.to_owned(), self.clock.now_millis());
        self.read(move |txn| {
            let table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
            let record = read_record(&table, &key)?;
            Ok(matching_unexpired(record, &token, now))
        })
        .await
    }

    pub(super) async fn use_token(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> Result<Admission, StoreError> {
        let (key, token, now) = (key.encoded(), token.to_owned(), self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
            let existing = read_record(&table, &key)?;
            let (admission, write_back) = use_step(existing, &token, now);
            if let Some(record) = write_back {
                table
                    .insert(key.as_str(), encode(&record)?.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            Ok(admission)
        })
        .await
    }

    pub(super) async fn revoke(&self, key: &RecordKey) -> Result<Option<TokenRecord>, StoreError> {
        let (key, now) = (key.encoded(), self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
            let existing = read_record(&table, &key)?;
            match existing {
                Some(mut record)
                    if record.expires_at_ms > now && record.state != RecordState::Revoked =>
                {
                    record.state = RecordState::Revoked;
                    table
                        .insert(key.as_str(), encode(&record)?.as_slice())
                        .map_err(|e| e.to_string())?;
                    Ok(Some(record))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    pub(super) async fn remember_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (key, now) = (key.to_owned(), self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(ONCE).map_err(|e| e.to_string())?;
            let seen = table
                .get(key.as_str())
                .map_err(|e| e.to_string())?
                .is_some_and(|until| until.value() > now);
            if !seen {
                table
                    .insert(key.as_str(), now.saturating_add(millis(ttl)))
                    .map_err(|e| e.to_string())?;
            }
            Ok(!seen)
        })
        .await
    }

    pub(super) async fn hit(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<RateDecision, StoreError> {
        let (key, limit, now) = (key.to_owned(), *limit, self.clock.now_millis());
        self.write(move |txn| {
            let mut table = txn.open_table(RATES).map_err(|e| e.to_string())?;
            let state = table
                .get(key.as_str())
                .map_err(|e| e.to_string())?
                .map(|v| v.value())
                .filter(|(_, _, _, expires)| *expires > now)
                .map(|(start, count, locked, _)| (start, count, locked));
            let ((start, count, locked), decision) = rate_step(state, now, &limit);
            let expires = (start.saturating_add(millis(limit.window))).max(locked);
            table
                .insert(key.as_str(), (start, count, locked, expires))
                .map_err(|e| e.to_string())?;
            Ok(decision)
        })
        .await
    }

    pub(super) async fn revoke_subject(
        &self,
        subject: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let subject = subject.to_owned();
        self.write(move |txn| {
            let mut table = txn.open_table(REVOKED).map_err(|e| e.to_string())?;
            table
                .insert(subject.as_str(), until_ms)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
    }

    pub(super) async fn is_revoked(&self, subject: &str) -> Result<bool, StoreError> {
        let (subject, now) = (subject.to_owned(), self.clock.now_millis());
        self.read(move |txn| {
            let table = txn.open_table(REVOKED).map_err(|e| e.to_string())?;
            Ok(table
                .get(subject.as_str())
                .map_err(|e| e.to_string())?
                .is_some_and(|until| until.value() > now))
        })
        .await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.read(|txn| {
            txn.open_table(RECORDS)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
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
                .map_err(|e| e.to_string())?
                .len()
                .map_err(|e| e.to_string())?;
            total += txn
                .open_table(ONCE)
                .map_err(|e| e.to_string())?
                .len()
                .map_err(|e| e.to_string())?;
            total += txn
                .open_table(RATES)
                .map_err(|e| e.to_string())?
                .len()
                .map_err(|e| e.to_string())?;
            total += txn
                .open_table(REVOKED)
                .map_err(|e| e.to_string())?
                .len()
                .map_err(|e| e.to_string())?;
            Ok(total)
        })
        .await
    }
}

fn purge(txn: &WriteTransaction, now: i64) -> Result<usize, String> {
    let mut removed = 0usize;
    {
        let mut table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        table
            .retain(|_, bytes| {
                let keep = decode(bytes).is_ok_and(|r| r.expires_at_ms > now);
                removed += usize::from(!keep);
                keep
            })
            .map_err(|e| e.to_string())?;
    }
    for table_def in [ONCE, REVOKED] {
        let mut table = txn.open_table(table_def).map_err(|e| e.to_string())?;
        table
            .retain(|_, until| {
                removed += usize::from(until <= now);
                until > now
            })
            .map_err(|e| e.to_string())?;
    }
    let mut table = txn.open_table(RATES).map_err(|e| e.to_string())?;
    table
        .retain(|_, (_, _, _, expires)| {
            removed += usize::from(expires <= now);
            expires > now
        })
        .map_err(|e| e.to_string())?;
    Ok(removed)
}

/// The writer loop: one transaction per batch of queued jobs, one commit (fsync) per transaction.
fn writer(db: Arc<Database>, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                tracing::error!(error = %e, "store cannot begin a write transaction");
                // The jobs' reply channels drop with them: each caller sees "store writer dropped the request".
                continue;
            }
        };
        let mut finishers = Vec::with_capacity(batch.len());
        let mut failure = None;
        for job in batch {
            match job(&txn) {
                Ok(finish) => finishers.push(finish),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let outcome = match failure {
            Some(e) => {
                let _ = txn.abort();
                tracing::error!(error = %e, "store batch aborted");
                Err(e)
            }
            None => txn.commit().map_err(|e| e.to_string()),
        };
        for finish in finishers {
            finish(outcome.clone());
        }
    }
}
