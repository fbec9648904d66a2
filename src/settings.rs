//! Building blocks every settings section uses, wherever the section lives: the configuration error (a key and
//! the rule it breaks), secrets serialized as `[redacted]`, and durations written as whole seconds.
//!
//! Sections live next to the code that uses them (`providers/*/config.rs`, `store`); [`crate::config`] layers
//! the sources and assembles the tree. Both depend on this module, never on each other's internals.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Serializer;

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

impl ConfigError {
    /// A value at `key` that breaks `rule`.
    pub fn invalid(key: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            rule: rule.into(),
        }
    }
}

/// Replaces every double-quoted value in a loader's message (`invalid type: string "…"`, a TOML line quoted back)
/// with `"[redacted]"`; a quote left open runs to the end of its line. Key names, which the messages put in
/// backticks, stay.
pub fn redact_quoted(message: &str) -> String {
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

/// Serializes a secret as `"[redacted]"`.
pub fn redacted<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[redacted]")
}

/// Serializes a map of secrets with its labels and every value as `"[redacted]"`.
pub fn redacted_map<S: Serializer>(
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

/// Serde helpers for a `Duration` written as whole seconds.
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Whole seconds.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    /// Whole seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Parses one of a fixed set of names (`env`, `log.format`, `store.backend`, …), case-insensitively; the error
/// names every valid one, so `TOKENMINT_ENV=prod` says what to write instead.
pub fn choose<T: Copy>(value: &str, choices: &[(&'static str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value.trim()))
        .map(|(_, choice)| *choice)
        .ok_or_else(|| {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            format!("expected one of {} (got `{value}`)", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
