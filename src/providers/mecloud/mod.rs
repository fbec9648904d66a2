//! MeCloud-style tokens: the client's SHA1 token is checked and exchanged for an accesstoken.
//!
//! - `POST /mecloud/v2/token/check`: "try creating a token": says whether a token is valid and, if not, which
//!   rule failed; never the expected token.
//! - `POST /mecloud/v2/accesstoken`: exchanges a valid token (JSON or form body) for an accesstoken, at most
//!   once per token, under per-key and per-channel rate limits.
//! - `GET|POST /mecloud/v2/accesstoken/verify`: for MeCloud-side APIs; the accesstoken as the `access-token`
//!   query parameter or a bearer header.
//! - `POST /mecloud/v2/accesstoken/revoke`: revokes one accesstoken until its expiry.
//!
//! - [`config`]: the `[mecloud]` settings.
//! - `wire`: request and response bodies; `domain`: a token request checked for shape, and why a token fails.
//! - [`token`]: the client token, the accesstoken key derivation and claims.
//! - `handlers`: the routes, over this provider's own state ([`router`]).

pub mod config;
mod domain;
mod handlers;
pub mod token;
mod wire;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use self::config::MecloudSettings;
use self::domain::{TokenClaim, TokenFault, SECONDS_THRESHOLD};
use self::token::AccessClaims;
use crate::error::ApiError;
use crate::outcome::{Action, RouteSpec};
use crate::store::keys::{Counter, StateKey};
use crate::store::{RateLimit, Store, TokenStore};
use crate::ttl::{SharedClock, TtlPolicy, TtlSettings};

/// The accesstoken's audience claim.
const AUDIENCE: &str = "mecloud";

/// One secret key of a channel, with its precomputed accesstoken keys: the one the active signing secret
/// derives, and one per configured signing secret (the active one first) for verification.
struct Key {
    id: String,
    secret: secrecy::SecretString,
    encoding: EncodingKey,
    decoding: Vec<DecodingKey>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One channel.
#[derive(Debug)]
struct Channel {
    app_id: String,
    keys: Vec<Key>,
}

/// The provider built from configuration.
#[derive(Debug)]
pub struct MecloudProvider {
    channels: HashMap<String, Channel>,
    window: Duration,
    single_exchange: bool,
    rate: Option<RateLimit>,
    channel_rate: Option<RateLimit>,
    policy: TtlPolicy,
    leeway: Duration,
    clock: SharedClock,
    store: Store,
}

impl MecloudProvider {
    /// Builds the channel index from the settings (`MecloudSettings::validate` ensures an active signing
    /// secret whenever there are channels).
    pub fn from_settings(
        m: &MecloudSettings,
        ttl: &TtlSettings,
        clock: SharedClock,
        store: Store,
    ) -> Self {
        let active = m.active_signing_key();
        let signing: Vec<&secrecy::SecretString> = active
            .iter()
            .map(|(_, secret)| *secret)
            .chain(
                m.signing_keys
                    .iter()
                    .filter(|(label, _)| active.is_none_or(|(a, _)| a != label.as_str()))
                    .map(|(_, secret)| secret),
            )
            .collect();
        let channels = m
            .channels
            .values()
            .map(|c| {
                let keys = c
                    .keys
                    .iter()
                    .filter_map(|(id, secret)| {
                        let derive = |signing: &secrecy::SecretString| {
                            token::accesstoken_key(
                                signing.expose_secret().as_bytes(),
                                &c.app_id,
                                id,
                                secret.expose_secret(),
                            )
                        };
                        Some(Key {
                            id: id.clone(),
                            secret: secret.clone(),
                            encoding: EncodingKey::from_secret(&derive(signing.first()?)),
                            decoding: signing
                                .iter()
                                .map(|s| DecodingKey::from_secret(&derive(s)))
                                .collect(),
                        })
                    })
                    .collect();
                (
                    c.app_id.clone(),
                    Channel {
                        app_id: c.app_id.clone(),
                        keys,
                    },
                )
            })
            .collect();
        Self {
            channels,
            window: m.time_window,
            single_exchange: m.single_exchange,
            rate: (m.rate_limit > 0).then_some(RateLimit {
                limit: m.rate_limit,
                window: m.rate_window,
                lockout: m.lockout,
            }),
            channel_rate: (m.channel_rate_limit > 0).then_some(RateLimit {
                limit: m.channel_rate_limit,
                window: m.rate_window,
                lockout: Duration::ZERO,
            }),
            policy: ttl.mecloud,
            leeway: ttl.leeway,
            clock,
            store,
        }
    }
}

impl MecloudProvider {
    /// Checks a token: channel, time window, then the digest against each of the channel's keys in constant time.
    fn validate(&self, claim: &TokenClaim) -> Result<(&Channel, &Key), TokenFault> {
        let channel = self
            .channels
            .get(&claim.app_id)
            .ok_or(TokenFault::UnknownAppId)?;
        let now = self.clock.now_millis();
        let window = crate::ttl::millis(self.window);
        if (claim.time - now).abs() > window {
            let as_seconds = claim.time < SECONDS_THRESHOLD
                && (claim.time.saturating_mul(1000) - now).abs() <= window;
            return Err(if as_seconds {
                TokenFault::TimeInSeconds
            } else {
                TokenFault::TimeOutsideWindow
            });
        }
        let mut matched = None;
        for key in &channel.keys {
            let expected = token::client_token(
                &claim.app_id,
                claim.time,
                &claim.random_key,
                key.secret.expose_secret(),
            );
            // Every key is tried, so the time taken does not tell which key (or whether any) matched.
            if bool::from(expected.as_bytes().ct_eq(claim.token.as_bytes())) {
                matched = Some(key);
            }
        }
        matched
            .map(|key| (channel, key))
            .ok_or(TokenFault::Mismatch)
    }
}

fn rejected(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
    ApiError::Rejected {
        code,
        message: message.into(),
    }
}

impl MecloudProvider {
    /// Counts one event of `counter` for the key (or, with `None`, the whole channel) under `rate`; 429 past it.
    async fn limit(
        &self,

        rate: Option<&RateLimit>,
        counter: Counter,
        channel: &Channel,
        key: Option<&Key>,
    ) -> Result<(), ApiError> {
        let Some(rate) = rate else {
            return Ok(());
        };
        let key = StateKey::mecloud_counter(&channel.app_id, key.map(|k| k.id.as_str()), counter);
        let decision = self.store.hit(key.as_str(), rate).await?;
        if decision.allowed {
            return Ok(());
        }
        Err(ApiError::RateLimited {
            retry_after_secs: crate::ttl::retry_after_secs(
                decision.reset_at_ms,
                self.clock.now_millis(),
            ),
        })
    }

