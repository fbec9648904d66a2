//! The settings tree: layered loading, typed values and start-up validation.
//!
//! Layers, later wins: `config/default.toml` (embedded) → `config/development.toml` (embedded; only when
//! `env = "development"`) → an optional file → `TOKENMINT_`-prefixed environment variables with `__` for
//! nesting. Raw values become typed ones here, once: TTL bounds become [`TtlPolicy`], SIDs are checked, and every
//! credential is a [`SecretString`] that is exposed only where a signature is computed or compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment as EnvSource, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::providers::twilio::sid::{Sid, SidKind};
use crate::store::{Backend, StoreSettings};
use crate::ttl::TtlPolicy;

/// The embedded defaults: every key, commented.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// The embedded development profile: clearly fake sample tenants.
pub const DEVELOPMENT_TOML: &str = include_str!("../config/development.toml");
/// Prefix of the environment variables that override configuration.
pub const ENV_PREFIX: &str = "TOKENMINT";

/// The largest `server.max_headers`: the HTTP parser takes this many headers, so that past the configured limit
/// the router, not the parser, answers, in the route's own error shape.
pub const MAX_HEADERS: usize = 1024;

/// Shortest signing secret accepted in production, in bytes.
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// Which profile the service runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunEnvironment {
    /// Sample tenants loaded; meant for a laptop.
    Development,
    /// No sample tenants; sample credentials and short secrets refused.
    Production,
}

/// Everything tokenmint reads from configuration.
///
/// Unknown keys are refused inside every section (a typo such as `server.prot` stops start-up), but tolerated at
/// the top level: orchestrators inject variables such as `TOKENMINT_SERVICE_HOST` or `TOKENMINT_PORT` for a
/// service named tokenmint, and those must not keep the service from starting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// The profile.
    pub env: RunEnvironment,
    /// Listener and HTTP limits.
    pub server: ServerSettings,
    /// Log format and level.
    pub log: LogSettings,
    /// The shared TTL policy.
    pub ttl: TtlSettings,
    /// Twilio-style Access Tokens.
    pub twilio: TwilioSettings,
    /// NetEase Yunxin getToken.
    pub netease: NeteaseSettings,
    /// MeCloud tokens and accesstokens.
    pub mecloud: MecloudSettings,
    /// Server-side token state.
    pub store: StoreSettings,
    /// Path of the configuration file (set through `TOKENMINT_CONFIG`); read before the layers are merged.
    #[serde(default, skip_serializing)]
    pub config: Option<PathBuf>,
}

/// Listener and HTTP limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Per-request deadline.
    #[serde(rename = "request_timeout_secs", with = "secs")]
    pub request_timeout: Duration,
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// Most request headers accepted (at most [`MAX_HEADERS`]).
    pub max_headers: usize,
    /// How long in-flight requests may run on after a shutdown signal.
    #[serde(rename = "shutdown_grace_secs", with = "secs")]
    pub shutdown_grace: Duration,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A `tracing` filter directive.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The shared TTL policy, one set of bounds per provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlSettings {
    /// Clock skew tolerated when verifying exp and nbf.
    #[serde(rename = "leeway_secs", with = "secs")]
    pub leeway: Duration,
    /// Twilio Access Tokens.
    #[serde(deserialize_with = "ttl_policy")]
    pub twilio: TtlPolicy,
    /// NetEase getToken tokens.
    #[serde(deserialize_with = "ttl_policy")]
    pub netease: TtlPolicy,
    /// MeCloud accesstokens.
    #[serde(deserialize_with = "ttl_policy")]
    pub mecloud: TtlPolicy,
}

/// Twilio accounts, keyed by an operator-chosen label.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// Revocations per account per window (0: no limit); past it the revoke route answers 429.
    #[serde(default = "revoke_rate_limit")]
    pub revoke_rate_limit: u32,
    /// The revocation rate window.
    #[serde(default = "minute", rename = "revoke_rate_window_secs", with = "secs")]
    pub revoke_rate_window: Duration,
    /// The accounts.
    #[serde(default)]
    pub accounts: BTreeMap<String, TwilioAccountSettings>,
}

fn revoke_rate_limit() -> u32 {
    600
}

