//! The `[store]` settings: which backend, and each backend's own.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

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
#[serde(rename_all = "lowercase", try_from = "String")]
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
    /// redb's page cache, in MiB (redb's own default, 1 GiB, lets the process grow far past its working set).
    pub cache_mb: usize,
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
    /// `url` is a comma-separated list of a Redis Cluster's seed nodes, served through the cluster client.
    #[serde(default)]
    pub cluster: bool,
    /// After every write, wait (Redis `WAIT`, at most `timeout_ms`) until this many replicas have it, and answer
    /// 503 when fewer do: so a failover cannot lose an acknowledged write. 0: do not wait.
    #[serde(default)]
    pub wait_replicas: u32,
    /// For `rediss://` URLs: a PEM file of the CA that signed the servers' certificates; without it the system's
    /// trusted roots are used.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
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
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum ResetPolicy {
    /// Log an error, report not ready, and answer 503 on every route that needs stored state until an
    /// operator runs `tokenmint store-acknowledge-reset`.
    #[default]
    Refuse,
    /// Log an error and carry on with the empty store.
    Continue,
}

impl Backend {
    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Redis => "redis",
        }
    }
}

impl StoreSettings {
    /// Where the state lives, for the start-up line: the file, or the Redis nodes without their credentials
    /// (`rediss://host:port/db`, comma-separated for a cluster).
    pub fn location(&self) -> String {
        match self.backend {
            Backend::Embedded => self.embedded.path.display().to_string(),
            Backend::Redis => self
                .redis
                .url
                .expose_secret()
                .split(',')
                .map(|url| without_credentials(url.trim()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// `scheme://user:password@host:port/db` → `scheme://host:port/db`.
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if path.is_empty() {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/{path}")
    }
}

impl TryFrom<String> for Backend {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        crate::settings::choose(
            &value,
            &[("embedded", Self::Embedded), ("redis", Self::Redis)],
        )
    }
}

impl TryFrom<String> for ResetPolicy {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        crate::settings::choose(
            &value,
            &[("refuse", Self::Refuse), ("continue", Self::Continue)],
        )
    }
}
