//! The writer: one OS thread that runs queued jobs in one write transaction per batch and commits once, answers
//! each job, and after a storage failure closes the database and reopens it before its next batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::{ISSUED, ONCE, PROBE, RATES, RECORDS, REQUESTS, REVOKED};
use crate::store::StoreError;

/// Why one operation failed inside the writer's transaction.
#[derive(Debug)]
pub(super) enum OpError {
    /// This operation cannot be done (an undecodable record); nothing was written; the batch goes on.
    Corrupt(String),
    /// The transaction failed under it (I/O, a full disk); the batch is aborted.
    Storage(String),
}

pub(super) fn storage(e: impl std::fmt::Display) -> OpError {
    OpError::Storage(e.to_string())
}

/// What a job did inside the batch's transaction.
pub(super) enum Step {
    /// Done; its caller is answered once the batch is committed (or has failed).
    Done(Finisher),
    /// Refused on its own before writing anything; its caller has been answered.
    Answered,
    /// The transaction is unusable: the batch is aborted; its caller is answered with the batch's failure.
    Broken(String, Finisher),
}

pub(super) type Finisher = Box<dyn FnOnce(Result<(), String>) + Send>;
pub(super) type Job = Box<dyn FnOnce(&WriteTransaction) -> Step + Send>;

/// The database handle, shared by readers and the writer, and whether writes currently work.
pub(super) struct Shared {
    pub(super) path: PathBuf,
    /// redb's page cache, in bytes.
    pub(super) cache_bytes: usize,
    /// `None` while the writer closes and reopens the database after a storage failure.
    pub(super) db: RwLock<Option<Arc<Database>>>,
    /// False from a failed write until a write succeeds again.
    pub(super) writable: AtomicBool,
    /// Jobs per transaction (a metric).
    pub(super) batch_size: Histogram,
    /// Seconds per commit (a metric).
    pub(super) commit_seconds: Histogram,
    /// Expired entries the purger deleted (a metric).
    pub(super) purged: Counter,
    /// Seconds per purge pass (a metric).
    pub(super) purge_seconds: Histogram,
}

impl Shared {
    pub(super) fn handle(&self) -> Option<Arc<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes the database: takes it out of the slot, waits (briefly) for readers still holding it, drops it.
    fn close(&self) {
        let taken = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut db) = taken else { return };
        // Readers hold a clone only for one read transaction.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    return;
                }
                Err(shared) if Instant::now() < deadline => {
                    db = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Still held: it closes when the last reader drops it; reopening is retried until then.
                Err(_) => return,
            }
        }
    }

    /// The open database, reopening it if it was closed after a failure.
    fn open_or_reopen(&self) -> Result<Arc<Database>, String> {
        if let Some(db) = self.handle() {
            return Ok(db);
        }
        let db = Arc::new(open_database(&self.path, self.cache_bytes)?);
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        tracing::info!(path = %self.path.display(), "token store reopened after a write failure");
        Ok(db)
    }
}

/// Opens the file and makes sure every table exists, so read transactions always find them.
pub(super) fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, String> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        txn.open_table(ONCE).map_err(|e| e.to_string())?;
        txn.open_table(RATES).map_err(|e| e.to_string())?;
        txn.open_table(REVOKED).map_err(|e| e.to_string())?;
        txn.open_table(ISSUED).map_err(|e| e.to_string())?;
        txn.open_table(REQUESTS).map_err(|e| e.to_string())?;
        txn.open_table(PROBE).map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(db)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Queues `op` for the writer and waits for its answer: its value once the batch is durable, or its own error.
pub(super) async fn submit<T: Send + 'static>(
    jobs: &mpsc::Sender<Job>,
    op: impl FnOnce(&WriteTransaction) -> Result<T, OpError> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
    let job: Job = Box::new(move |txn| match op(txn) {
        Ok(value) => Step::Done(Box::new(move |committed: Result<(), String>| {
            let _ = tx.send(committed.map(|()| value).map_err(StoreError::Unavailable));
        })),
        Err(OpError::Corrupt(cause)) => {
            let _ = tx.send(Err(StoreError::Corrupt(cause)));
            Step::Answered
        }
        Err(OpError::Storage(cause)) => Step::Broken(
            cause,
            Box::new(move |failed: Result<(), String>| {
                let cause = failed
                    .err()
                    .unwrap_or_else(|| "store write failed".to_owned());
                let _ = tx.send(Err(StoreError::Unavailable(cause)));
            }),
        ),
    });
    jobs.send(job)
        .await
        .map_err(|_| unavailable("store writer stopped"))?;
    rx.await
        .map_err(|_| unavailable("store writer dropped the request"))?
}

/// The writer loop: one transaction per batch of queued jobs, one commit (fsync) per transaction. After a storage
/// failure the database is closed, and reopened before the next batch.
pub(super) fn writer(shared: &Shared, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        shared.batch_size.observe(batch.len() as f64);
        let (outcome, finishers) = match shared.open_or_reopen() {
            Ok(db) => run_batch(&db, batch.drain(..), &shared.commit_seconds),
            Err(e) => (Err(e), Vec::new()),
        };
        if let Err(e) = &outcome {
            // Not ready before anyone hears of the failure, so a caller that saw it cannot find the store ready.
            // Readiness comes back through the store's probe (`EmbeddedStore::ping`), not through a batch that
            // happened to fit in the file's last free pages.
            if shared.writable.swap(false, Ordering::AcqRel) {
                tracing::error!(error = %e, "token store write failed; reopening the database");
            }
        }
        for finish in finishers {
            finish(outcome.clone());
        }
        if outcome.is_err() {
            // Jobs not yet run drop their reply channels: each caller sees "writer dropped the request".
            drop(batch);
            shared.close();
        }
    }
}

/// Runs the jobs in one transaction and commits (or, on a storage failure, aborts); returns the outcome and the
/// answers to give, for the writer to send once it has recorded the outcome.
fn run_batch(
    db: &Database,
    batch: impl Iterator<Item = Job>,
    commit_seconds: &Histogram,
) -> (Result<(), String>, Vec<Finisher>) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return (Err(e.to_string()), Vec::new()),
    };
    let mut finishers = Vec::new();
    let mut failure = None;
    for job in batch {
        match job(&txn) {
            Step::Done(finish) => finishers.push(finish),
            Step::Answered => {}
            Step::Broken(e, finish) => {
                finishers.push(finish);
                failure = Some(e);
                break;
            }
        }
    }
    let outcome = match failure {
        Some(e) => {
            let _ = txn.abort();
            Err(e)
        }
        None => {
            let started = Instant::now();
            let committed = txn.commit().map_err(|e| e.to_string());
            commit_seconds.observe(started.elapsed().as_secs_f64());
            committed
        }
    };
    (outcome, finishers)
}
