//! Twilio-style Access Tokens: `POST /twilio/v1/tokens` and `POST /twilio/v1/tokens/verify`.
//!
//! Callers authenticate with HTTP Basic, an API key SID and its secret, the credential Twilio's own REST API
//! accepts. The token is signed with that key, so rotating keys is adding the new key, moving callers, and
//! removing the old one: tokens the removed key signed then fail verification here.

pub mod grants;
pub mod sid;
pub mod token;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use self::grants::{GrantDefaults, Grants, Identity, MintRequest, Region};
use self::sid::{Sid, SidKind};
use self::token::{Claims, SigningKey, Unverified};
use crate::config::Settings;
use crate::error::ApiError;
use crate::http::extract::AppJson;
use crate::http::AppState;
use crate::store::RateLimit;
use crate::ttl::{SharedClock, TtlPolicy};

/// The provider built from configuration: API keys indexed by SID.
#[derive(Debug)]
pub struct TwilioProvider {
    keys: HashMap<String, Arc<ApiKey>>,
    policy: TtlPolicy,
    leeway: Duration,
    revoke_rate: Option<RateLimit>,
    clock: SharedClock,
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
    /// Builds the key index from validated settings (`Settings::validate` has checked every SID).
    pub fn from_settings(settings: &Settings, clock: SharedClock) -> Self {
        let mut keys = HashMap::new();
        for account in settings.twilio.accounts.values() {
            let Ok(account_sid) = Sid::parse(&account.account_sid, SidKind::Account) else {
                continue;
            };
            let shared = Arc::new(Account {
                sid: account_sid,
                region: account
                    .region
                    .as_deref()
                    .and_then(|r| Region::try_from(r).ok()),
                defaults: GrantDefaults {
                    chat_service_sid: account
                        .chat_service_sid
                        .as_deref()
                        .and_then(|s| Sid::parse(s, SidKind::ChatService).ok()),
                },
            });
            for key in account.api_keys.values() {
                let Ok(sid) = Sid::parse(&key.sid, SidKind::ApiKey) else {
                    continue;
                };
                let secret_bytes = key.secret.expose_secret().as_bytes();
                keys.insert(
                    key.sid.clone(),
                    Arc::new(ApiKey {
                        sid,
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
            policy: settings.ttl.twilio,
            leeway: settings.ttl.leeway,
            revoke_rate: (settings.twilio.revoke_rate_limit > 0).then_some(RateLimit {
                limit: settings.twilio.revoke_rate_limit,
                window: settings.twilio.revoke_rate_window,
                lockout: Duration::ZERO,
            }),
            clock,
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

/// The routes of this provider.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/v1/tokens", post(mint))
        .route("/twilio/v1/tokens/verify", post(verify))
        .route("/twilio/v1/tokens/revoke", post(revoke))
}

/// The authenticated caller: the API key it presented.
struct Caller {
    key: Arc<ApiKey>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (user, password) = basic_credentials(parts)?;
        match state.twilio.authenticate(&user, &password) {
            Some(key) => Ok(Self { key: key.clone() }),
            None => Err(ApiError::Unauthorized {
                code: "invalid_credentials",
                message: "unknown API key SID or wrong secret",
            }),
        }
    }
}

fn basic_credentials(parts: &Parts) -> Result<(String, String), ApiError> {
    const MALFORMED: ApiError = ApiError::Unauthorized {
        code: "malformed_credentials",
        message: "Authorization must be HTTP Basic: base64 of '<API key SID>:<secret>'",
    };
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::Unauthorized {
            code: "missing_credentials",
            message: "send HTTP Basic credentials: an API key SID and its secret",
        });
    };
    if values.next().is_some() {
        return Err(ApiError::Unauthorized {
            code: "malformed_credentials",
            message: "send exactly one Authorization header",
        });
    }
    let value = value.to_str().map_err(|_| MALFORMED)?;
    let (scheme, encoded) = value.split_once(' ').ok_or(MALFORMED)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(MALFORMED);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| MALFORMED)?;
    let decoded = String::from_utf8(decoded).map_err(|_| MALFORMED)?;
    let (user, password) = decoded.split_once(':').ok_or(MALFORMED)?;
    Ok((user.to_owned(), password.to_owned()))
}

/// `POST /twilio/v1/tokens` response.
#[derive(Debug, Serialize)]
struct MintResponse {
    token: String,
    identity: String,
    ttl: u32,
    /// Unix seconds.
    expires_at: i64,
}

/// Mints an Access Token signed with the caller's API key.
async fn mint(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(request): AppJson<MintRequest>,
) -> Result<Json<MintResponse>, ApiError> {
    let provider = &state.twilio;
    let key = &caller.key;
    let account = &key.account;

    let ttl = provider.policy.resolve(request.ttl)?;
    let identity = Identity::try_from(request.identity)?;
    let region = match request.region {
        Some(r) => Some(
            Region::try_from(r.as_str())
                .map_err(|e| ApiError::invalid("invalid_region", e.to_string()))?,
        ),
        None => account.region.clone(),
    };
    let grants = Grants::parse(identity, request.grants, &account.defaults)?;

    let now = provider.clock.now_secs();
    let exp = now + i64::from(ttl.as_secs());
    let nbf = match request.nbf {
        None => now,
        Some(nbf) if (0..exp).contains(&nbf) => nbf,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_nbf",
                "nbf must be a Unix time in seconds before the token's expiry (now + ttl)",
            ))
        }
    };
    let claims = Claims {
        jti: token::new_jti(&key.sid, now),
        iss: &key.sid,
        sub: &account.sid,
        iat: now,
        nbf,
        exp,
        grants: &grants,
    };
    let token = token::sign(&claims, region.as_ref(), &key.signing)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(Json(MintResponse {
        token,
        identity: grants.identity().as_str().to_owned(),
        ttl: ttl.as_secs(),
        expires_at: exp,
    }))
}

