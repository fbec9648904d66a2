//! MeCloud-style tokens: the client's SHA1 token is checked and exchanged for an accesstoken.
//!
//! - `POST /mecloud/v2/token/check`: "try creating a token": says whether a token is valid and, if not, which
//!   rule failed; never the expected token.
//! - `POST /mecloud/v2/accesstoken`: exchanges a valid token (JSON or form body) for an accesstoken, at most
//!   once per token, under a per-channel rate limit with lock-out.
//! - `GET|POST /mecloud/v2/accesstoken/verify`: for MeCloud-side APIs; the accesstoken as the `access-token`
//!   query parameter or a bearer header.
//! - `POST /mecloud/v2/accesstoken/revoke`: revokes one accesstoken until its expiry.

pub mod token;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::error::ApiError;
use crate::http::extract::AppJson;
use crate::http::AppState;
use crate::store::RateLimit;
use crate::ttl::{SharedClock, TtlPolicy};

/// A `time` below this many milliseconds (early 1973) is read as seconds sent by mistake.
const SECONDS_THRESHOLD: i64 = 100_000_000_000;
/// Longest randomKey accepted.
const MAX_RANDOM_KEY_CHARS: usize = 128;
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
}

impl MecloudProvider {
    /// Builds the channel index from validated settings.
    pub fn from_settings(settings: &Settings, clock: SharedClock) -> Self {
        let m = &settings.mecloud;
        // `Settings::validate` ensures an active signing secret whenever there are channels.
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
            policy: settings.ttl.mecloud,
            leeway: settings.ttl.leeway,
            clock,
        }
    }
}

/// The routes of this provider.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mecloud/v2/token/check", post(check))
        .route("/mecloud/v2/accesstoken", post(exchange))
        .route(
            "/mecloud/v2/accesstoken/verify",
            axum::routing::get(verify).post(verify),
        )
        .route("/mecloud/v2/accesstoken/revoke", post(revoke))
}

/// A JSON scalar sent as a string (forms always are) or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// A number.
    Number(serde_json::Number),
}

impl Scalar {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(s) => Cow::Borrowed(s.as_str()),
            Self::Number(n) => Cow::Owned(n.to_string()),
        }
    }
}

/// The body of check and exchange, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(rename = "appId", alias = "app_id")]
    app_id: Option<Scalar>,
    time: Option<Scalar>,
    #[serde(rename = "randomKey", alias = "random-key", alias = "random_key")]
    random_key: Option<String>,
    token: Option<String>,
    /// Exchange only: a shorter accesstoken lifetime, in seconds.
    ttl: Option<Scalar>,
}

/// A token request whose fields have the right shape (not yet checked against a channel).
struct TokenClaim {
    app_id: String,
    time: i64,
    random_key: String,
    token: String,
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid("missing_field", format!("{field} is required"))
}

impl TryFrom<&TokenRequest> for TokenClaim {
    type Error = ApiError;

    fn try_from(r: &TokenRequest) -> Result<Self, ApiError> {
        let app_id = r
            .app_id
            .as_ref()
            .map(Scalar::text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("appId"))?;
        let time_text = r
            .time
            .as_ref()
            .map(Scalar::text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("time"))?;
        let time = crate::decimal::parse_i64(&time_text).ok_or_else(|| {
            ApiError::invalid(
                "invalid_time",
                "time must be a whole number of milliseconds since the epoch (digits, no leading zeros)",
            )
        })?;
        let random_key = r
            .random_key
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("randomKey"))?;
        if random_key.chars().count() > MAX_RANDOM_KEY_CHARS
            || random_key.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "invalid_random_key",
                format!("randomKey must be 1 to {MAX_RANDOM_KEY_CHARS} characters without control characters"),
            ));
        }
        let token = r
            .token
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("token"))?;
        if token.len() != 40 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                "invalid_token",
                "token must be 40 hex digits (a SHA-1)",
            ));
        }
        Ok(Self {
            app_id: app_id.into_owned(),
            time,
            random_key,
            token: token.to_ascii_lowercase(),
        })
    }
}

/// Why a token is not valid: a rule, never the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenFault {
    UnknownAppId,
    TimeInSeconds,
    TimeOutsideWindow,
    Mismatch,
}

