//! The token store: server-side state shared by the providers (issued tokens, single-use consumption, replay
//! guards, rate counters, revocations), with two backends behind one contract.
//!
//! Every operation is atomic under concurrency, and time comes from the injected clock: an entry whose expiry
//! has passed is invisible at that instant on both backends, whatever the backend's own purge is doing. Each
//! operation touches exactly one key, so the Redis backend also runs on Redis Cluster.
//!
//! - [`embedded`]: redb in one file; durable group commit; the default.
//! - [`redis`]: a shared Redis for many instances; Lua scripts for atomicity, Redis TTLs for purging.

mod config;
pub mod embedded;
pub mod keys;
mod metrics;
pub mod redis;
mod steps;

pub use self::config::{Backend, EmbeddedSettings, RedisSettings, ResetPolicy, StoreSettings};
pub use self::metrics::StoreMetrics;
pub(crate) use self::steps::{issue_step, issued_id, millis, rate_step, token_digest, use_step};

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ttl::SharedClock;

/// Identifies one issued token: at most one live record per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// Tenant (app key, channel, account).
    pub app: String,
    /// The user.
    pub subject: String,
    /// The room the token is bound to; empty for "any room".
    pub room: String,
}

impl RecordKey {
    /// An unambiguous single-string form (length-prefixed, so no separator can be forged).
    pub fn encoded(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.app.len(),
            self.app,
            self.subject.len(),
            self.subject,
            self.room
        )
    }
}

/// What happened to a record since it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Usable.
    Live,
    /// A single-use token that has been used.
    Consumed,
    /// Revoked; never served again.
    Revoked,
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token text.
    pub token: String,
    /// When it was first issued, ms since the epoch.
    pub issued_at_ms: i64,
    /// When it stops being valid, ms since the epoch.
    pub expires_at_ms: i64,
    /// May be used once only.
    pub single_use: bool,
    /// Its state.
    pub state: RecordState,
}

/// The outcome of [`Store::issue_or_extend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The live record (existing and extended, or new).
    pub record: TokenRecord,
    /// Whether the candidate token was stored (no live record existed).
    pub created: bool,
}

/// The outcome of [`Store::use_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The token is live and matches; a single-use token is now consumed.
    Admitted(TokenRecord),
    /// A single-use token that was already used.
    AlreadyUsed,
    /// The token was revoked.
    Revoked,
    /// No live record with this token (never issued, expired, or replaced).
    Unknown,
}

/// The outcome of [`TokenStore::remember_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Not seen inside its time to live.
    First,
    /// Seen, with the same digest.
    Same,
    /// Seen, with another digest.
    Different,
}

/// A replay guard recorded together with a write ([`TokenStore::guarded_issue`]): the request's key, how long it
/// is remembered, and, for guards that let an exact repeat through, the digest of what the request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The request's state key.
    pub key: String,
    /// `Some`: an exact repeat (same digest) is let through; `None`: any repeat is refused.
    pub digest: Option<String>,
    /// How long the request is remembered.
    pub ttl: Duration,
}

impl Guard {
    /// Records this guard on its own; `false` when it refuses the request (a repeat; with a digest, a repeat with
    /// another one).
    pub async fn record(&self, store: &impl TokenStore) -> Result<bool, StoreError> {
        Ok(match &self.digest {
            Some(digest) => {
                store.remember_request(&self.key, digest, self.ttl).await? != Repeat::Different
            }
            None => store.remember_once(&self.key, self.ttl).await?,
        })
    }
}

/// A rate limit: `limit` events per `window`, then a lock-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed per window.
    pub limit: u32,
    /// The window length.
    pub window: Duration,
    /// How long a key that exceeded the limit stays locked out (zero: until the window ends).
    pub lockout: Duration,
}

/// The outcome of [`Store::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateDecision {
    /// Whether this event is within the limit.
    pub allowed: bool,
    /// When the window (or the lock-out) ends, ms since the epoch.
    pub reset_at_ms: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time; callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something that cannot be understood; callers answer 500.
    #[error("store data error: {0}")]
    Corrupt(String),
}

