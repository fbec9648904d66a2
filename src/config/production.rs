//! Production hygiene: no sample credential from the development profile, no short signing secret. It spans
//! every section, so it lives with the tree rather than in any one section.

use std::collections::HashSet;

use config::{Config, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, Settings, DEFAULT_TOML, DEVELOPMENT_TOML, MIN_PRODUCTION_SECRET_BYTES};

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

    /// Every secret with its dotted key.
    fn signing_secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out = self.twilio.secrets();
        out.extend(self.netease.secrets());
        out.extend(self.mecloud.secrets());
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