    /// The channel and key an accesstoken's claims name (both still configured).
    fn key_of(&self, claims: &AccessClaims) -> Option<(&Channel, &Key)> {
        let channel = self.channels.get(&claims.app_id)?;
        let key = channel.keys.iter().find(|k| k.id == claims.key_id)?;
        Some((channel, key))
    }

    /// Checks an accesstoken's signature against the key named in its header (which must still be configured),
    /// then its audience, its lifetime against the policy, and its expiry.
    fn decode(&self, accesstoken: &str) -> Result<AccessClaims, ApiError> {
        let header = jsonwebtoken::decode_header(accesstoken)
            .map_err(|_| rejected("malformed_accesstoken", "accesstoken is not well-formed"))?;
        if header.alg != Algorithm::HS256 {
            return Err(rejected(
                "malformed_accesstoken",
                "accesstoken is not signed with HS256",
            ));
        }
        let kid = header.kid.unwrap_or_default();
        let (app_id, key_id) = kid
            .split_once(':')
            .ok_or_else(|| rejected("malformed_accesstoken", "accesstoken names no key"))?;
        let key = self
            .channels
            .get(app_id)
            .and_then(|c| c.keys.iter().find(|k| k.id == key_id))
            .ok_or_else(|| {
                rejected(
                    "key_revoked",
                    "the secret key this accesstoken was made with is no longer configured",
                )
            })?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        // The active signing secret first; the others verify what they signed before a rotation.
        let mut outcome = Err(rejected(
            "bad_signature",
            "accesstoken signature does not match",
        ));
        for decoding in &key.decoding {
            match jsonwebtoken::decode::<AccessClaims>(accesstoken, decoding, &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                Err(_) => {
                    outcome = Err(rejected(
                        "malformed_accesstoken",
                        "accesstoken is not well-formed",
                    ));
                    break;
                }
            }
        }
        let claims = outcome?;
        if claims.aud != AUDIENCE || claims.app_id != app_id || claims.key_id != key_id {
            return Err(rejected(
                "malformed_accesstoken",
                "accesstoken claims do not match its key",
            ));
        }
        // Whatever the signature, no accesstoken outlives the policy: checked on every verification.
        let max = i64::from(self.policy.max());
        let leeway = crate::ttl::secs(self.leeway);
        let latest = self
            .clock
            .now_secs()
            .saturating_add(max)
            .saturating_add(leeway);
        if claims.exp <= claims.iat || claims.exp - claims.iat > max || claims.exp > latest {
            return Err(rejected(
                "lifetime_exceeds_policy",
                format!("accesstoken lifetime is outside the TTL policy (at most {max} seconds)"),
            ));
        }
        if self.clock.now_secs() >= claims.exp {
            return Err(rejected(
                "accesstoken_expired",
                format!("accesstoken expired at {}", claims.exp),
            ));
        }
        Ok(claims)
    }
}

/// This provider's routes and what each does (for the request log line and the metrics). The check of a
/// client's SHA1 token is a verification.
pub const ROUTES: [RouteSpec; 4] = [
    RouteSpec::new("mecloud", "/mecloud/v2/token/check", Action::Verify),
    RouteSpec::new("mecloud", "/mecloud/v2/accesstoken", Action::Issue),
    RouteSpec::new("mecloud", "/mecloud/v2/accesstoken/verify", Action::Verify),
    RouteSpec::new("mecloud", "/mecloud/v2/accesstoken/revoke", Action::Revoke),
];

/// This provider's part of the OpenAPI document (paths and schemas, generated from the handlers and types).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(
        handlers::check,
        handlers::exchange,
        handlers::verify,
        handlers::revoke
    ))]
    struct Api;
    <Api as utoipa::OpenApi>::openapi()
}

/// The routes of this provider ([`ROUTES`]), over its own state.
pub fn router(provider: Arc<MecloudProvider>) -> Router {
    let [check, exchange, verify, revoke] = ROUTES;
    Router::new()
        .route(check.path, post(handlers::check))
        .route(exchange.path, post(handlers::exchange))
        .route(verify.path, get(handlers::verify).post(handlers::verify))
        .route(revoke.path, post(handlers::revoke))
        .with_state(provider)
}
