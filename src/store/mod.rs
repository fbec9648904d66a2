//! The token store: server-side state shared by the providers (issued tokens, single-use consumption, replay
//! guards, rate counters, revocations), with two backends behind one contract.
//!
//! Every operation is atomic under concurrency, and time comes from the injected clock: an entry whose expiry
//! has passed is invisible at that instant on both backends, whatever the backend's own purge is doing. Each
//! operation touches exactly one key, so the Redis backend also runs on Redis Cluster.
//!
//! - [`embedded`]: redb in one file; durable group commit; the default.
//! - [`redis`]: a shared Redis for many instances; Lua scripts for atomicity, Redis TTLs for purging.

pub mod embedded;
pub mod redis;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
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
    /// Events left in the current window.
    pub remaining: u32,
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

/// Store configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which backend.
    pub backend: Backend,
    /// Embedded backend settings.
    pub embedded: EmbeddedSettings,
    /// Redis backend settings.
    pub redis: RedisSettings,
}

/// The store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// redb file.
    Embedded,
    /// Shared Redis.
    Redis,
}

/// Embedded backend settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// The database file.
    pub path: PathBuf,
    /// Group concurrent writes into one fsync'd transaction (false: one fsync per write).
    pub group_commit: bool,
    /// Most operations grouped into one transaction.
    pub max_batch: usize,
    /// Seconds between purges of expired entries.
    pub purge_interval_secs: u64,
}

/// Redis backend settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port/db`; a secret, since it may carry a password.
    #[serde(serialize_with = "crate::settings::redacted")]
    pub url: SecretString,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Connect and per-command deadline, in milliseconds: an unreachable Redis fails requests this fast.
    pub timeout_ms: u64,
    /// What to do when the store's epoch key vanishes or changes (Redis restarted empty, flushed, replaced).
    #[serde(default)]
    pub on_reset: ResetPolicy,
    /// How often each instance checks the epoch key, in milliseconds (readiness probes also check it).
    #[serde(default = "epoch_check_ms")]
    pub epoch_check_ms: u64,
}

fn epoch_check_ms() -> u64 {
    1000
}