/// `POST /twilio/v1/tokens/verify` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    token: String,
}

/// Verifies a token issued for the caller's account: signature, expiry and not-before (with the configured
/// leeway). Always 200 when the request itself is sound; the body says whether the token is valid and, if not,
/// exactly why.
async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(request): AppJson<VerifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let account = &caller.key.account.sid;
    let outcome = match check(&state.twilio, account, &request.token) {
        Ok(verified) => {
            if state
                .store
                .is_revoked(&revocation_subject(account, &request.token))
                .await?
            {
                Err(token::VerifyError::Revoked)
            } else {
                Ok(verified)
            }
        }
        Err(e) => Err(e),
    };
    Ok(Json(match outcome {
        Ok(verified) => {
            json!({"valid": true, "header": verified.header, "claims": verified.claims})
        }
        Err(reason) => {
            json!({"valid": false, "error": {"code": reason.code(), "message": reason.to_string()}})
        }
    }))
}

fn check(
    provider: &TwilioProvider,
    account_sid: &Sid,
    token: &str,
) -> Result<token::Verified, token::VerifyError> {
    let unverified = Unverified::parse(token)?;
    if unverified.str_claim("sub")? != account_sid.as_str() {
        return Err(token::VerifyError::WrongAccount);
    }
    let key = provider
        .keys
        .get(unverified.str_claim("iss")?)
        .filter(|k| k.account.sid == *account_sid)
        .ok_or(token::VerifyError::UnknownKey)?;
    let exp = unverified.i64_claim("exp");
    let now = provider.clock.now_secs();
    let outcome = unverified.verify(token, &key.decoding, now, provider.leeway.as_secs());
    // A genuine token may live no longer than the policy allows from now, so a revocation (kept until the
    // token's expiry) is bounded too. Checked after the signature, so a forgery is reported as one.
    let latest = now
        .saturating_add(i64::from(provider.policy.max()))
        .saturating_add(i64::try_from(provider.leeway.as_secs()).unwrap_or(i64::MAX));
    match (&outcome, exp) {
        (Ok(_) | Err(token::VerifyError::NotYetValid { .. }), Some(exp)) if exp > latest => {
            Err(token::VerifyError::LifetimeExceedsPolicy {
                exp,
                now,
                max: provider.policy.max(),
            })
        }
        _ => outcome,
    }
}

/// What a revocation is stored under: the caller's account and a digest of the token's signed part. Exactly the
/// token revoked, whoever minted it: Twilio's helper libraries give two tokens minted in the same second the same
/// `jti`, and another account could sign a token carrying any `jti` it likes. The signed part cannot be spelled
/// two ways without breaking the signature, and a verified token always has one.
fn revocation_subject(account: &Sid, token: &str) -> String {
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    let mut subject = format!("twilio:{account}:");
    for byte in Sha256::digest(signed.as_bytes()) {
        let _ = write!(subject, "{byte:02x}");
    }
    subject
}

/// `POST /twilio/v1/tokens/revoke` response.
#[derive(Debug, Serialize)]
struct RevokeResponse {
    revoked: bool,
    /// The token's expiry (Unix seconds): the revocation is kept until then.
    expires_at: i64,
}

/// Revokes a token of the caller's account until its natural expiry: from then on the verify route refuses it
/// with `token_revoked`. The token must be genuine (signature checked); an expired one needs no revocation and is
/// answered `revoked: false`.
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(request): AppJson<VerifyRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let provider = &state.twilio;
    let account = &caller.key.account.sid;
    let verified = match check(provider, account, &request.token) {
        Ok(verified) => verified,
        Err(token::VerifyError::NotYetValid { verified, .. }) => *verified,
        Err(token::VerifyError::Expired { exp, .. }) => {
            return Ok(Json(RevokeResponse {
                revoked: false,
                expires_at: exp,
            }))
        }
        Err(reason) => return Err(ApiError::invalid("invalid_token", reason.to_string())),
    };
    let Some(exp) = verified.claims.get("exp").and_then(Value::as_i64) else {
        return Err(ApiError::invalid("invalid_token", "token has no exp claim"));
    };
    if let Some(rate) = &provider.revoke_rate {
        let decision = state
            .store
            .hit(&format!("twilio:revoke-rate:{account}"), rate)
            .await?;
        if !decision.allowed {
            let wait_ms = (decision.reset_at_ms - provider.clock.now_millis()).max(0);
            return Err(ApiError::RateLimited {
                retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1),
            });
        }
    }
    state
        .store
        .revoke_subject(
            &revocation_subject(account, &request.token),
            exp.saturating_mul(1000),
        )
        .await?;
    Ok(Json(RevokeResponse {
        revoked: true,
        expires_at: exp,
    }))
}