/// The store contract: server-side token state, every operation atomic under concurrency, time from the injected
/// clock. Both backends implement it and one conformance suite (`tests/api/store.rs`) proves each behaviour on
/// both; [`Store`] is the configured one.
pub trait TokenStore: Send + Sync {
    /// Returns the live record for `key`, extending its expiry to now + `ttl` and updating `single_use`; or, when
    /// there is none, stores `candidate` as a new record, and with `mark_issued_until` remembers it as issued
    /// under `key` until then ([`TokenStore::was_issued`]), in the same atomic step. One live token per key,
    /// however many callers race.
    fn issue_or_extend(
        &self,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> impl Future<Output = Result<Issued, StoreError>> + Send;

    /// Records `guard` and, unless it is refused (a repeat; with a digest, a repeat with another one), issues or
    /// extends the record of `key` as [`TokenStore::issue_or_extend`] does. `None` when the guard refused: nothing
    /// else was written. The embedded store does both in one durable commit, a single Redis server in one script;
    /// on Redis Cluster they are done in turn (the guard and the record live in different hash slots), the guard
    /// first.
    fn guarded_issue(
        &self,
        guard: &Guard,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> impl Future<Output = Result<Option<Issued>, StoreError>> + Send;

    /// Whether `token` was issued as a record of `key` (with `mark_issued_until`) and that time has not passed.
    fn was_issued(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Uses `token` for `key`: admits a live token and atomically consumes it when it is single-use, so exactly
    /// one of many racing callers is admitted.
    fn use_token(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    /// Revokes the live record of `key`; returns it (now revoked), or `None` when there was none.
    fn revoke(
        &self,
        key: &RecordKey,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Records `key` for `ttl`; returns `true` the first time, `false` while it is remembered (replay guard).
    fn remember_once(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records request `key` with the digest of what it carried for `ttl`; says whether it is new, an exact
    /// repeat (same digest) or the same key with something else (replay guards that allow idempotent retries).
    fn remember_request(
        &self,
        key: &str,
        digest: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Repeat, StoreError>> + Send;

    /// Counts one event for `key` under `limit`.
    fn hit(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// Marks the token identified by `id` revoked until `until_ms`, the token's own expiry.
    fn revoke_until(
        &self,
        id: &str,
        until_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the token identified by `id` is revoked now.
    fn is_revoked(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Checks the backend can serve.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The store: the configured backend, and the metrics of every operation on it; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
    metrics: StoreMetrics,
}

/// One of the backends.
#[derive(Debug, Clone)]
enum Engine {
    Embedded(embedded::EmbeddedStore),
    Redis(Box<redis::RedisStore>),
}

impl Store {
    /// Opens the configured backend.
    pub async fn open(settings: &StoreSettings, clock: SharedClock) -> Result<Self, StoreError> {
        Ok(match settings.backend {
            Backend::Embedded => {
                let metrics = StoreMetrics::new("embedded");
                let store = embedded::EmbeddedStore::open_with_metrics(
                    &settings.embedded,
                    clock,
                    &metrics,
                )?;
                Self {
                    engine: Engine::Embedded(store),
                    metrics,
                }
            }
            Backend::Redis => Self {
                engine: Engine::Redis(Box::new(
                    redis::RedisStore::open(&settings.redis, clock).await?,
                )),
                metrics: StoreMetrics::new("redis"),
            },
        })
    }

    /// The metric handles of this store, to register where metrics are exposed.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Acknowledges a reset of the Redis store configured in `settings`, so every instance serves again (see
    /// [`redis`]). The embedded store has nothing to acknowledge.
    pub async fn acknowledge_reset(settings: &StoreSettings) -> Result<(), StoreError> {
        match settings.backend {
            Backend::Redis => redis::RedisStore::acknowledge_reset(&settings.redis).await,
            Backend::Embedded => Err(StoreError::Unavailable(
                "store.backend is \"embedded\": only a Redis store can be reset under a running instance"
                    .to_owned(),
            )),
        }
    }
}

/// One `match` per operation: the configured backend does it, timed, and its failures counted.
macro_rules! dispatch {
    ($self:ident, $op:ident($($arg:expr),*)) => {{
        let started = std::time::Instant::now();
        let result = match &$self.engine {
            Engine::Embedded(s) => TokenStore::$op(s, $($arg),*).await,
            Engine::Redis(s) => TokenStore::$op(s.as_ref(), $($arg),*).await,
        };
        $self
            .metrics
            .observe(stringify!($op), started.elapsed().as_secs_f64(), &result);
        result
    }};
}

impl TokenStore for Store {
    async fn issue_or_extend(
        &self,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Result<Issued, StoreError> {
        dispatch!(
            self,
            issue_or_extend(key, candidate, ttl, single_use, mark_issued_until)
        )
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
        dispatch!(
            self,
            guarded_issue(guard, key, candidate, ttl, single_use, mark_issued_until)
        )
    }
    async fn was_issued(&self, key: &RecordKey, token: &str) -> Result<bool, StoreError> {
        dispatch!(self, was_issued(key, token))
    }
    async fn use_token(&self, key: &RecordKey, token: &str) -> Result<Admission, StoreError> {
        dispatch!(self, use_token(key, token))
    }
    async fn revoke(&self, key: &RecordKey) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, revoke(key))
    }
    async fn remember_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        dispatch!(self, remember_once(key, ttl))
    }
    async fn remember_request(
        &self,
        key: &str,
        digest: &str,
        ttl: Duration,
    ) -> Result<Repeat, StoreError> {
        dispatch!(self, remember_request(key, digest, ttl))
    }
    async fn hit(&self, key: &str, limit: &RateLimit) -> Result<RateDecision, StoreError> {
        dispatch!(self, hit(key, limit))
    }
    async fn revoke_until(&self, id: &str, until_ms: i64) -> Result<(), StoreError> {
        dispatch!(self, revoke_until(id, until_ms))
    }
    async fn is_revoked(&self, id: &str) -> Result<bool, StoreError> {
        dispatch!(self, is_revoked(id))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, ping())
    }
}
