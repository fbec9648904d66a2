//! The Twilio routes: HTTP Basic authentication, mint, verify and revoke.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::headers::authorization::Basic;
use axum_extra::headers::{Authorization, Header as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::grants::{Grants, Identity, MintRequest, Region};
use super::sid::Sid;
use super::token::{self, Claims, Unverified};
use super::{ApiKey, TwilioProvider};
use crate::error::ApiError;
use crate::error::{CommonErrors, ErrorBody};
use crate::extract::AppJson;
use crate::outcome::Outcome;
use crate::store::keys::{Counter, StateKey};
use crate::store::TokenStore;

/// The authenticated caller: the API key it presented.
pub(super) struct Caller {
    key: Arc<ApiKey>,
}

impl FromRequestParts<Arc<TwilioProvider>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        provider: &Arc<TwilioProvider>,
    ) -> Result<Self, Self::Rejection> {
        let credentials = basic_credentials(parts)?;
        match provider.authenticate(credentials.username(), credentials.password()) {
            Some(key) => Ok(Self { key: key.clone() }),
            None => Err(ApiError::Unauthorized {
                code: "invalid_credentials",
                message: "unknown API key SID or wrong secret",
            }),
        }
    }
}

/// The one Authorization header, decoded as HTTP Basic (axum-extra's typed header).
fn basic_credentials(parts: &Parts) -> Result<Basic, ApiError> {
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
    // `Authorization::decode` checks the scheme (any case) before decoding the credentials.
    Authorization::<Basic>::decode(&mut std::iter::once(value))
        .map(|header| header.0)
        .map_err(|_| MALFORMED)
}

/// `POST /twilio/v1/tokens` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MintResponse {
    token: String,
    identity: String,
    ttl: u32,
    /// Unix seconds.
    expires_at: i64,
}

/// Mints an Access Token signed with the caller's API key.
#[utoipa::path(
    post, path = "/twilio/v1/tokens", tag = "twilio", request_body = MintRequest,
    security(("basic" = [])),
    responses(
        CommonErrors,
        (status = 200, description = "The signed Access Token", body = MintResponse),
        (status = 401, description = "Missing, malformed or unknown API key credentials", body = ErrorBody),
    )
)]
pub(super) async fn mint(
    State(provider): State<Arc<TwilioProvider>>,
    caller: Caller,
    AppJson(request): AppJson<MintRequest>,
) -> Result<Json<MintResponse>, ApiError> {
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

/// `POST /twilio/v1/tokens/verify` and `…/revoke` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyRequest {
    token: String,
}

/// Verifies a token issued for the caller's account: signature, expiry and not-before (with the configured
/// leeway). Always 200 when the request itself is sound; the body says whether the token is valid and, if not,
/// exactly why.
#[utoipa::path(
    post, path = "/twilio/v1/tokens/verify", tag = "twilio", request_body = VerifyRequest,
    security(("basic" = [])),
    responses(
        CommonErrors,
        (status = 200, description = "Whether the token is valid; if not, why", body = VerifyResponse),
        (status = 401, description = "Missing, malformed or unknown API key credentials", body = ErrorBody),
    )
)]
pub(super) async fn verify(
    State(provider): State<Arc<TwilioProvider>>,
    caller: Caller,
    AppJson(request): AppJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let account = &caller.key.account.sid;
    let outcome = match check(&provider, account, &request.token) {
        Ok(verified) => {
            if provider
                .store
                .is_revoked(revocation_subject(account, &request.token).as_str())
                .await?
            {
                Err(token::VerifyError::Revoked)
            } else {
                Ok(verified)
            }
        }
        Err(e) => Err(e),
    };
    Ok(match outcome {
        Ok(verified) => Json(
            json!({"valid": true, "header": verified.header, "claims": verified.claims}),
        )
        .into_response(),
        Err(reason) => Outcome(reason.code()).attach(
            Json(json!({"valid": false, "error": {"code": reason.code(), "message": reason.to_string()}}))
                .into_response(),
        ),
    })
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
        .saturating_add(crate::ttl::secs(provider.leeway));
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
fn revocation_subject(account: &Sid, token: &str) -> StateKey {
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    StateKey::twilio_revoked(
        account.as_str(),
        &hex::encode(Sha256::digest(signed.as_bytes())),
    )
}

/// `POST /twilio/v1/tokens/verify` response: `valid` and, when valid, the token's header and claims; when not,
/// why.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the shape `verify` writes with `json!`; the contract test checks they agree.
pub(super) struct VerifyResponse {
    valid: bool,
    #[schema(value_type = Option<Object>)]
    header: Option<Value>,
    #[schema(value_type = Option<Object>)]
    claims: Option<Value>,
    error: Option<crate::error::ErrorDetail<'static>>,
}

/// `POST /twilio/v1/tokens/revoke` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RevokeResponse {
    revoked: bool,
    /// The token's expiry (Unix seconds): the revocation is kept until then.
    expires_at: i64,
}

/// Revokes a token of the caller's account until its natural expiry: from then on the verify route refuses it
/// with `token_revoked`. The token must be genuine (signature checked); an expired one needs no revocation and is
/// answered `revoked: false`.
#[utoipa::path(
    post, path = "/twilio/v1/tokens/revoke", tag = "twilio", request_body = VerifyRequest,
    security(("basic" = [])),
    responses(
        CommonErrors,
        (status = 200, description = "Revoked until its expiry (or already expired)", body = RevokeResponse),
        (status = 429, description = "Over twilio.revoke_rate_limit (Retry-After)", body = ErrorBody),
        (status = 401, description = "Missing, malformed or unknown API key credentials", body = ErrorBody),
    )
)]
pub(super) async fn revoke(
    State(provider): State<Arc<TwilioProvider>>,
    caller: Caller,
    AppJson(request): AppJson<VerifyRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let account = &caller.key.account.sid;
    let verified = match check(&provider, account, &request.token) {
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
        let decision = provider
            .store
            .hit(
                StateKey::twilio_counter(account.as_str(), Counter::Revoke).as_str(),
                rate,
            )
            .await?;
        if !decision.allowed {
            return Err(ApiError::RateLimited {
                retry_after_secs: crate::ttl::retry_after_secs(
                    decision.reset_at_ms,
                    provider.clock.now_millis(),
                ),
            });
        }
    }
    provider
        .store
        .revoke_until(
            revocation_subject(account, &request.token).as_str(),
            exp.saturating_mul(1000),
        )
        .await?;
    Ok(Json(RevokeResponse {
        revoked: true,
        expires_at: exp,
    }))
}