impl TokenFault {
    fn code(self) -> &'static str {
        match self {
            Self::UnknownAppId => "unknown_app_id",
            Self::TimeInSeconds => "time_in_seconds",
            Self::TimeOutsideWindow => "time_outside_window",
            Self::Mismatch => "token_mismatch",
        }
    }

    fn message(self, window: Duration) -> String {
        match self {
            Self::UnknownAppId => "no channel has this appId".to_owned(),
            Self::TimeInSeconds => "time looks like seconds; send milliseconds since the epoch".to_owned(),
            Self::TimeOutsideWindow => format!(
                "time must be within {} seconds of the server's time (milliseconds since the epoch)",
                window.as_secs()
            ),
            Self::Mismatch => {
                "token does not match SHA1(appId.time.randomKey.secretKey) for any key of this channel".to_owned()
            }
        }
    }

    fn into_error(self, window: Duration) -> ApiError {
        let message = self.message(window);
        match self {
            Self::UnknownAppId | Self::Mismatch => ApiError::Rejected {
                code: self.code(),
                message: message.into(),
            },
            Self::TimeInSeconds | Self::TimeOutsideWindow => {
                ApiError::invalid(self.code(), message)
            }
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
        let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
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

/// A JSON or form body, bad input answered in the JSON error shape.
pub struct JsonOrForm<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if content_type == "application/x-www-form-urlencoded" {
            let body = axum::body::to_bytes(req.into_body(), state.body_limit)
                .await
                .map_err(|_| ApiError::PayloadTooLarge {
                    limit: state.body_limit,
                })?;
            serde_urlencoded::from_bytes(&body)
                .map(Self)
                .map_err(|e| ApiError::BadBody {
                    code: "invalid_body",
                    message: e.to_string(),
                })
        } else {
            AppJson::<T>::from_request(req, state)
                .await
                .map(|AppJson(v)| Self(v))
        }
    }
}

/// `POST /mecloud/v2/token/check` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckResponse {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

async fn check(
    State(state): State<AppState>,
    JsonOrForm(request): JsonOrForm<TokenRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    let claim = TokenClaim::try_from(&request)?;
    let provider = &state.mecloud;
    Ok(Json(match provider.validate(&claim) {
        Ok((_, key)) => CheckResponse {
            valid: true,
            key_id: Some(key.id.clone()),
            error: None,
        },
        Err(fault) => CheckResponse {
            valid: false,
            key_id: None,
            error: Some(
                serde_json::json!({"code": fault.code(), "message": fault.message(provider.window)}),
            ),
        },
    }))
}

/// The accesstoken's claims.
#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    aud: String,
    /// The randomKey the client chose: who the accesstoken is for.
    sub: String,
    app_id: String,
    key_id: String,
    jti: String,
    iat: i64,
    exp: i64,
}

/// `POST /mecloud/v2/accesstoken` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeResponse {
    accesstoken: String,
    token_type: &'static str,
    expires_in: u32,
    /// Unix seconds.
    expires_at: i64,
    app_id: String,
    key_id: String,
}

fn token_digest(app_id: &str, token: &str) -> String {
    hex::encode(Sha1::digest(format!("{app_id}:{token}").as_bytes()))
}

