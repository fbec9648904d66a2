//! The `[twilio]` settings: accounts and their API keys, parsed into SIDs and regions as they are read, and the
//! rules serde cannot express.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::grants::Region;
use super::sid::{de, Sid};
use crate::settings::{redacted, secs, ConfigError};

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

fn minute() -> Duration {
    Duration::from_secs(60)
}

/// One Twilio account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioAccountSettings {
    /// `AC` + 32 hex digits.
    #[serde(deserialize_with = "de::account")]
    pub account_sid: Sid,
    /// Chat Service SID used when a chat grant names none.
    #[serde(default, deserialize_with = "de::chat_service")]
    pub chat_service_sid: Option<Sid>,
    /// Default region (`twr` header) for this account's tokens.
    #[serde(default)]
    pub region: Option<Region>,
    /// API keys, keyed by label; several may be active at once so keys rotate without downtime.
    #[serde(default)]
    pub api_keys: BTreeMap<String, TwilioApiKeySettings>,
}

/// One Twilio API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioApiKeySettings {
    /// `SK` + 32 hex digits.
    #[serde(deserialize_with = "de::api_key")]
    pub sid: Sid,
    /// The HMAC signing secret.
    #[serde(serialize_with = "redacted")]
    pub secret: SecretString,
}

impl TwilioSettings {
    /// The rules serde cannot express: a key per account, unique key SIDs, no empty secret.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.revoke_rate_limit > 0 && self.revoke_rate_window.is_zero() {
            return Err(ConfigError::invalid(
                "twilio.revoke_rate_window_secs",
                "must be at least 1",
            ));
        }
        let mut key_sids = HashSet::new();
        for (label, account) in &self.accounts {
            let prefix = format!("twilio.accounts.{label}");
            if account.api_keys.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{prefix}.api_keys"),
                    "at least one API key is required",
                ));
            }
            for (key_label, key) in &account.api_keys {
                let key_prefix = format!("{prefix}.api_keys.{key_label}");
                if !key_sids.insert(key.sid.as_str().to_ascii_lowercase()) {
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

    /// Every secret with its dotted key, and every identifying value (SIDs), for the production checks.
    pub fn secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = Vec::new();
        for (label, account) in &self.accounts {
            for (key_label, key) in &account.api_keys {
                out.push((
                    format!("twilio.accounts.{label}.api_keys.{key_label}.secret"),
                    &key.secret,
                ));
            }
        }
        out
    }

    /// Every identifying credential value (SIDs) with its dotted key.
    pub fn identifiers(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (label, account) in &self.accounts {
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
        out
    }
}
