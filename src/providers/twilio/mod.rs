//! Twilio-style Access Tokens: `POST /twilio/v1/tokens`, `…/verify` and `…/revoke`.
//!
//! Callers authenticate with HTTP Basic, an API key SID and its secret, the credential Twilio's own REST API
//! accepts. The token is signed with that key, so rotating keys is adding the new key, moving callers, and
//! removing the old one: tokens the removed key signed then fail verification here.
//!
//! - [`config`]: the `[twilio]` settings, parsed into SIDs and regions as they are read.
//! - [`wire`]: the mint request as sent; [`sid`], [`domain`], [`grants`]: SIDs, identity, region and grants,
//!   each parsed once with its rules.
//! - [`token`]: signing and checking Access Tokens.
//! - `handlers`: the routes, over this provider's own state ([`router`]).

pub mod config;
pub mod domain;
pub mod grants;
mod handlers;
pub mod sid;
pub mod token;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::outcome::{Action, RouteSpec};

use self::config::TwilioSettings;
use self::grants::{GrantDefaults, Region};
use self::sid::Sid;
use self::token::SigningKey;
use crate::store::{RateLimit, Store};
use crate::ttl::{SharedClock, TtlPolicy, TtlSettings};

/// The provider built from configuration: API keys indexed by SID, and the store revocations live in.
#[derive(Debug)]
pub struct TwilioProvider {
    keys: HashMap<String, Arc<ApiKey>>,
    policy: TtlPolicy,
    leeway: Duration,
    revoke_rate: Option<RateLimit>,
    clock: SharedClock,
    store: Store,
}

/// One configured account.
#[derive(Debug)]
struct Account {
    sid: Sid,
    region: Option<Region>,
    defaults: GrantDefaults,
}

/// One configured API key with its precomputed signing keys.
struct ApiKey {
    sid: Sid,
    secret: SecretString,
    signing: SigningKey,
    decoding: DecodingKey,
    account: Arc<Account>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("sid", &self.sid)
            .field("account", &self.account.sid)
            .finish_non_exhaustive()
    }
}

/// A secret compared against when the SID is unknown, so both failures take the same time.
const DUMMY_SECRET: &[u8] = b"tokenmint-dummy-secret-for-constant-time-compare";

impl TwilioProvider {
    /// Builds the key index from the parsed settings (every SID and region already valid).
    pub fn from_settings(
        settings: &TwilioSettings,
        ttl: &TtlSettings,
        clock: SharedClock,
        store: Store,
    ) -> Self {
        let mut keys = HashMap::new();
        for account in settings.accounts.values() {
            let shared = Arc::new(Account {
                sid: account.account_sid.clone(),
                region: account.region.clone(),
                defaults: GrantDefaults {
                    chat_service_sid: account.chat_service_sid.clone(),
                },
            });
            for key in account.api_keys.values() {
                // The pre-keyed HMAC: keying once here, not per mint, is measured on the mint route (the
                // benchmark's largest single gain after logging).
                let secret_bytes = key.secret.expose_secret().as_bytes();
                keys.insert(
                    key.sid.as_str().to_owned(),
                    Arc::new(ApiKey {
                        sid: key.sid.clone(),
                        signing: SigningKey::new(secret_bytes),
                        decoding: DecodingKey::from_secret(secret_bytes),
                        secret: key.secret.clone(),
                        account: shared.clone(),
                    }),
                );
            }
        }
        Self {
            keys,
            policy: ttl.twilio,
            leeway: ttl.leeway,
            revoke_rate: (settings.revoke_rate_limit > 0).then_some(RateLimit {
                limit: settings.revoke_rate_limit,
                window: settings.revoke_rate_window,
                lockout: Duration::ZERO,
            }),
            clock,
            store,
        }
    }

    /// Checks HTTP Basic credentials: the user name is an API key SID, the password its secret.
    fn authenticate(&self, key_sid: &str, secret: &str) -> Option<&Arc<ApiKey>> {
        match self.keys.get(key_sid) {
            Some(key) => bool::from(
                key.secret
                    .expose_secret()
                    .as_bytes()
                    .ct_eq(secret.as_bytes()),
            )
            .then_some(key),
            None => {
                // Spend the same work on an unknown SID as on a wrong secret.
                let _ = DUMMY_SECRET.ct_eq(secret.as_bytes());
                None
            }
        }
    }
}

/// This provider's routes and what each does (for the request log line and the metrics).
pub const ROUTES: [RouteSpec; 3] = [
    RouteSpec::new("twilio", "/twilio/v1/tokens", Action::Issue),
    RouteSpec::new("twilio", "/twilio/v1/tokens/verify", Action::Verify),
    RouteSpec::new("twilio", "/twilio/v1/tokens/revoke", Action::Revoke),
];

/// This provider's part of the OpenAPI document (paths and schemas, generated from the handlers and types).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(handlers::mint, handlers::verify, handlers::revoke))]
    struct Api;
    <Api as utoipa::OpenApi>::openapi()
}

/// The routes of this provider ([`ROUTES`]), over its own state.
pub fn router(provider: Arc<TwilioProvider>) -> Router {
    let [mint, verify, revoke] = ROUTES;
    Router::new()
        .route(mint.path, post(handlers::mint))
        .route(verify.path, post(handlers::verify))
        .route(revoke.path, post(handlers::revoke))
        .with_state(provider)
}
