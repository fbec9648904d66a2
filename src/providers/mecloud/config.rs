//! The `[mecloud]` settings: token checks, exchange limits, tokenmint's accesstoken signing secrets and the
//! channels with their secret keys, and the rules serde cannot express.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::settings::{redacted_map, secs, ConfigError};

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
    /// The rules serde cannot express: windows, a signing secret whenever there are channels, appId format
    /// and uniqueness, at least one non-empty key per channel.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = self;
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

impl MecloudSettings {
    /// Every secret (channel keys, signing secrets) with its dotted key.
    pub fn secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = self.channel_keys();
        out.extend(self.signing_secrets());
        out
    }

    /// The channels' secret keys, as the vendor issued them, with their dotted keys.
    pub fn channel_keys(&self) -> Vec<(String, &SecretString)> {
        let mut out = Vec::new();
        for (label, channel) in &self.channels {
            for (key_id, secret) in &channel.keys {
                out.push((format!("mecloud.channels.{label}.keys.{key_id}"), secret));
            }
        }
        out
    }

    /// tokenmint's own accesstoken signing secrets, with their dotted keys.
    pub fn signing_secrets(&self) -> Vec<(String, &SecretString)> {
        self.signing_keys
            .iter()
            .map(|(label, secret)| (format!("mecloud.signing_keys.{label}"), secret))
            .collect()
    }
}
