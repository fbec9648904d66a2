//! The NetEase routes: authentication (headers, CurTime window, CheckSum, app status, replay guard), then
//! getToken, verifyToken and revokeToken.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::config::ReplayGuard;
use super::domain::{self, ChannelName, Uid};
use super::wire::{schema, success, AuthHeaders, Code, Form, NeteaseError};
use super::{token, App, NeteaseProvider, TOKEN_INVALID};
use crate::extract::BodyLimit;
use crate::store::keys::{Counter, StateKey};
use crate::store::{Admission, Guard, RecordKey, TokenStore};

/// An authenticated call: the app, the secret whose CheckSum matched, the form, and its replay guard while it
/// is still to be recorded.
struct Call<'a> {
    app: &'a App,
    secret: &'a SecretString,
    form: Form,
    guard: Option<Guard>,
}

impl Call<'_> {
    /// Records the replay guard now, alone: 431 for a refused repeat.
    async fn record_guard(&mut self, provider: &NeteaseProvider) -> Result<(), NeteaseError> {
        let Some(guard) = self.guard.take() else {
            return Ok(());
        };
        if guard.record(&provider.store).await? {
            Ok(())
        } else {
            Err(replayed(provider.replay_guard))
        }
    }

    /// The answer to a call that failed before its guard was recorded: the guard is recorded anyway (captured
    /// headers must not carry another body later), and a refused repeat is answered 431, as it would have been.
    async fn fail(&mut self, provider: &NeteaseProvider, error: NeteaseError) -> NeteaseError {
        match self.record_guard(provider).await {
            Ok(()) => error,
            Err(refused) => refused,
        }
    }
}

/// 431: the request repeats headers already seen.
fn replayed(mode: ReplayGuard) -> NeteaseError {
    NeteaseError::new(
        Code::Replayed,
        match mode {
            ReplayGuard::Idempotent => {
                "request repeated: this AppKey, Nonce and CurTime were already used with another body"
            }
            _ => "request repeated: this AppKey, Nonce and CurTime were already used",
        },
    )
}

/// Reads the body, then authenticates: headers, CurTime window, CheckSum (constant time, every secret of the
/// app), app status, replay guard; then parses the form. With `defer_guard` the guard is left in the call for
/// the caller to record with its own write (getToken: one durable commit for both); otherwise it is recorded
/// here.
async fn authenticate(
    provider: &NeteaseProvider,
    request: Request,
    defer_guard: bool,
) -> Result<Call<'_>, NeteaseError> {
    let limit = BodyLimit::of(&request);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| NeteaseError::param(format!("body is larger than {limit} bytes")))?;
    let auth = AuthHeaders::parse(&parts.headers)?;
    let app = provider
        .apps
        .get(auth.app_key)
        .ok_or(NeteaseError::param("appkey: unknown AppKey"))?;
    let now = provider.clock.now_secs();
    let window = crate::ttl::secs(provider.window);
    if (now - auth.cur_time).abs() > window {
        return Err(NeteaseError::param("CurTime is expired"));
    }
    let secret = app
        .secrets
        .iter()
        .find(|secret| {
            let expected = token::checksum(secret.expose_secret(), auth.nonce, auth.cur_time_text);
            bool::from(expected.as_bytes().ct_eq(auth.checksum.as_bytes()))
        })
        .ok_or(NeteaseError::param("checksum: CheckSum does not match"))?;
    if !app.enabled {
        return Err(NeteaseError::forbidden("app is forbidden"));
    }
    // Remember the header set for as long as its CurTime stays acceptable.
    let until = auth.cur_time.saturating_add(window).saturating_add(1);
    let ttl = Duration::from_secs(u64::try_from((until - now).max(1)).unwrap_or(1));
    let key = StateKey::netease_replay(&app.app_key, auth.cur_time, auth.nonce);
    let guard = match provider.replay_guard {
        ReplayGuard::Off => None,
        ReplayGuard::Strict => Some(Guard {
            key: key.as_str().to_owned(),
            digest: None,
            ttl,
        }),
        // The body's digest is remembered with the headers: the same body again is a retry.
        ReplayGuard::Idempotent => Some(Guard {
            key: key.as_str().to_owned(),
            digest: Some(hex::encode(Sha256::digest(&body))),
            ttl,
        }),
    };
    let mut call = Call {
        app,
        secret,
        form: Form::default(),
        guard,
    };
    if !defer_guard {
        call.record_guard(provider).await?;
    }
    match Form::parse(&parts.headers, &body) {
        Ok(form) => call.form = form,
        Err(e) => return Err(call.fail(provider, e).await),
    }
    Ok(call)
}

