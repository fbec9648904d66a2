//! The settings tree: layered loading, the top-level sections and the checks that span sections.
//!
//! Layers, later wins: `config/default.toml` (embedded) → `config/development.toml` (embedded; only when
//! `env = "development"`) → an optional file → `TOKENMINT_`-prefixed environment variables with `__` for
//! nesting. Each section is parsed into its typed form as it is read (TTL bounds into
//! [`TtlPolicy`](crate::ttl::TtlPolicy), SIDs into [`Sid`](crate::providers::twilio::sid::Sid)) and checked by
//! its own `validate`; every credential is a [`SecretString`] exposed only where a signature is computed or
//! compared. What spans sections (production hygiene, the log filter, server limits) is checked here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod production;

use config::{Config, Environment as EnvSource, File, FileFormat};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::providers::mecloud::config::MecloudSettings;
use crate::providers::netease::config::NeteaseSettings;
use crate::providers::twilio::config::TwilioSettings;
use crate::settings::secs;
pub use crate::settings::ConfigError;
use crate::store::{Backend, StoreSettings};
use crate::ttl::TtlSettings;

/// The embedded defaults: every key, commented.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
/// The embedded development profile: clearly fake sample tenants.
pub const DEVELOPMENT_TOML: &str = include_str!("../../config/development.toml");
/// Prefix of the environment variables that override configuration.
pub const ENV_PREFIX: &str = "TOKENMINT";

/// The largest `server.max_headers`: the HTTP parser takes this many headers, so that past the configured limit
/// the router, not the parser, answers, in the route's own error shape.
pub const MAX_HEADERS: usize = 1024;

/// Shortest signing secret accepted in production, in bytes.
pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// Which profile the service runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
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
    /// The `/metrics` endpoint.
    pub metrics: MetricsSettings,
    /// Cross-origin requests from browsers.
    pub cors: CorsSettings,
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
    /// A connection must send a complete request head within this long of opening, or of the first byte of a
    /// later request.
    #[serde(rename = "header_read_timeout_secs", with = "secs")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(rename = "idle_timeout_secs", with = "secs")]
    pub idle_timeout: Duration,
    /// Most connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Most requests running at once; more are answered 503 with `Retry-After` (probes excepted).
    pub max_in_flight: usize,
}

/// Cross-origin requests from browsers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call the browser-facing routes (`https://app.example.com`, or `*`); none by default.
    pub allowed_origins: Vec<String>,
    /// Also allow them on the Twilio routes (server-to-server by default: they take an API key secret).
    pub twilio: bool,
}

/// The `/metrics` endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `GET /metrics` at all.
    pub enabled: bool,
    /// Address of the metrics listener (when `port` is set).
    pub host: IpAddr,
    /// When set, `/metrics` is served on its own listener at `host:port` (0 picks a free port) and not on the
    /// main one, so a gateway in front of the main port never exposes it.
    #[serde(default)]
    pub port: Option<u16>,
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
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Tenants per provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tenants {
    /// Twilio accounts.
    pub twilio_accounts: usize,
    /// Twilio API keys, all accounts together.
    pub twilio_api_keys: usize,
    /// NetEase apps.
    pub netease_apps: usize,
    /// MeCloud channels.
    pub mecloud_channels: usize,
}