/// What an instance does when it finds its Redis store was reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetPolicy {
    /// Log an error, report not ready, and answer 503 on every route that needs stored state until an
    /// operator runs `tokenmint store-acknowledge-reset`.
    #[default]
    Refuse,
    /// Log an error and carry on with the empty store.
    Continue,
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

    /// Whether `token` was issued as a record of `key` (with `mark_issued_until`) and that time has not passed.
    fn was_issued(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The record for `key` if it holds `token` and has not expired (in whatever state).
    fn lookup(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

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

/// The store, one of the backends.
#[derive(Debug, Clone)]
pub enum Store {
    /// redb.
    Embedded(embedded::EmbeddedStore),
    /// Redis.
    Redis(Box<redis::RedisStore>),
}

impl Store {
    /// Opens the configured backend.
    pub async fn open(settings: &StoreSettings, clock: SharedClock) -> Result<Self, StoreError> {
        Ok(match settings.backend {
            Backend::Embedded => {
                Self::Embedded(embedded::EmbeddedStore::open(&settings.embedded, clock)?)
            }
            Backend::Redis => Self::Redis(Box::new(
                redis::RedisStore::open(&settings.redis, clock).await?,
            )),
        })
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

/// Each backend implements the contract with inherent methods; this forwards the trait to them.
macro_rules! forward {
    ($backend:ty) => {
        impl TokenStore for $backend {
            async fn issue_or_extend(
                &self,
                key: &RecordKey,
                candidate: &str,
                ttl: Duration,
                single_use: bool,
                mark_issued_until: Option<i64>,
            ) -> Result<Issued, StoreError> {
                <$backend>::issue_or_extend(
                    self,
                    key,
                    candidate,
                    ttl,
                    single_use,
                    mark_issued_until,
                )
                .await
            }
            async fn was_issued(&self, key: &RecordKey, token: &str) -> Result<bool, StoreError> {
                <$backend>::was_issued(self, key, token).await
            }
            async fn lookup(
                &self,
                key: &RecordKey,
                token: &str,
            ) -> Result<Option<TokenRecord>, StoreError> {
                <$backend>::lookup(self, key, token).await
            }
            async fn use_token(
                &self,
                key: &RecordKey,
                token: &str,
            ) -> Result<Admission, StoreError> {
                <$backend>::use_token(self, key, token).await
            }
            async fn revoke(&self, key: &RecordKey) -> Result<Option<TokenRecord>, StoreError> {
                <$backend>::revoke(self, key).await
            }
            async fn remember_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
                <$backend>::remember_once(self, key, ttl).await
            }
            async fn hit(&self, key: &str, limit: &RateLimit) -> Result<RateDecision, StoreError> {
                <$backend>::hit(self, key, limit).await
            }
            async fn revoke_until(&self, id: &str, until_ms: i64) -> Result<(), StoreError> {
                <$backend>::revoke_until(self, id, until_ms).await
            }
            async fn is_revoked(&self, id: &str) -> Result<bool, StoreError> {
                <$backend>::is_revoked(self, id).await
            }
            async fn ping(&self) -> Result<(), StoreError> {
                <$backend>::ping(self).await
            }
        }
    };
}

forward!(embedded::EmbeddedStore);
forward!(redis::RedisStore);

/// One `match` per operation: the configured backend does it.
macro_rules! dispatch {
    ($self:ident, $op:ident($($arg:expr),*)) => {
        match $self {
            Store::Embedded(s) => TokenStore::$op(s, $($arg),*).await,
            Store::Redis(s) => TokenStore::$op(s.as_ref(), $($arg),*).await,
        }
    };
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
    async fn was_issued(&self, key: &RecordKey, token: &str) -> Result<bool, StoreError> {
        dispatch!(self, was_issued(key, token))
    }
    async fn lookup(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self, lookup(key, token))
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

/// A token's digest, hex: what markers are keyed by, so no token text is used as a key.
pub(crate) fn token_digest(token: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(token.as_bytes()))
}

/// The issued marker of `token` under `key`: the fixed-length digest first, so the pair is unambiguous.
pub(crate) fn issued_id(key: &RecordKey, token: &str) -> String {
    format!("{}:{}", token_digest(token), key.encoded())
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The rate-window arithmetic both backends share (the Redis script mirrors it): returns the new state
/// `(window_start_ms, count, locked_until_ms)` and the decision.
pub(crate) fn rate_step(
    state: Option<(i64, u32, i64)>,
    now: i64,
    limit: &RateLimit,
) -> ((i64, u32, i64), RateDecision) {
    let window = millis(limit.window);
    let (mut start, mut count, locked_until) = state.unwrap_or((now, 0, 0));
    if locked_until > now {
        let decision = RateDecision {
            allowed: false,
            remaining: 0,
            reset_at_ms: locked_until,
        };
        return ((start, count, locked_until), decision);
    }
    if now >= start.saturating_add(window) {
        start = now;
        count = 0;
    }
    count = count.saturating_add(1);
    if count > limit.limit {
        let lock_end = if limit.lockout.is_zero() {
            start.saturating_add(window)
        } else {
            now.saturating_add(millis(limit.lockout))
        };
        let decision = RateDecision {
            allowed: false,
            remaining: 0,
            reset_at_ms: lock_end,
        };
        return ((now, 0, lock_end), decision);
    }
    let decision = RateDecision {
        allowed: true,
        remaining: limit.limit - count,
        reset_at_ms: start.saturating_add(window),
    };
    ((start, count, locked_until), decision)
}

/// What issue-or-extend does to an existing (possibly expired) record; shared by both backends.
pub(crate) fn issue_step(
    existing: Option<TokenRecord>,
    candidate: &str,
    now: i64,
    ttl: Duration,
    single_use: bool,
) -> Issued {
    let expires_at_ms = now.saturating_add(millis(ttl));
    match existing {
        Some(mut record) if record.expires_at_ms > now && record.state == RecordState::Live => {
            record.expires_at_ms = expires_at_ms;
            record.single_use = single_use;
            Issued {
                record,
                created: false,
            }
        }
        _ => Issued {
            record: TokenRecord {
                token: candidate.to_owned(),
                issued_at_ms: now,
                expires_at_ms,
                single_use,
                state: RecordState::Live,
            },
            created: true,
        },
    }
}

/// The record if it holds `token` (compared in constant time) and has not expired at `now`; shared by both
/// backends' look-ups and by [`use_step`].
pub(crate) fn matching_unexpired(
    record: Option<TokenRecord>,
    token: &str,
    now: i64,
) -> Option<TokenRecord> {
    record.filter(|r| {
        r.expires_at_ms > now
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                r.token.as_bytes(),
                token.as_bytes(),
            ))
    })
}

/// What using a token does to its record; shared by both backends. Returns the record to write back, if any.
pub(crate) fn use_step(
    existing: Option<TokenRecord>,
    token: &str,
    now: i64,
) -> (Admission, Option<TokenRecord>) {
    match matching_unexpired(existing, token, now) {
        Some(record) => match record.state {
            RecordState::Revoked => (Admission::Revoked, None),
            RecordState::Consumed => (Admission::AlreadyUsed, None),
            RecordState::Live if record.single_use => {
                let mut consumed = record.clone();
                consumed.state = RecordState::Consumed;
                (Admission::Admitted(record), Some(consumed))
            }
            RecordState::Live => (Admission::Admitted(record), None),
        },
        None => (Admission::Unknown, None),
    }
}