fn record_key(app: &App, uid: Uid, channel: &str) -> RecordKey {
    RecordKey {
        app: app.app_key.clone(),
        subject: uid.get().to_string(),
        room: channel.to_owned(),
    }
}

/// What a revoked self-computed token is stored under: the app and the token's canonical text, so every spelling
/// of the token is revoked and no app can revoke another app's token. (Tokens tokenmint issued carry their own
/// marker, written with their record; see `issue`.)
fn revoked_id(app: &App, canonical: &str) -> StateKey {
    StateKey::netease_revoked(
        &app.app_key,
        &hex::encode(Sha1::digest(canonical.as_bytes())),
    )
}

/// Counts one call against the app's rate limit (a separate counter per kind of call); 416 past it.
async fn rate_limit(
    provider: &NeteaseProvider,
    app: &App,
    counter: Counter,
) -> Result<(), NeteaseError> {
    let Some(rate) = &app.rate else {
        return Ok(());
    };
    let decision = provider
        .store
        .hit(
            StateKey::netease_counter(&app.app_key, counter).as_str(),
            rate,
        )
        .await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(NeteaseError::new(
            Code::RateLimited,
            match counter {
                Counter::Issue => "frequency control: getToken rate limit exceeded for this app",
                Counter::Revoke => {
                    "frequency control: revokeToken rate limit exceeded for this app"
                }
            },
        ))
    }
}

#[utoipa::path(
    post, path = "/nimserver/user/getToken.action", tag = "netease",
    request_body(content = schema::GetTokenForm, content_type = "application/x-www-form-urlencoded"),
    params(schema::AuthHeaders),
    responses(
        (status = 200, description = "The token, or NetEase's failure envelope; failures are HTTP 200 too, with NetEase's code", body = schema::GetTokenAnswer),
    )
)]
pub(super) async fn get_token(
    State(provider): State<Arc<NeteaseProvider>>,
    request: Request,
) -> Response {
    match issue(&provider, request).await {
        Ok(token) => success(&json!({"code": Code::Ok.as_u16(), "token": token})),
        Err(e) => e.into_response(),
    }
}

async fn issue(provider: &NeteaseProvider, request: Request) -> Result<String, NeteaseError> {
    let mut call = authenticate(provider, request, true).await?;
    if call.app.rate.is_some() {
        // A rate-limited app counts only requests its guard admitted (a replay must not use up its allowance),
        // so its guard is recorded first, on its own.
        call.record_guard(provider).await?;
    }
    let Prepared {
        uid,
        single_use,
        ttl,
        channel,
    } = match prepare(provider, &call).await {
        Ok(prepared) => prepared,
        Err(e) => return Err(call.fail(provider, e).await),
    };

    let now_ms = provider.next_cur_time();
    let signature = token::signature(
        &call.app.app_key,
        uid.get(),
        now_ms,
        ttl.as_secs(),
        channel.as_str(),
        call.secret.expose_secret(),
    );
    let candidate = token::encode(&signature, now_ms, ttl.as_secs());
    // The candidate is marked as issued by tokenmint in the same atomic step that makes it the record, until the
    // expiry it claims: from then on it is governed by its record only and can never pass as self-computed.
    let until = now_ms.saturating_add(i64::from(ttl.as_secs()) * 1000);
    let key = record_key(call.app, uid, channel.as_str());
    let issued = match call.guard.take() {
        // The replay guard and the record in one durable write (one commit on the embedded store).
        Some(guard) => provider
            .store
            .guarded_issue(
                &guard,
                &key,
                &candidate,
                ttl.as_duration(),
                single_use,
                Some(until),
            )
            .await?
            .ok_or_else(|| replayed(provider.replay_guard))?,
        None => {
            provider
                .store
                .issue_or_extend(&key, &candidate, ttl.as_duration(), single_use, Some(until))
                .await?
        }
    };
    tracing::debug!(created = issued.created, "netease token issued");
    Ok(issued.record.token)
}

