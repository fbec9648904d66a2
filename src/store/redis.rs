//! The Redis backend, for many instances sharing state.
//!
//! Each operation is one Lua script over one key, so it is atomic and runs unchanged on Redis Cluster. Records
//! carry their expiry, checked against the injected clock's time passed in by the caller; Redis's own key TTLs
//! purge them. A tokio connection manager reconnects by itself; every command has a deadline, so an unreachable
//! Redis fails requests fast (503) and the service recovers without a restart when Redis is back. The URL may
//! hold a password and is never logged.
//!
//! A Redis that comes back empty (restarted without persistence, flushed, replaced) would silently forget every
//! replay guard, used single-use token and revocation. So the store keeps an epoch key: written once when an
//! instance first finds none, checked every `epoch_check_ms` and by every readiness probe. When it vanishes or
//! changes, the instance logs an error, reports not ready and refuses every state-dependent operation (503)
//! until an operator acknowledges the reset (`tokenmint store-acknowledge-reset` writes an acknowledged epoch
//! that every instance adopts), or, with `on_reset = "continue"`, carries on after logging.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use super::{
    matching_unexpired, millis, Admission, Issued, RateDecision, RateLimit, RecordKey, RecordState,
    RedisSettings, ResetPolicy, StoreError, TokenRecord,
};
use crate::ttl::SharedClock;

/// Issue-or-extend. KEYS[1] record, KEYS[2] the candidate's issued marker (same hash slot); ARGV: candidate
/// record JSON, now ms, new expiry ms, single_use ("1"/"0"), the candidate's issued marker expiry in ms (0: none).
/// The record and its marker are written in one script, so neither exists without the other.
const ISSUE: &str = r#"
local now = tonumber(ARGV[2])
local exp = tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
if raw then
  local r = cjson.decode(raw)
  if r.expires_at_ms > now and r.state == 'live' then
    r.expires_at_ms = exp
    r.single_use = (ARGV[4] == '1')
    local out = cjson.encode(r)
    redis.call('SET', KEYS[1], out, 'PX', math.max(exp - now, 1))
    return {0, out}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(exp - now, 1))
local mark = tonumber(ARGV[5])
if mark > now then
  redis.call('SET', KEYS[2], mark, 'PX', mark - now)
end
return {1, ARGV[1]}
"#;

/// Use a token. KEYS[1] record; ARGV: SHA-1 of the token (hex), now ms. Returns {status, record}.
///
/// Lua's string comparison stops at the first differing byte. Comparing SHA-1 digests instead of the tokens
/// themselves means its timing can tell at most how much of a digest an attacker's guess shares, which says
/// nothing about the stored token.
const USE: &str = r#"
local now = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown', ''} end
local r = cjson.decode(raw)
if r.expires_at_ms <= now or redis.sha1hex(r.token) ~= ARGV[1] then return {'unknown', ''} end
if r.state == 'revoked' then return {'revoked', ''} end
if r.state == 'consumed' then return {'used', ''} end
if r.single_use then
  r.state = 'consumed'
  redis.call('SET', KEYS[1], cjson.encode(r), 'KEEPTTL')
end
return {'admitted', raw}
"#;

/// Revoke. KEYS[1] record; ARGV: now ms.
const REVOKE: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return '' end
local r = cjson.decode(raw)
if r.expires_at_ms <= tonumber(ARGV[1]) or r.state == 'revoked' then return '' end
r.state = 'revoked'
local out = cjson.encode(r)
redis.call('SET', KEYS[1], out, 'KEEPTTL')
return out
"#;

/// Remember once. KEYS[1]; ARGV: now ms, ttl ms. Returns 1 the first time.
const ONCE: &str = r#"
local now = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) > now then return 0 end
redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', math.max(tonumber(ARGV[2]), 1))
return 1
"#;

/// Rate step, mirroring `store::rate_step`. KEYS[1] hash; ARGV: now, limit, window ms, lockout ms.
/// Returns {allowed, remaining, reset_at}.
const HIT: &str = r#"
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lockout = tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'start', 'count', 'locked', 'expires')
local start, count, locked = now, 0, 0
if s[1] and tonumber(s[4]) > now then
  start, count, locked = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
end
local allowed, remaining, reset
if locked > now then
  allowed, remaining, reset = 0, 0, locked
else
  if now >= start + window then start = now; count = 0 end
  count = count + 1
  if count > limit then
    if lockout > 0 then locked = now + lockout else locked = start + window end
    start = now; count = 0
    allowed, remaining, reset = 0, 0, locked
  else
    allowed, remaining, reset = 1, limit - count, start + window
  end
end
local expires = math.max(start + window, locked)
redis.call('HSET', KEYS[1], 'start', start, 'count', count, 'locked', locked, 'expires', expires)
redis.call('PEXPIRE', KEYS[1], math.max(expires - now, 1))
return {allowed, remaining, reset}
"#;