/// One Twilio account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioAccountSettings {
    /// `AC` + 32 hex digits.
    pub account_sid: String,
    /// Chat Service SID used when a chat grant names none.
    #[serde(default)]
    pub chat_service_sid: Option<String>,
    /// Default region (`twr` header) for this account's tokens.
    #[serde(default)]
    pub region: Option<String>,
    /// API keys, keyed by label; several may be active at once so keys rotate without downtime.
    #[serde(default)]
    pub api_keys: BTreeMap<String, TwilioApiKeySettings>,
}

/// One Twilio API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioApiKeySettings {
    /// `SK` + 32 hex digits.
    pub sid: String,
    /// The HMAC signing secret.
    #[serde(serialize_with = "redacted")]
    pub secret: SecretString,
}

/// NetEase Yunxin apps and request checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeteaseSettings {
    /// How far CurTime may be from the server's time, either side.
    #[serde(rename = "curtime_window_secs", with = "secs")]
    pub curtime_window: Duration,
    /// Refuse (code 431) a request whose AppKey + Nonce + CurTime was already seen inside the window.
    pub replay_guard: bool,
    /// Longest channelName accepted.
    pub max_channel_name_chars: usize,
    /// The apps, keyed by label.
    #[serde(default)]
    pub apps: BTreeMap<String, NeteaseAppSettings>,
}

/// One NetEase app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeteaseAppSettings {
    /// The AppKey header value.
    pub app_key: String,
    /// AppSecrets keyed by label; two during a rotation.
    #[serde(serialize_with = "redacted_map")]
    pub secrets: BTreeMap<String, SecretString>,
    /// A disabled app is answered 403 "app is forbidden".
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// getToken calls allowed per window (0: no limit).
    #[serde(default)]
    pub rate_limit: u32,
    /// The rate window.
    #[serde(default = "minute", rename = "rate_window_secs", with = "secs")]
    pub rate_window: Duration,
}

fn enabled() -> bool {
    true
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

/// MeCloud channels and exchange rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MecloudSettings {
    /// How far a token's `time` may be from the server's time, either side.
    #[serde(rename = "time_window_secs", with = "secs")]
    pub time_window: Duration,
    /// Refuse a second exchange of the same token.
    pub single_exchange: bool,
    /// Which of `signing_keys` signs new accesstokens; may be left empty when there is exactly one.
    #[serde(default)]
    pub signing_key: String,
    /// tokenmint's own accesstoken signing secrets, by label; every one listed still verifies (rotation).
    #[serde(default, serialize_with = "redacted_map")]
    pub signing_keys: BTreeMap<String, SecretString>,
    /// Accesstokens (and, on their own counter, revocations) per secret key per window (0: no limit).
    pub rate_limit: u32,
    /// Accesstokens per channel per window, all its keys together (0: no limit); no lock-out, so one key cannot
    /// shut the channel's other keys out for longer than the window.
    #[serde(default)]
    pub channel_rate_limit: u32,
    /// The rate window.
    #[serde(rename = "rate_window_secs", with = "secs")]
    pub rate_window: Duration,
    /// Lock-out after the limit is exceeded.
    #[serde(rename = "lockout_secs", with = "secs")]
    pub lockout: Duration,
    /// Channels keyed by label.
    #[serde(default)]
    pub channels: BTreeMap<String, MecloudChannelSettings>,
}

impl MecloudSettings {
    /// The label and secret of the signing key that signs new accesstokens, if one is configured.
    pub fn active_signing_key(&self) -> Option<(&str, &SecretString)> {
        if self.signing_key.is_empty() && self.signing_keys.len() == 1 {
            return self
                .signing_keys
                .iter()
                .next()
                .map(|(label, secret)| (label.as_str(), secret));
        }
        self.signing_keys
            .get_key_value(&self.signing_key)
            .map(|(label, secret)| (label.as_str(), secret))
    }
}

/// One MeCloud channel (the tenant).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MecloudChannelSettings {
    /// The channel's appId.
    pub app_id: String,
    /// Secret keys keyed by key id: the channel's own key and keys handed to its users.
    #[serde(serialize_with = "redacted_map")]
    pub keys: BTreeMap<String, SecretString>,
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed, or a value has the wrong type. Shown with every quoted value
    /// redacted: the value may be a secret given in the wrong shape (a string where a table of secrets belongs).
    #[error("configuration: {}", redact_quoted(&.0.to_string()))]
    Load(#[from] config::ConfigError),
    /// A value is well-formed but breaks a rule.
    #[error("configuration: {key}: {rule}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// The rule it breaks.
        rule: String,
    },
}

