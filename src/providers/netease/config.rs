//! The `[netease]` settings: request checks and apps with their AppSecrets, and the rules serde cannot express.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::settings::{redacted_map, secs, ConfigError};

/// NetEase Yunxin apps and request checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeteaseSettings {
    /// How far CurTime may be from the server's time, either side.
    #[serde(rename = "curtime_window_secs", with = "secs")]
    pub curtime_window: Duration,
    /// What a repeat of AppKey + Nonce + CurTime inside the window gets (see [`ReplayGuard`]).
    pub replay_guard: ReplayGuard,
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

/// The replay guard's modes. The CheckSum covers the headers, not the body, so a captured header set could carry
/// any body; every mode but `Off` remembers each AppKey + Nonce + CurTime for as long as its CurTime is accepted,
/// across instances sharing the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayGuard {
    /// An exact repeat (same headers, same body) is an idempotent retry and is answered again, the way NetEase's
    /// own sample (a constant Nonce) retries inside one second; the same headers with another body get 431.
    Idempotent,
    /// Any repeat of AppKey + Nonce + CurTime gets 431.
    Strict,
    /// No replay guard.
    Off,
}

impl<'de> Deserialize<'de> for ReplayGuard {
    /// `"idempotent"`, `"strict"` or `"off"`; also `true` (strict, what `true` meant before there were three
    /// modes) and `false` (off), as booleans or as the strings environment variables give.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Flag(true) => Ok(Self::Strict),
            Raw::Flag(false) => Ok(Self::Off),
            Raw::Name(name) => match name.to_ascii_lowercase().as_str() {
                "idempotent" => Ok(Self::Idempotent),
                "strict" | "true" => Ok(Self::Strict),
                "off" | "false" => Ok(Self::Off),
                _ => Err(serde::de::Error::custom(
                    "replay_guard must be idempotent, strict or off",
                )),
            },
        }
    }
}

fn enabled() -> bool {
    true
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

impl NeteaseSettings {
    /// The rules serde cannot express: windows, AppKey format and uniqueness, at least one non-empty secret.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.curtime_window.is_zero() {
            return Err(ConfigError::invalid(
                "netease.curtime_window_secs",
                "must be at least 1",
            ));
        }
        if !(1..=1024).contains(&self.max_channel_name_chars) {
            return Err(ConfigError::invalid(
                "netease.max_channel_name_chars",
                "must be between 1 and 1024",
            ));
        }
        let mut keys = HashSet::new();
        for (label, app) in &self.apps {
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

    /// Every AppSecret with its dotted key.
    pub fn secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = Vec::new();
        for (label, app) in &self.apps {
            for (secret_label, secret) in &app.secrets {
                out.push((
                    format!("netease.apps.{label}.secrets.{secret_label}"),
                    secret,
                ));
            }
        }
        out
    }

    /// Every AppKey with its dotted key.
    pub fn identifiers(&self) -> Vec<(String, &str)> {
        self.apps
            .iter()
            .map(|(label, app)| {
                (
                    format!("netease.apps.{label}.app_key"),
                    app.app_key.as_str(),
                )
            })
            .collect()
    }
}