/// Revoke a subject until a time. KEYS[1]; ARGV: until ms, now ms.
const REVOKE_SUBJECT: &str = r#"
local ttl = tonumber(ARGV[1]) - tonumber(ARGV[2])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
"#;

struct Scripts {
    issue: Script,
    use_token: Script,
    revoke: Script,
    once: Script,
    hit: Script,
    revoke_subject: Script,
}

/// Prefix of an epoch written by `tokenmint store-acknowledge-reset`: instances that found the store reset adopt it.
const ACKNOWLEDGED: &str = "ack-";

/// The store's epoch as this instance knows it.
#[derive(Debug, Default)]
struct Epoch {
    /// The epoch value this instance serves under; `None` until Redis was first reached.
    known: Mutex<Option<String>>,
    /// The store was reset under this instance and nobody has acknowledged it yet.
    reset: AtomicBool,
}

/// The Redis-backed store; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    config: ConnectionManagerConfig,
    connection: Arc<OnceCell<ConnectionManager>>,
    prefix: Arc<str>,
    timeout: Duration,
    scripts: Arc<Scripts>,
    epoch: Arc<Epoch>,
    on_reset: ResetPolicy,
    clock: SharedClock,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn redis_err(e: &redis::RedisError) -> StoreError {
    // The error text names the failure kind, never the URL or a value.
    StoreError::Unavailable(format!("redis: {:?}", e.kind()))
}

/// Bounds a command by the deadline and maps both failures to `Unavailable`.
async fn deadline<T>(
    timeout: Duration,
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, command)
        .await
        .map_err(|_| StoreError::Unavailable("redis: command timed out".to_owned()))?
        .map_err(|e| redis_err(&e))
}

