//! The Redis backend, for many instances sharing state.
//!
//! Each operation is one Lua script over the keys of one hash slot, so it is atomic and runs unchanged on Redis
//! Cluster; on a single server, a guarded issue (replay guard and record) is one script over both. Records
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

mod connection;
mod epoch;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use self::connection::{Connection, Connector};
use self::epoch::{Epoch, ACKNOWLEDGED};
use self::scripts::Scripts;

use super::{
    millis, Admission, Guard, Issued, RateDecision, RateLimit, RecordKey, RecordState,
    RedisSettings, Repeat, ResetPolicy, StoreError, TokenRecord, TokenStore,
};
use crate::ttl::SharedClock;

/// The Redis-backed store; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connector: Connector,
    connection: Arc<OnceCell<Connection>>,
    prefix: Arc<str>,
    timeout: Duration,
    scripts: Arc<Scripts>,
    epoch: Arc<Epoch>,
    on_reset: ResetPolicy,
    wait_replicas: u32,
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
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let ca = match &settings.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot read store.redis.tls_ca_file {}: {e}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let connector = Connector::new(settings.url.expose_secret(), settings.cluster, timeout, ca)
            .map_err(|_| {
                StoreError::Unavailable(
                    "store.redis.url is not a valid Redis URL (with cluster: a comma-separated list)"
                        .to_owned(),
                )
            })?;
        let store = Self {
            connector,
            connection: Arc::new(OnceCell::new()),
            prefix: Arc::from(settings.key_prefix.as_str()),
            timeout,
            scripts: Arc::new(Scripts::new()),
            epoch: Arc::new(Epoch::default()),
            on_reset: settings.on_reset,
            wait_replicas: settings.wait_replicas,
            clock,
        };
        Ok(store)
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        let manager = tokio::time::timeout(
            self.timeout * 2,
            self.connection.get_or_try_init(|| self.connector.connect()),
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

    /// Runs a script whose first key is `written`; with `wait_replicas`, then waits until that many replicas have
    /// what this connection wrote to that key's node, and answers 503 when fewer do.
    async fn run<T: redis::FromRedisValue>(
        &self,
        written: &str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.guard()?;
        let mut conn = self.connection().await?;
        let value = deadline(self.timeout, invocation.invoke_async(&mut conn)).await?;
        if self.wait_replicas > 0 {
            let acknowledged = deadline(
                self.timeout * 2,
                conn.wait_for_replicas(written, self.wait_replicas, self.timeout),
            )
            .await?;
            if acknowledged < i64::from(self.wait_replicas) {
                return Err(StoreError::Unavailable(format!(
                    "redis: {acknowledged} of {} replicas acknowledged the write in time",
                    self.wait_replicas
                )));
            }
        }
        Ok(value)
    }

    /// Runs a plain command under the deadline.
    async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        deadline(self.timeout, command.query_async(&mut conn)).await
    }

    /// Runs the issue script, or with `guard` the guarded issue script (one server only): returns the script's
    /// `{created, record JSON}`, created -1 when the guard refused.
    async fn run_issue(
        &self,
        guard: Option<&Guard>,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Result<(i64, String), StoreError> {
        let now = self.clock.now_millis();
        let fresh = TokenRecord {
            token: candidate.to_owned(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(millis(ttl)),
            single_use,
            state: RecordState::Live,
        };
        let json = serde_json::to_string(&fresh).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let written = self.key("rec", &key.encoded());
        let mut invocation = match guard {
            Some(guard) => {
                let mut invocation = self.scripts.guarded_issue.prepare_invoke();
                let guard_key = match &guard.digest {
                    Some(_) => self.key("req", &guard.key),
                    None => self.key("once", &guard.key),
                };
                invocation.key(guard_key);
                invocation
            }
            None => self.scripts.issue.prepare_invoke(),
        };
        invocation
            .key(&written)
            .key(self.issued_key(key, candidate));
        if let Some(guard) = guard {
            invocation
                .arg(guard.digest.as_deref().unwrap_or(""))
                .arg(millis(guard.ttl));
        }
        invocation
            .arg(json)
            .arg(now)
            .arg(fresh.expires_at_ms)
            .arg(if single_use { "1" } else { "0" })
            .arg(mark_issued_until.unwrap_or(0));
        self.run(&written, invocation).await
    }
}

/// An issue script's answer: `{created (1) or extended (0), the record's JSON}`.
fn issued(created: i64, json: &str) -> Result<Issued, StoreError> {
    let record = serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Issued {
        record,
        created: created == 1,
    })
}

impl TokenStore for RedisStore {
    async fn issue_or_extend(
        &self,
        key: &RecordKey,
        candidate: &str,
        ttl: Duration,
        single_use: bool,
        mark_issued_until: Option<i64>,
    ) -> Result<Issued, StoreError> {
        let (created, json) = self
            .run_issue(None, key, candidate, ttl, single_use, mark_issued_until)
            .await?;
        issued(created, &json)
    }

