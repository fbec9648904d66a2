//! Production hygiene: no sample credential from the development profile, and no short secret that tokenmint
//! itself signs with. It spans every section, so it lives with the tree rather than in any one section.
//!
//! Two kinds of secret, two rules. tokenmint's own signing secrets (Twilio API key secrets, whose real ones
//! Twilio issues with 32 characters, and `mecloud.signing_keys`) must be at least 32 bytes. Vendor-issued
//! secrets the caller already holds (NetEase AppSecrets, 12 characters as NetEase issues them; MeCloud secret
//! keys) are accepted as issued, with a start-up warning when shorter than [`WEAK_VENDOR_SECRET_BYTES`].

use std::collections::HashSet;

use config::{Config, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, Settings, DEFAULT_TOML, DEVELOPMENT_TOML, MIN_PRODUCTION_SECRET_BYTES};

/// Vendor-issued secrets shorter than this are accepted with a start-up warning (NetEase issues 12 characters).
pub const WEAK_VENDOR_SECRET_BYTES: usize = 12;

impl Settings {
    pub(super) fn validate_production(&self) -> Result<(), ConfigError> {
        let samples = sample_credentials();
        for (key, value) in self.credentials() {
            if samples.contains(value) {
                return Err(ConfigError::invalid(
                    key,
                    "is a sample credential from the development profile; configure your own for production",
                ));
            }
        }
        for (key, secret) in self.own_secrets() {
            if secret.expose_secret().len() < MIN_PRODUCTION_SECRET_BYTES {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "signing secrets must be at least {MIN_PRODUCTION_SECRET_BYTES} bytes in production \
                         (the rule for secrets tokenmint signs with; vendor-issued NetEase AppSecrets and MeCloud \
                         secret keys are accepted as issued)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What an operator should hear at start-up about valid but weak configuration: vendor-issued secrets
    /// shorter than [`WEAK_VENDOR_SECRET_BYTES`]. Never a value, only the key.
    pub fn warnings(&self) -> Vec<String> {
        self.vendor_secrets()
            .into_iter()
            .filter(|(_, secret)| secret.expose_secret().len() < WEAK_VENDOR_SECRET_BYTES)
            .map(|(key, secret)| {
                format!(
                    "{key} is only {} bytes: accepted because the vendor issued it, but ask the vendor for a \
                     longer one if you can",
                    secret.expose_secret().len()
                )
            })
            .collect()
    }

    /// Secrets tokenmint itself signs with, with their dotted keys.
    fn own_secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = self.twilio.secrets();
        out.extend(self.mecloud.signing_secrets());
        out
    }

    /// Secrets a vendor issued, with their dotted keys.
    fn vendor_secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = self.netease.secrets();
        out.extend(self.mecloud.channel_keys());
        out
    }

    /// Every secret with its dotted key.
    fn signing_secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = self.own_secrets();
        out.extend(self.vendor_secrets());
        out
    }

    /// Every identifying credential value (SIDs, AppKeys, secrets) with its dotted key.
    fn credentials(&self) -> Vec<(String, &str)> {
        let mut out = self.twilio.identifiers();
        out.extend(self.netease.identifiers());
        out.extend(
            self.signing_secrets()
                .into_iter()
                .map(|(key, secret)| (key, secret.expose_secret())),
        );
        out
    }
}

/// The credential values of the embedded development profile.
pub(super) fn sample_credentials() -> HashSet<String> {
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