/// A getToken call's parameters, checked, and its rate limit counted.
struct Prepared {
    uid: Uid,
    single_use: bool,
    ttl: crate::ttl::Ttl,
    channel: ChannelName,
}

async fn prepare(provider: &NeteaseProvider, call: &Call<'_>) -> Result<Prepared, NeteaseError> {
    let uid = Uid::try_from(call.form.get("uid"))?;
    let single_use = !domain::repeat_use(call.form.get("repeatUse"))?;
    let requested = match call.form.get("expireAt") {
        None | Some("") => None,
        Some(text) => Some(crate::decimal::parse_i64(text).ok_or_else(|| {
            NeteaseError::param(format!(
                "expireAt must be between {} and {} seconds",
                provider.policy.min(),
                provider.policy.max()
            ))
        })?),
    };
    let ttl = provider
        .policy
        .resolve(requested)
        .map_err(|e| NeteaseError::param(e.to_string().replacen("ttl", "expireAt", 1)))?;
    let channel = ChannelName::parse(call.form.get("channelName"), provider.max_channel_chars)?;
    rate_limit(provider, call.app, Counter::Issue).await?;
    Ok(Prepared {
        uid,
        single_use,
        ttl,
        channel,
    })
}

#[utoipa::path(
    post, path = "/nimserver/user/verifyToken.action", tag = "netease",
    request_body(content = schema::VerifyTokenForm, content_type = "application/x-www-form-urlencoded"),
    params(schema::AuthHeaders),
    responses(
        (status = 200, description = "Admitted, or NetEase's failure envelope; failures are HTTP 200 too, with NetEase's code", body = schema::VerifyTokenAnswer),
    )
)]
pub(super) async fn verify_token(
    State(provider): State<Arc<NeteaseProvider>>,
    request: Request,
) -> Response {
    match admit(&provider, request).await {
        Ok(body) => success(&body),
        Err(e) => e.into_response(),
    }
}

async fn admit(provider: &NeteaseProvider, request: Request) -> Result<Value, NeteaseError> {
    let call = authenticate(provider, request, false).await?;
    let uid = Uid::try_from(call.form.get("uid"))?;
    let channel = ChannelName::parse(call.form.get("channelName"), provider.max_channel_chars)?;
    let raw = call.form.get("token").unwrap_or_default();
    if raw.is_empty() {
        return Err(NeteaseError::param("token is empty"));
    }
    // Every spelling of a token is the same token: records and markers are keyed by the canonical text.
    let presented = token::decode(raw).ok_or(NeteaseError::forbidden(TOKEN_INVALID))?;
    let token = presented.canonical();

    // A token bound to this room, then one good for any room.
    let rooms = channel.candidate_rooms();
    for room in &rooms {
        match provider
            .store
            .use_token(&record_key(call.app, uid, room), &token)
            .await?
        {
            Admission::Admitted(record) => {
                return Ok(json!({
                    "code": Code::Ok.as_u16(),
                    "uid": uid.get(),
                    "channelName": channel.as_str(),
                    "boundChannel": !room.is_empty(),
                    "repeatUse": !record.single_use,
                    "expiresAt": record.expires_at_ms,
                    "source": "issued",
                }))
            }
            Admission::AlreadyUsed => {
                return Err(NeteaseError::new(
                    Code::AlreadyUsed,
                    "token was already used (repeatUse=false)",
                ))
            }
            Admission::Revoked => return Err(NeteaseError::forbidden("token was revoked")),
            Admission::Unknown => {}
        }
    }
    self_computed(provider, &call, uid, &channel, &presented, &token).await
}