    async fn use_token(&self, key: &RecordKey, token: &str) -> Result<Admission, StoreError> {
        let written = self.key("rec", &key.encoded());
        let mut invocation = self.scripts.use_token.prepare_invoke();
        invocation
            .key(&written)
            .arg(super::token_digest(token))
            .arg(self.clock.now_millis());
        let (status, raw): (String, String) = self.run(&written, invocation).await?;
        Ok(match status.as_str() {
            "admitted" => Admission::Admitted(
                serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
            "used" => Admission::AlreadyUsed,
            "revoked" => Admission::Revoked,
            _ => Admission::Unknown,
        })
    }

    async fn revoke(&self, key: &RecordKey) -> Result<Option<TokenRecord>, StoreError> {
        let written = self.key("rec", &key.encoded());
        let mut invocation = self.scripts.revoke.prepare_invoke();
        invocation.key(&written).arg(self.clock.now_millis());
        let revoked: String = self.run(&written, invocation).await?;
        if revoked.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&revoked)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn remember_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let written = self.key("once", key);
        let mut invocation = self.scripts.once.prepare_invoke();
        invocation
            .key(&written)
            .arg(self.clock.now_millis())
            .arg(millis(ttl));
        let first: i64 = self.run(&written, invocation).await?;
        Ok(first == 1)
    }

    async fn remember_request(
        &self,
        key: &str,
        digest: &str,
        ttl: Duration,
    ) -> Result<Repeat, StoreError> {
        let written = self.key("req", key);
        let mut invocation = self.scripts.remember_request.prepare_invoke();
        invocation
            .key(&written)
            .arg(self.clock.now_millis())
            .arg(millis(ttl))
            .arg(digest);
        let seen: i64 = self.run(&written, invocation).await?;
        Ok(match seen {
            0 => Repeat::First,
            1 => Repeat::Same,
            _ => Repeat::Different,
        })
    }

    async fn hit(&self, key: &str, limit: &RateLimit) -> Result<RateDecision, StoreError> {
        let written = self.key("rate", key);
        let mut invocation = self.scripts.hit.prepare_invoke();
        invocation
            .key(&written)
            .arg(self.clock.now_millis())
            .arg(limit.limit)
            .arg(millis(limit.window))
            .arg(millis(limit.lockout));
        let (allowed, reset_at_ms): (i64, i64) = self.run(&written, invocation).await?;
        Ok(RateDecision {
            allowed: allowed == 1,
            reset_at_ms,
        })
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
        if self.connector.is_cluster() {
            // The guard and the record live in different hash slots: one after the other, the guard first, so a
            // refused request writes nothing else.
            if !guard.record(self).await? {
                return Ok(None);
            }
            return self
                .issue_or_extend(key, candidate, ttl, single_use, mark_issued_until)
                .await
                .map(Some);
        }
        // One server: the guard and the issue in one script, one round trip, atomic together.
        let (created, json) = self
            .run_issue(
                Some(guard),
                key,
                candidate,
                ttl,
                single_use,
                mark_issued_until,
            )
            .await?;
        if created < 0 {
            return Ok(None);
        }
        issued(created, &json).map(Some)
    }

    async fn was_issued(&self, key: &RecordKey, token: &str) -> Result<bool, StoreError> {
        self.guard()?;
        let mut get = redis::cmd("GET");
        get.arg(self.issued_key(key, token));
        let until: Option<i64> = self.query(get).await?;
        Ok(until.is_some_and(|until| until > self.clock.now_millis()))
    }

    async fn revoke_until(&self, subject: &str, until_ms: i64) -> Result<(), StoreError> {
        let written = self.key("rev", subject);
        let mut invocation = self.scripts.revoke_until.prepare_invoke();
        invocation
            .key(&written)
            .arg(until_ms)
            .arg(self.clock.now_millis());
        let _: i64 = self.run(&written, invocation).await?;
        Ok(())
    }

    async fn is_revoked(&self, subject: &str) -> Result<bool, StoreError> {
        self.guard()?;
        let mut get = redis::cmd("GET");
        get.arg(self.key("rev", subject));
        let until: Option<i64> = self.query(get).await?;
        Ok(until.is_some_and(|until| until > self.clock.now_millis()))
    }

    /// Round trips to every node that serves slots, then the epoch check, so readiness turns false the moment a
    /// reset is visible; on a cluster, also that every slot is covered (`cluster_state:ok`).
    async fn ping(&self) -> Result<(), StoreError> {
        // Every node that serves slots answers: on a cluster a dead master is not ready before the cluster
        // itself marks it failed.
        let mut connection = self.connection().await?;
        deadline(self.timeout, connection.ping_every_node()).await?;
        if self.connector.is_cluster() {
            let mut info = redis::cmd("CLUSTER");
            info.arg("INFO");
            let info: String = self.query(info).await?;
            if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                return Err(StoreError::Unavailable(
                    "redis cluster is not ok: a hash slot is not served".to_owned(),
                ));
            }
        }
        self.check_epoch().await?;
        self.guard()
    }
}