async fn exchange(
    State(state): State<AppState>,
    JsonOrForm(request): JsonOrForm<TokenRequest>,
) -> Result<Json<ExchangeResponse>, ApiError> {
    let provider = &state.mecloud;
    let claim = TokenClaim::try_from(&request)?;
    let requested_ttl = match &request.ttl {
        None => None,
        Some(ttl) => Some(crate::decimal::parse_i64(&ttl.text()).ok_or_else(|| {
            ApiError::invalid(
                "invalid_ttl",
                format!(
                    "ttl must be between {} and {} seconds",
                    provider.policy.min(),
                    provider.policy.max()
                ),
            )
        })?),
    };
    let ttl = provider.policy.resolve(requested_ttl)?;
    let (channel, key) = provider
        .validate(&claim)
        .map_err(|f| f.into_error(provider.window))?;

    if provider.single_exchange {
        // Remember the token for as long as its time stays inside the window.
        let remember = provider.window * 2 + Duration::from_secs(1);
        let key_name = format!("mc:exchanged:{}", token_digest(&claim.app_id, &claim.token));
        if !state.store.remember_once(&key_name, remember).await? {
            return Err(ApiError::Conflict {
                code: "token_already_exchanged",
                message:
                    "this token was already exchanged; make a new token (new time or randomKey)"
                        .into(),
            });
        }
    }

    // The rate limits count accesstokens issued, so they come after the replay check; a refused exchange has
    // used up its token, and the client makes a new one (a new time or randomKey) after the lock-out. The key's
    // own limit comes first, so a key over its limit is refused without using up the channel's allowance.
    provider
        .limit(&state, provider.rate.as_ref(), "rate", channel, Some(key))
        .await?;
    provider
        .limit(
            &state,
            provider.channel_rate.as_ref(),
            "rate",
            channel,
            None,
        )
        .await?;
    let now = provider.clock.now_secs();
    let exp = now + i64::from(ttl.as_secs());
    let claims = AccessClaims {
        iss: "tokenmint".to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: claim.random_key.clone(),
        app_id: channel.app_id.clone(),
        key_id: key.id.clone(),
        jti: format!("{:032x}", rand::random::<u128>()),
        iat: now,
        exp,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(format!("{}:{}", channel.app_id, key.id));
    let accesstoken = jsonwebtoken::encode(&header, &claims, &key.encoding)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(Json(ExchangeResponse {
        accesstoken,
        token_type: "Bearer",
        expires_in: ttl.as_secs(),
        expires_at: exp,
        app_id: channel.app_id.clone(),
        key_id: key.id.clone(),
    }))
}

fn rejected(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
    ApiError::Rejected {
        code,
        message: message.into(),
    }
}

impl MecloudProvider {
    /// Counts one event of `kind` for the key (or, with `None`, the whole channel) under `rate`; 429 past it.
    async fn limit(
        &self,
        state: &AppState,
        rate: Option<&RateLimit>,
        kind: &str,
        channel: &Channel,
        key: Option<&Key>,
    ) -> Result<(), ApiError> {
        let Some(rate) = rate else {
            return Ok(());
        };
        let counter = match key {
            Some(key) => format!(
                "mc:{kind}:{}:{}:{}",
                channel.app_id.len(),
                channel.app_id,
                key.id
            ),
            None => format!("mc:{kind}:{}", channel.app_id),
        };
        let decision = state.store.hit(&counter, rate).await?;
        if decision.allowed {
            return Ok(());
        }
        let wait_ms = (decision.reset_at_ms - self.clock.now_millis()).max(0);
        Err(ApiError::RateLimited {
            retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1),
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
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
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

/// `access-token` query parameter.
#[derive(Debug, Deserialize)]
struct AccessQuery {
    #[serde(rename = "access-token")]
    access_token: Option<String>,
}

/// `POST /mecloud/v2/accesstoken/verify` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyResponse {
    valid: bool,
    app_id: String,
    key_id: String,
    subject: String,
    /// Unix seconds.
    expires_at: i64,
}

/// The bearer token of the one Authorization header; `None` when there is none, several, or another scheme.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AccessQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VerifyResponse>, ApiError> {
    let from_query = query
        .ok()
        .and_then(|Query(q)| q.access_token)
        .filter(|t| !t.is_empty());
    let accesstoken = from_query.or_else(|| bearer(&headers)).ok_or_else(|| {
        rejected(
            "missing_accesstoken",
            "send the accesstoken as the access-token query parameter or an Authorization: Bearer header",
        )
    })?;
    let claims = state.mecloud.decode(&accesstoken)?;
    if state.store.is_revoked(&revocation_subject(&claims)).await? {
        return Err(rejected("accesstoken_revoked", "accesstoken was revoked"));
    }
    Ok(Json(VerifyResponse {
        valid: true,
        app_id: claims.app_id,
        key_id: claims.key_id,
        subject: claims.sub,
        expires_at: claims.exp,
    }))
}

/// `POST /mecloud/v2/accesstoken/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    accesstoken: String,
}

/// What a revocation is stored under: the channel and the accesstoken's id (only tokenmint signs accesstokens, and
/// it gives each a random 128-bit id).
fn revocation_subject(claims: &AccessClaims) -> String {
    format!(
        "mc:revoked:{}:{}:{}",
        claims.app_id.len(),
        claims.app_id,
        claims.jti
    )
}

/// Revokes one genuine accesstoken until its expiry (bounded by the policy); whoever holds it may revoke it.
/// Revocations count against the key's rate limit, on their own counter.
async fn revoke(
    State(state): State<AppState>,
    JsonOrForm(request): JsonOrForm<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let provider = &state.mecloud;
    let claims = provider.decode(&request.accesstoken)?;
    if let Some((channel, key)) = provider.key_of(&claims) {
        provider
            .limit(
                &state,
                provider.rate.as_ref(),
                "revoke-rate",
                channel,
                Some(key),
            )
            .await?;
    }
    state
        .store
        .revoke_subject(
            &revocation_subject(&claims),
            claims.exp.saturating_mul(1000),
        )
        .await?;
    Ok(Json(
        serde_json::json!({"revoked": true, "expiresAt": claims.exp}),
    ))
}