/// Checks a token the app server computed itself: signature, uid, room and lifetime, then that it was neither
/// issued here (governed by its record) nor revoked.
async fn self_computed(
    provider: &NeteaseProvider,
    call: &Call<'_>,
    uid: Uid,
    channel: &ChannelName,
    decoded: &token::SelfToken,
    canonical: &str,
) -> Result<Value, NeteaseError> {
    let rooms = channel.candidate_rooms();
    let (room, expires_at) = provider.check_signature(call.app, uid, &rooms, decoded)?;
    if provider.clock.now_millis() >= expires_at {
        return Err(NeteaseError::forbidden("token is expired"));
    }
    // Issued here (and so governed by its record, which did not admit it), or revoked by value.
    let (key, revoked_key) = (
        record_key(call.app, uid, room),
        revoked_id(call.app, canonical),
    );
    let (issued, revoked) = tokio::try_join!(
        provider.store.was_issued(&key, canonical),
        provider.store.is_revoked(revoked_key.as_str()),
    )?;
    if issued || revoked {
        return Err(NeteaseError::new(
            Code::Forbidden,
            "token is no longer valid (revoked, used or replaced)",
        ));
    }
    Ok(json!({
        "code": Code::Ok.as_u16(),
        "uid": uid.get(),
        "channelName": channel.as_str(),
        "boundChannel": !room.is_empty(),
        "repeatUse": true,
        "expiresAt": expires_at,
        "source": "self-computed",
    }))
}

#[utoipa::path(
    post, path = "/nimserver/user/revokeToken.action", tag = "netease",
    request_body(content = schema::RevokeTokenForm, content_type = "application/x-www-form-urlencoded"),
    params(schema::AuthHeaders),
    responses(
        (status = 200, description = "Revoked, or NetEase's failure envelope; failures are HTTP 200 too, with NetEase's code", body = schema::RevokeTokenAnswer),
    )
)]
pub(super) async fn revoke_token(
    State(provider): State<Arc<NeteaseProvider>>,
    request: Request,
) -> Response {
    match revoke(&provider, request).await {
        Ok(revoked) => success(&json!({"code": Code::Ok.as_u16(), "revoked": revoked})),
        Err(e) => e.into_response(),
    }
}

/// Revokes the live token of uid (and channelName); with `token`, also a token the app server computed, until
/// its expiry. The token must verify for the caller's app, this uid and channelName (so an app revokes only its
/// own tokens, and nothing is stored for a token that could never pass); it is checked before anything is
/// written. Revocations count against the app's rate limit like getToken calls, on their own counter.
async fn revoke(provider: &NeteaseProvider, request: Request) -> Result<bool, NeteaseError> {
    let call = authenticate(provider, request, false).await?;
    let uid = Uid::try_from(call.form.get("uid"))?;
    let channel = ChannelName::parse(call.form.get("channelName"), provider.max_channel_chars)?;
    let blocked = match call.form.get("token").filter(|t| !t.is_empty()) {
        None => None,
        Some(raw) => {
            const NOT_OURS: &str =
                "token is not a valid token of this app for this uid and channelName";
            let decoded = token::decode(raw).ok_or(NeteaseError::param(NOT_OURS))?;
            let (_, expires_at) = provider
                .check_signature(call.app, uid, &channel.candidate_rooms(), &decoded)
                .map_err(|_| NeteaseError::param(NOT_OURS))?;
            Some((revoked_id(call.app, &decoded.canonical()), expires_at))
        }
    };
    rate_limit(provider, call.app, Counter::Revoke).await?;
    let mut revoked = provider
        .store
        .revoke(&record_key(call.app, uid, channel.as_str()))
        .await?
        .is_some();
    if let Some((subject, until)) = blocked {
        // The lifetime is bounded by the policy (check_signature), so this entry is too.
        if until > provider.clock.now_millis() {
            provider.store.revoke_until(subject.as_str(), until).await?;
            revoked = true;
        }
    }
    Ok(revoked)
}