impl Tenants {
    /// Accounts, apps and channels together.
    pub fn total(&self) -> usize {
        self.twilio_accounts + self.netease_apps + self.mecloud_channels
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
        for (key, value) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout,
            ),
            ("server.idle_timeout_secs", self.server.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("server.max_connections", self.server.max_connections),
            ("server.max_in_flight", self.server.max_in_flight),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        for origin in &self.cors.allowed_origins {
            let valid = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/')
                    && axum::http::HeaderValue::from_str(origin).is_ok());
            if !valid {
                return Err(ConfigError::invalid(
                    "cors.allowed_origins",
                    format!(
                        "`{origin}` is not an origin: write scheme://host[:port] with no path or trailing slash \
                         (e.g. https://app.example.com), or *"
                    ),
                ));
            }
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
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "is not a tracing filter directive (e.g. info, warn, tokenmint=debug): {e}"
                ),
            ));
        }
        self.twilio.validate()?;
        self.netease.validate()?;
        self.mecloud.validate()?;
        if self.env == RunEnvironment::Production {
            self.validate_production()?;
        }
        Ok(())
    }

    /// How many tenants each provider has (for the start-up line, reloads and readiness).
    pub fn tenants(&self) -> Tenants {
        Tenants {
            twilio_accounts: self.twilio.accounts.len(),
            twilio_api_keys: self
                .twilio
                .accounts
                .values()
                .map(|a| a.api_keys.len())
                .sum(),
            netease_apps: self.netease.apps.len(),
            mecloud_channels: self.mecloud.channels.len(),
        }
    }

    /// The settings that differ between `self` and `next` but only take effect at a restart (listeners, the
    /// store, logging, connection limits): what a reload must report rather than apply.
    pub fn restart_only_changes(&self, next: &Settings) -> Vec<&'static str> {
        fn json<T: Serialize>(value: &T) -> String {
            serde_json::to_string(value).unwrap_or_default()
        }
        let (a, b) = (&self.server, &next.server);
        let mut changed = Vec::new();
        let pairs: [(&'static str, bool); 10] = [
            ("env", self.env != next.env),
            ("server.host", a.host != b.host),
            ("server.port", a.port != b.port),
            (
                "server.shutdown_grace_secs",
                a.shutdown_grace != b.shutdown_grace,
            ),
            (
                "server.header_read_timeout_secs",
                a.header_read_timeout != b.header_read_timeout,
            ),
            ("server.idle_timeout_secs", a.idle_timeout != b.idle_timeout),
            (
                "server.max_connections",
                a.max_connections != b.max_connections,
            ),
            ("log", json(&self.log) != json(&next.log)),
            ("metrics", json(&self.metrics) != json(&next.metrics)),
            // Redacted serialization: a changed Redis URL (a secret) shows as unchanged, so compare it exposed.
            (
                "store",
                json(&self.store) != json(&next.store)
                    || self.store.redis.url.expose_secret() != next.store.redis.url.expose_secret(),
            ),
        ];
        for (key, differs) in pairs {
            if differs {
                changed.push(key);
            }
        }
        changed
    }

    /// The effective configuration as pretty JSON, every secret replaced by `"[redacted]"`.
    pub fn redacted_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl RunEnvironment {
    /// The name as configured (`development`, `production`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

impl TryFrom<String> for RunEnvironment {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        crate::settings::choose(
            &value,
            &[
                ("development", Self::Development),
                ("production", Self::Production),
            ],
        )
    }
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        crate::settings::choose(&value, &[("text", Self::Text), ("json", Self::Json)])
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
            !production::sample_credentials().is_empty(),
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
            "configuration: twilio.accounts.acme.api_keys.main.secret: signing secrets must be at least 32 bytes in \
             production (the rule for secrets tokenmint signs with; vendor-issued NetEase AppSecrets and MeCloud \
             secret keys are accepted as issued)"
        );
    }

    /// The seed documents' own credentials: NetEase AppKey/AppSecret, a MeCloud channel key.
    const VENDOR_ISSUED: &str = r#"
        [netease.apps.seed]
        app_key = "94kid09c9ig9k1loimjg012345123456"
        [netease.apps.seed.secrets]
        issued = "123456789012"
        [mecloud]
        signing_key = "own"
        [mecloud.signing_keys]
        own = "a-signing-secret-tokenmint-chose-0123456789"
        [mecloud.channels.seed]
        app_id = "seed"
        [mecloud.channels.seed.keys]
        channel = "MECLOUD API"
    "#;

    #[test]
    fn production_accepts_vendor_issued_secrets_as_issued_and_warns_about_short_ones() {
        let settings = load(VENDOR_ISSUED, &[("TOKENMINT_ENV", "production")]).expect("accepted");
        assert_eq!(
            settings.warnings(),
            vec!["mecloud.channels.seed.keys.channel is only 11 bytes: accepted because the vendor issued it, but \
                  ask the vendor for a longer one if you can"
                .to_owned()],
            "NetEase's 12-character AppSecret is as NetEase issues it: no warning"
        );
    }

    #[test]
    fn production_keeps_the_strength_rule_for_secrets_tokenmint_signs_with() {
        let short_signing = VENDOR_ISSUED.replace(
            "own = \"a-signing-secret-tokenmint-chose-0123456789\"",
            "own = \"short\"",
        );
        let err = load(&short_signing, &[("TOKENMINT_ENV", "production")]).expect_err("refused");
        let message = err.to_string();
        assert!(
            message.starts_with("configuration: mecloud.signing_keys.own: signing secrets must be at least 32 bytes"),
            "{message}"
        );
        assert!(
            !message.contains("short\""),
            "no value in the message: {message}"
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
    fn an_invalid_log_filter_stops_start_up_instead_of_falling_back_to_info() {
        let err = load("", &[("TOKENMINT_LOG__LEVEL", "tokenmint=loud")]).expect_err("refused");
        assert!(err.to_string().contains("log.level"), "{err}");
        load("", &[("TOKENMINT_LOG__LEVEL", "warn,tokenmint=debug")]).expect("a valid directive");
    }

    #[test]
    fn redacted_json_hides_every_secret() {
        let settings = load("", &[]).expect("loads");
        let json = settings.redacted_json();
        assert!(json.contains("[redacted]"));
        assert!(!json.contains("sample-twilio-secret"), "{json}");
    }
}