/// Replaces every double-quoted value in a loader's message (`invalid type: string "…"`, a TOML line quoted back)
/// with `"[redacted]"`; a quote left open runs to the end of its line. Key names, which the messages put in
/// backticks, stay.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, line) in message.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut parts = line.split('"');
        out.push_str(parts.next().unwrap_or_default());
        let mut inside = false;
        for part in parts {
            inside = !inside;
            if inside {
                out.push_str("\"[redacted]\"");
            } else {
                out.push_str(part);
            }
        }
    }
    out
}

impl ConfigError {
    fn invalid(key: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            rule: rule.into(),
        }
    }
}

/// Where the layers come from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// A configuration file (`--config`); when `None`, `TOKENMINT_CONFIG` from `env` is used if set.
    pub file: Option<PathBuf>,
    /// Inline TOML applied after the file (tests use it).
    pub inline: Option<String>,
    /// The environment to read `TOKENMINT_*` from; `None` reads the process environment.
    pub env: Option<HashMap<String, String>>,
}

impl Settings {
    /// Loads from the process environment and an optional file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(Sources {
            file: file.map(Path::to_path_buf),
            ..Sources::default()
        })
    }

    /// Loads from explicit sources and validates.
    pub fn load_from(sources: Sources) -> Result<Self, ConfigError> {
        // Pass one reads only the profile, which decides whether the development layer is part of pass two
        // (other keys may be incomplete without that layer).
        let profile: RunEnvironment = Self::build(&sources, false)?.get("env")?;
        let settings: Settings =
            Self::build(&sources, profile == RunEnvironment::Development)?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn build(sources: &Sources, development: bool) -> Result<Config, ConfigError> {
        let env_source = EnvSource::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .source(sources.env.clone());
        let file = match &sources.file {
            Some(path) => Some(path.clone()),
            None => {
                let from_env = match &sources.env {
                    Some(map) => map.get("TOKENMINT_CONFIG").cloned(),
                    None => std::env::var("TOKENMINT_CONFIG").ok(),
                };
                from_env.filter(|p| !p.is_empty()).map(PathBuf::from)
            }
        };
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if development {
            builder = builder.add_source(File::from_str(DEVELOPMENT_TOML, FileFormat::Toml));
        }
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).required(true));
        }
        if let Some(inline) = &sources.inline {
            builder = builder.add_source(File::from_str(inline, FileFormat::Toml));
        }
        Ok(builder.add_source(env_source).build()?)
    }

    /// Checks the rules serde cannot express: SID formats, unique key SIDs, production hygiene.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "server.request_timeout_secs",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_HEADERS).contains(&self.server.max_headers) {
            return Err(ConfigError::invalid(
                "server.max_headers",
                format!("must be between 1 and {}", MAX_HEADERS),
            ));
        }
        if self.server.body_limit_bytes == 0 {
            return Err(ConfigError::invalid(
                "server.body_limit_bytes",
                "must be at least 1",
            ));
        }
        if self.store.backend == Backend::Redis && self.store.redis.url.expose_secret().is_empty() {
            return Err(ConfigError::invalid(
                "store.redis.url",
                "is required when store.backend = \"redis\"",
            ));
        }
        if self.store.embedded.max_batch == 0 {
            return Err(ConfigError::invalid(
                "store.embedded.max_batch",
                "must be at least 1",
            ));
        }
        self.validate_twilio()?;
        self.validate_netease()?;
        self.validate_mecloud()?;
        if self.env == RunEnvironment::Production {
            self.validate_production()?;
        }
        Ok(())
    }

    fn validate_twilio(&self) -> Result<(), ConfigError> {
        if self.twilio.revoke_rate_limit > 0 && self.twilio.revoke_rate_window.is_zero() {
            return Err(ConfigError::invalid(
                "twilio.revoke_rate_window_secs",
                "must be at least 1",
            ));
        }
        let mut key_sids = HashSet::new();
        for (label, account) in &self.twilio.accounts {
            let prefix = format!("twilio.accounts.{label}");
            check_sid(
                &format!("{prefix}.account_sid"),
                &account.account_sid,
                SidKind::Account,
            )?;
            if let Some(sid) = &account.chat_service_sid {
                check_sid(
                    &format!("{prefix}.chat_service_sid"),
                    sid,
                    SidKind::ChatService,
                )?;
            }
            if let Some(region) = &account.region {
                crate::providers::twilio::grants::Region::try_from(region.as_str())
                    .map_err(|e| ConfigError::invalid(format!("{prefix}.region"), e.to_string()))?;
            }
            if account.api_keys.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{prefix}.api_keys"),
                    "at least one API key is required",
                ));
            }
            for (key_label, key) in &account.api_keys {
                let key_prefix = format!("{prefix}.api_keys.{key_label}");
                check_sid(&format!("{key_prefix}.sid"), &key.sid, SidKind::ApiKey)?;
                if !key_sids.insert(key.sid.to_ascii_lowercase()) {
                    return Err(ConfigError::invalid(
                        format!("{key_prefix}.sid"),
                        "API key SIDs must be unique across all accounts",
                    ));
                }
                if key.secret.expose_secret().is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{key_prefix}.secret"),
                        "must not be empty",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_netease(&self) -> Result<(), ConfigError> {
        if self.netease.curtime_window.is_zero() {
            return Err(ConfigError::invalid(
                "netease.curtime_window_secs",
                "must be at least 1",
            ));
        }
        if !(1..=1024).contains(&self.netease.max_channel_name_chars) {
            return Err(ConfigError::invalid(
                "netease.max_channel_name_chars",
                "must be between 1 and 1024",
            ));
        }
        let mut keys = HashSet::new();
        for (label, app) in &self.netease.apps {
            let prefix = format!("netease.apps.{label}");
            let key = &app.app_key;
            if key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ConfigError::invalid(
                    format!("{prefix}.app_key"),
                    "must be 1 to 64 ASCII letters or digits",
                ));
            }
            if !keys.insert(key.clone()) {
                return Err(ConfigError::invalid(
                    format!("{prefix}.app_key"),
                    "AppKeys must be unique",
                ));
            }
            if app.secrets.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{prefix}.secrets"),
                    "at least one AppSecret is required",
                ));
            }
            for (secret_label, secret) in &app.secrets {
                if secret.expose_secret().is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.secrets.{secret_label}"),
                        "must not be empty",
                    ));
                }
            }
            if app.rate_limit > 0 && app.rate_window.is_zero() {
                return Err(ConfigError::invalid(
                    format!("{prefix}.rate_window_secs"),
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

    fn validate_mecloud(&self) -> Result<(), ConfigError> {
        let m = &self.mecloud;
        if m.time_window.is_zero() {
            return Err(ConfigError::invalid(
                "mecloud.time_window_secs",
                "must be at least 1",
            ));
        }
        if m.rate_limit > 0 && m.rate_window.is_zero() {
            return Err(ConfigError::invalid(
                "mecloud.rate_window_secs",
                "must be at least 1",
            ));
        }
        if !m.channels.is_empty() {
            m.active_signing_key().ok_or_else(|| {
                if m.signing_keys.is_empty() {
                    ConfigError::invalid(
                        "mecloud.signing_keys",
                        "at least one accesstoken signing secret is required when channels are configured",
                    )
                } else {
                    ConfigError::invalid(
                        "mecloud.signing_key",
                        "must name one of mecloud.signing_keys (it may be empty only when there is exactly one)",
                    )
                }
            })?;
        }
        for (label, secret) in &m.signing_keys {
            if secret.expose_secret().is_empty() {
                return Err(ConfigError::invalid(
                    format!("mecloud.signing_keys.{label}"),
                    "must not be empty",
                ));
            }
        }
        let mut app_ids = HashSet::new();
        for (label, channel) in &m.channels {
            let prefix = format!("mecloud.channels.{label}");
            let id = &channel.app_id;
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::invalid(
                    format!("{prefix}.app_id"),
                    "must be 1 to 64 ASCII letters, digits, '-' or '_'",
                ));
            }
            if !app_ids.insert(id.clone()) {
                return Err(ConfigError::invalid(
                    format!("{prefix}.app_id"),
                    "appIds must be unique",
                ));
            }
            if channel.keys.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{prefix}.keys"),
                    "at least one secret key is required",
                ));
            }
            for (key_id, secret) in &channel.keys {
                if secret.expose_secret().is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{prefix}.keys.{key_id}"),
                        "must not be empty",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_production(&self) -> Result<(), ConfigError> {
        let samples = sample_credentials();
        for (key, value) in self.credentials() {
            if samples.contains(value) {
                return Err(ConfigError::invalid(
                    key,
                    "is a sample credential from the development profile; configure your own for production",
                ));
            }
        }
        for (key, secret) in self.signing_secrets() {
            if secret.expose_secret().len() < MIN_PRODUCTION_SECRET_BYTES {
                return Err(ConfigError::invalid(
                    key,
                    format!("signing secrets must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes in production"),
                ));
            }
        }
        Ok(())
    }

    /// Every signing secret with its dotted key.
    fn signing_secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = Vec::new();
        for (label, account) in &self.twilio.accounts {
            for (key_label, key) in &account.api_keys {
                out.push((
                    format!("twilio.accounts.{label}.api_keys.{key_label}.secret"),
                    &key.secret,
                ));
            }
        }
        for (label, app) in &self.netease.apps {
            for (secret_label, secret) in &app.secrets {
                out.push((
                    format!("netease.apps.{label}.secrets.{secret_label}"),
                    secret,
                ));
            }
        }
        for (label, channel) in &self.mecloud.channels {
            for (key_id, secret) in &channel.keys {
                out.push((format!("mecloud.channels.{label}.keys.{key_id}"), secret));
            }
        }
        for (label, secret) in &self.mecloud.signing_keys {
            out.push((format!("mecloud.signing_keys.{label}"), secret));
        }
        out
    }

    /// Every identifying credential value (SIDs, keys, secrets) with its dotted key.
    fn credentials(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (label, account) in &self.twilio.accounts {
            out.push((
                format!("twilio.accounts.{label}.account_sid"),
                account.account_sid.as_str(),
            ));
            for (key_label, key) in &account.api_keys {
                out.push((
                    format!("twilio.accounts.{label}.api_keys.{key_label}.sid"),
                    key.sid.as_str(),
                ));
            }
        }
        for (label, app) in &self.netease.apps {
            out.push((
                format!("netease.apps.{label}.app_key"),
                app.app_key.as_str(),
            ));
        }
        for (key, secret) in self.signing_secrets() {
            out.push((key, secret.expose_secret()));
        }
        out
    }

    /// The effective configuration as pretty JSON, every secret replaced by `"[redacted]"`.
    pub fn redacted_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The credential values of the embedded development profile.
