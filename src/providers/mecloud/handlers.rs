//! The MeCloud routes: check, exchange, verify and revoke.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::headers::authorization::Bearer;
use axum_extra::headers::{Authorization, Header as _};
use jsonwebtoken::{Algorithm, Header};
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::domain::TokenClaim;
use super::token::AccessClaims;
use super::wire::{
    AccessQuery, CheckResponse, ExchangeResponse, RevokeRequest, TokenRequest, VerifyResponse,
};
use super::{rejected, MecloudProvider, AUDIENCE};
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::JsonOrForm;
use crate::outcome::Outcome;
use crate::store::keys::{Counter, StateKey};
use crate::store::TokenStore;

/// Checks a client's SHA1 token without exchanging it.
#[utoipa::path(
    post, path = "/mecloud/v2/token/check", tag = "mecloud",
    request_body(content(
        (TokenRequest = "application/json"),
        (TokenRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        CommonErrors,
        (status = 200, description = "Whether the token is valid; if not, why", body = CheckResponse),
    )
)]
pub(super) async fn check(
    State(provider): State<Arc<MecloudProvider>>,
    JsonOrForm(request): JsonOrForm<TokenRequest>,
) -> Result<Response, ApiError> {
    let claim = TokenClaim::try_from(&request)?;
    Ok(match provider.validate(&claim) {
        Ok((_, key)) => Json(CheckResponse {
            valid: true,
            key_id: Some(key.id.clone()),
            error: None,
        })
        .into_response(),
        Err(fault) => Outcome(fault.code()).attach(
            Json(CheckResponse {
                valid: false,
                key_id: None,
                error: Some(
                    serde_json::json!({"code": fault.code(), "message": fault.message(provider.window)}),
                ),
            })
            .into_response(),
        ),
    })
}

fn exchanged_key(app_id: &str, token: &str) -> StateKey {
    StateKey::mecloud_exchanged(app_id, &hex::encode(Sha1::digest(token.as_bytes())))
}

/// Exchanges a valid client token for an accesstoken.
#[utoipa::path(
    post, path = "/mecloud/v2/accesstoken", tag = "mecloud",
    request_body(content(
        (TokenRequest = "application/json"),
        (TokenRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        CommonErrors,
        (status = 200, description = "The accesstoken", body = ExchangeResponse),
        (status = 401, description = "The token is not valid (signature, time window, unknown app or key)", body = ErrorBody),
        (status = 409, description = "The token was already exchanged", body = ErrorBody),
        (status = 429, description = "The key or channel is over its rate limit (Retry-After)", body = ErrorBody),
    )
)]
pub(super) async fn exchange(
    State(provider): State<Arc<MecloudProvider>>,
    JsonOrForm(request): JsonOrForm<TokenRequest>,
) -> Result<Json<ExchangeResponse>, ApiError> {
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
        let key_name = exchanged_key(&claim.app_id, &claim.token);
        if !provider
            .store
            .remember_once(key_name.as_str(), remember)
            .await?
        {
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
        .limit(provider.rate.as_ref(), Counter::Issue, channel, Some(key))
        .await?;
    provider
        .limit(
            provider.channel_rate.as_ref(),
            Counter::Issue,
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

/// The bearer token of the one Authorization header; `None` when there is none, several, or another scheme.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Authorization::<Bearer>::decode(&mut std::iter::once(value))
        .ok()
        .map(|header| header.token().trim().to_owned())
}

/// Verifies an accesstoken (the `access-token` query parameter or `Authorization: Bearer`).
#[utoipa::path(
    method(get, post), path = "/mecloud/v2/accesstoken/verify", tag = "mecloud",
    params(AccessQuery),
    security((), ("bearer" = [])),
    responses(
        CommonErrors,
        (status = 200, description = "Valid: its channel, key and subject", body = VerifyResponse),
        (status = 401, description = "Missing, invalid, expired or revoked (WWW-Authenticate: Bearer)", body = ErrorBody),
    )
)]
pub(super) async fn verify(
    State(provider): State<Arc<MecloudProvider>>,
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
    let claims = provider.decode(&accesstoken)?;
    if provider
        .store
        .is_revoked(revocation_subject(&claims).as_str())
        .await?
    {
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

/// What a revocation is stored under: the channel and the accesstoken's id (only tokenmint signs accesstokens, and
/// it gives each a random 128-bit id).
fn revocation_subject(claims: &AccessClaims) -> StateKey {
    StateKey::mecloud_revoked(&claims.app_id, &claims.jti)
}

/// Revokes one genuine accesstoken until its expiry (bounded by the policy); whoever holds it may revoke it.
/// Revocations count against the key's rate limit, on their own counter.
#[utoipa::path(
    post, path = "/mecloud/v2/accesstoken/revoke", tag = "mecloud",
    request_body(content(
        (RevokeRequest = "application/json"),
        (RevokeRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        CommonErrors,
        (status = 200, description = "Revoked until its expiry", body = super::wire::RevokeResponse),
        (status = 401, description = "Not a genuine accesstoken", body = ErrorBody),
        (status = 429, description = "The key is over its rate limit (Retry-After)", body = ErrorBody),
    )
)]
pub(super) async fn revoke(
    State(provider): State<Arc<MecloudProvider>>,
    JsonOrForm(request): JsonOrForm<RevokeRequest>,
) -> Result<Json<Value>, ApiError> {
    let claims = provider.decode(&request.accesstoken)?;
    if let Some((channel, key)) = provider.key_of(&claims) {
        provider
            .limit(provider.rate.as_ref(), Counter::Revoke, channel, Some(key))
            .await?;
    }
    provider
        .store
        .revoke_until(
            revocation_subject(&claims).as_str(),
            claims.exp.saturating_mul(1000),
        )
        .await?;
    Ok(Json(
        serde_json::json!({"revoked": true, "expiresAt": claims.exp}),
    ))
}