impl RedisStore {
    /// Prepares the client. Connecting happens on first use and again after failures, so tokenmint starts (and
    /// reports not-ready) while Redis is down. Starts the epoch watcher.
    pub async fn open(settings: &RedisSettings, clock: SharedClock) -> Result<Self, StoreError> {
        let store = Self::connect(settings, clock).await?;
        match store.check_epoch().await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "redis store not reachable yet; will retry on use")
            }
        }
        store.spawn_epoch_watcher(Duration::from_millis(settings.epoch_check_ms.max(10)));
        Ok(store)
    }

    /// Tells every instance on this Redis that its reset is acknowledged: writes a new, acknowledged epoch, which
    /// each instance adopts at its next check and then serves again.
    pub async fn acknowledge_reset(settings: &RedisSettings) -> Result<(), StoreError> {
        let store = Self::connect(settings, std::sync::Arc::new(crate::ttl::SystemClock)).await?;
        let mut set = redis::cmd("SET");
        set.arg(store.epoch_key())
            .arg(format!("{ACKNOWLEDGED}{:032x}", rand::random::<u128>()));
        let _: () = store.query(set).await?;
        Ok(())
    }

    async fn connect(settings: &RedisSettings, clock: SharedClock) -> Result<Self, StoreError> {
        let client = redis::Client::open(settings.url.expose_secret()).map_err(|_| {
            StoreError::Unavailable("store.redis.url is not a valid Redis URL".to_owned())
        })?;
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let store = Self {
            client,
            config,
            connection: Arc::new(OnceCell::new()),
            prefix: Arc::from(settings.key_prefix.as_str()),
            timeout,
            scripts: Arc::new(Scripts {
                issue: Script::new(ISSUE),
                use_token: Script::new(USE),
                revoke: Script::new(REVOKE),
                once: Script::new(ONCE),
                hit: Script::new(HIT),
                revoke_subject: Script::new(REVOKE_SUBJECT),
            }),
            epoch: Arc::new(Epoch::default()),
            on_reset: settings.on_reset,
            clock,
        };
        Ok(store)
    }

    fn epoch_key(&self) -> String {
        self.key("meta", "epoch")
    }

    /// Checks the epoch key once against what this instance knows (see the module doc).
    async fn check_epoch(&self) -> Result<(), StoreError> {
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

    fn spawn_epoch_watcher(&self, every: Duration) {
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
    fn guard(&self) -> Result<(), StoreError> {
        if self.epoch.reset.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "redis store was reset (epoch key vanished or changed); waiting for `tokenmint \
                 store-acknowledge-reset`"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let manager = tokio::time::timeout(
            self.timeout * 2,
            self.connection.get_or_try_init(|| {
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            }),
        )
        .await
        .map_err(|_| StoreError::Unavailable("redis: connect timed out".to_owned()))?
        .map_err(|e| redis_err(&e))?;
        Ok(manager.clone())
    }

    /// `<prefix>{<kind>:<id>}`: the braces make the whole id the hash tag.
    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{{{kind}:{id}}}", self.prefix)
    }

    /// A token's issued marker: the record's key (so the same hash slot) plus the token's digest.
    fn issued_key(&self, key: &RecordKey, token: &str) -> String {
        let record = self.key("rec", &key.encoded());
        format!("{record}:issued:{}", super::token_digest(token))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.guard()?;
        let mut conn = self.connection().await?;
        deadline(self.timeout, invocation.invoke_async(&mut conn)).await
    }

    /// Runs a plain command under the deadline.
    async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        deadline(self.timeout, command.query_async(&mut conn)).await
    }

    pub(super) async fn issue_or_extend(
        &self,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now_millis();
        let fresh = TokenRecord {
            token: candidate.to_owned(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(millis(ttl)),
            single_use,
            state: RecordState::Live,
        };
        let fresh_json =
            serde_json::to_string(&fresh).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut invocation = self.scripts.issue.prepare_invoke();
        invocation
            .key(self.key("rec", &key.encoded()))
            .key(self.issued_key(key, candidate))
            .arg(fresh_json)
            .arg(now)
            .arg(fresh.expires_at_ms)
            .arg(if single_use { "1" } else { "0" })
            .arg(mark_issued_until.unwrap_or(0));
        let (created, json): (i64, String) = self.run(invocation).await?;
        let record = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Issued {
            record,
            created: created == 1,
        })
    }

    pub(super) async fn lookup(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.guard()?;
        let mut get = redis::cmd("GET");
        get.arg(self.key("rec", &key.encoded()));
        let raw: Option<String> = self.query(get).await?;
        let record: Option<TokenRecord> = raw
            .map(|raw| serde_json::from_str(&raw))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(matching_unexpired(record, token, self.clock.now_millis()))
    }

    pub(super) async fn use_token(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> Result<Admission, StoreError> {
        let mut invocation = self.scripts.use_token.prepare_invoke();
        invocation
            .key(self.key("rec", &key.encoded()))
            .arg(super::token_digest(token))
            .arg(self.clock.now_millis());
        let (status, raw): (String, String) = self.run(invocation).await?;
        Ok(match status.as_str() {
            "admitted" => Admission::Admitted(
                serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
            "used" => Admission::AlreadyUsed,
            "revoked" => Admission::Revoked,
            _ => Admission::Unknown,
        })
    }

    pub(super) async fn revoke(&self, key: &RecordKey) -> Result<Option<TokenRecord>, StoreError> {
        let mut invocation = self.scripts.revoke.prepare_invoke();
        invocation
            .key(self.key("rec", &key.encoded()))
            .arg(self.clock.now_millis());
        let revoked: String = self.run(invocation).await?;
        if revoked.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&revoked)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    pub(super) async fn remember_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.once.prepare_invoke();
        invocation
            .key(self.key("once", key))
            .arg(self.clock.now_millis())
            .arg(millis(ttl));
        let first: i64 = self.run(invocation).await?;
        Ok(first == 1)
    }

    pub(super) async fn hit(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<RateDecision, StoreError> {
        let mut invocation = self.scripts.hit.prepare_invoke();
        invocation
            .key(self.key("rate", key))
            .arg(self.clock.now_millis())
            .arg(limit.limit)
            .arg(millis(limit.window))
            .arg(millis(limit.lockout));
        let (allowed, remaining, reset_at_ms): (i64, i64, i64) = self.run(invocation).await?;
        Ok(RateDecision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_at_ms,
        })
    }

    pub(super) async fn was_issued(
        &self,
        key: &RecordKey,
        token: &str,
    ) -> Result<bool, StoreError> {
        self.guard()?;
        let mut get = redis::cmd("GET");
        get.arg(self.issued_key(key, token));
        let until: Option<i64> = self.query(get).await?;
        Ok(until.is_some_and(|until| until > self.clock.now_millis()))
    }

    pub(super) async fn revoke_until(
        &self,
        subject: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let mut invocation = self.scripts.revoke_subject.prepare_invoke();
        invocation
            .key(self.key("rev", subject))
            .arg(until_ms)
            .arg(self.clock.now_millis());
        let _: i64 = self.run(invocation).await?;
        Ok(())
    }

    pub(super) async fn is_revoked(&self, subject: &str) -> Result<bool, StoreError> {
        self.guard()?;
        let mut get = redis::cmd("GET");
        get.arg(self.key("rev", subject));
        let until: Option<i64> = self.query(get).await?;
        Ok(until.is_some_and(|until| until > self.clock.now_millis()))
    }

    /// A round trip that also checks the epoch, so readiness turns false the moment a reset is visible.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.check_epoch().await?;
        self.guard()
    }
}