fn sample_credentials() -> HashSet<String> {
    let parsed = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .add_source(File::from_str(DEVELOPMENT_TOML, FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<Settings>());
    match parsed {
        Ok(dev) => dev
            .credentials()
            .into_iter()
            .map(|(_, v)| v.to_owned())
            .collect(),
        // The embedded profile is covered by a unit test; an empty set here would only weaken a check.
        Err(_) => HashSet::new(),
    }
}

fn check_sid(key: &str, value: &str, kind: SidKind) -> Result<(), ConfigError> {
    Sid::parse(value, kind)
        .map(|_| ())
        .map_err(|e| ConfigError::invalid(key, e.to_string()))
}

pub(crate) fn redacted<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[redacted]")
}

fn redacted_map<S: Serializer>(
    map: &BTreeMap<String, SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for label in map.keys() {
        out.serialize_entry(label, "[redacted]")?;
    }
    out.end()
}

fn ttl_policy<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<TtlPolicy, D::Error> {
    let raw = crate::ttl::TtlBounds::deserialize(deserializer)?;
    TtlPolicy::try_from(raw).map_err(serde::de::Error::custom)
}

/// Serde helpers for `Duration` written as whole seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(inline: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(Sources {
            file: None,
            inline: Some(inline.to_owned()),
            env: Some(
                env.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        })
    }

    #[test]
    fn defaults_start_in_development_with_sample_tenants() {
        let settings = load("", &[]).expect("defaults load");
        assert_eq!(settings.env, RunEnvironment::Development);
        assert_eq!(settings.server.port, 8080);
        assert!(settings.twilio.accounts.contains_key("sample"));
        assert!(
            !sample_credentials().is_empty(),
            "the development profile parses"
        );
    }

    #[test]
    fn environment_variables_override_nested_keys() {
        let settings = load(
            "",
            &[
                ("TOKENMINT_SERVER__PORT", "9191"),
                ("TOKENMINT_LOG__FORMAT", "json"),
            ],
        )
        .expect("loads");
        assert_eq!(settings.server.port, 9191);
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn orchestrator_variables_at_the_top_level_do_not_stop_start_up() {
        let settings = load(
            "",
            &[
                ("TOKENMINT_SERVICE_HOST", "10.0.0.1"),
                ("TOKENMINT_PORT", "tcp://10.0.0.1:8080"),
            ],
        )
        .expect("loads");
        assert_eq!(settings.server.port, 8080);
    }

    #[test]
    fn a_typo_inside_a_section_stops_start_up() {
        let err = load("", &[("TOKENMINT_SERVER__PROT", "1")]).expect_err("refused");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn production_refuses_sample_credentials() {
        let inline = r#"
            [twilio.accounts.sample]
            account_sid = "AC00000000000000000000000000000000"
            [twilio.accounts.sample.api_keys.k]
            sid = "SK00000000000000000000000000000001"
            secret = "sample-twilio-secret-not-for-production-1"
        "#;
        let err = load(inline, &[("TOKENMINT_ENV", "production")]).expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("twilio.accounts.sample.account_sid"), "{msg}");
        assert!(msg.contains("sample credential"), "{msg}");
        assert!(
            !msg.contains("sample-twilio-secret"),
            "no secret in the message: {msg}"
        );
    }

    #[test]
    fn production_refuses_short_secrets_and_names_the_key() {
        let inline = r#"
            [twilio.accounts.acme]
            account_sid = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            [twilio.accounts.acme.api_keys.main]
            sid = "SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            secret = "too-short"
        "#;
        let err = load(inline, &[("TOKENMINT_ENV", "production")]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "configuration: twilio.accounts.acme.api_keys.main.secret: signing secrets must be at least 32 bytes in production"
        );
    }

    #[test]
    fn production_starts_without_sample_tenants() {
        let settings = load("", &[("TOKENMINT_ENV", "production")]).expect("loads");
        assert!(settings.twilio.accounts.is_empty());
    }

    #[test]
    fn invalid_values_name_the_key_and_the_rule() {
        let cases = [
            (
                "[twilio.accounts.x]\naccount_sid = \"AB123\"\n[twilio.accounts.x.api_keys.k]\nsid = \"SK00000000000000000000000000000009\"\nsecret = \"s\"",
                "twilio.accounts.x.account_sid",
            ),
            ("[ttl.twilio]\nmin = 10\ndefault = 5\nmax = 20", "ttl"),
            ("[server]\nprot = 1", "prot"),
            ("[twilio.accounts.x]\naccount_sid = \"AC00000000000000000000000000000000\"\nsecret = \"s\"", "secret"),
            ("[server]\nrequest_timeout_secs = 0", "server.request_timeout_secs"),
            ("[log]\nformat = \"xml\"", "xml"),
        ];
        for (inline, expected) in cases {
            let err = load(inline, &[]).expect_err(inline);
            assert!(err.to_string().contains(expected), "{inline}: {err}");
        }
    }

    #[test]
    fn duplicate_api_key_sids_are_refused() {
        let inline = r#"
            [twilio.accounts.other]
            account_sid = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
            [twilio.accounts.other.api_keys.k]
            sid = "SK00000000000000000000000000000001"
            secret = "another"
        "#;
        let err = load(inline, &[]).expect_err("duplicate");
        assert!(err.to_string().contains("unique"), "{err}");
    }

    #[test]
    fn a_secret_given_in_the_wrong_shape_is_not_echoed() {
        for (name, value) in [
            (
                "TOKENMINT_NETEASE__APPS__X__SECRETS",
                "hunter2-netease-secret",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__X__API_KEYS",
                "hunter2-twilio-secret",
            ),
            ("TOKENMINT_MECLOUD__SIGNING_KEYS", "hunter2-signing-secret"),
            ("TOKENMINT_STORE__REDIS", "redis://:hunter2@redis:6379"),
        ] {
            let err = load("", &[(name, value)]).expect_err(name);
            let message = err.to_string();
            assert!(!message.contains("hunter2"), "{name}: {message}");
            assert!(
                message.contains("for key"),
                "still names the key: {message}"
            );
        }
    }

    #[test]
    fn quoted_values_are_redacted_and_an_open_quote_runs_to_the_end_of_its_line() {
        assert_eq!(
            redact_quoted("invalid type: string \"s3cret\", expected a map for key `a.b`"),
            "invalid type: string \"[redacted]\", expected a map for key `a.b`"
        );
        assert_eq!(
            redact_quoted("secret = \"s3cret\n^ unterminated"),
            "secret = \"[redacted]\"\n^ unterminated"
        );
    }

    #[test]
    fn redacted_json_hides_every_secret() {
        let settings = load("", &[]).expect("loads");
        let json = settings.redacted_json();
        assert!(json.contains("[redacted]"));
        assert!(!json.contains("sample-twilio-secret"), "{json}");
    }
}
