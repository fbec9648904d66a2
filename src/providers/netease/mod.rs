//! NetEase Yunxin-style getToken, drop-in compatible with `http://HOST:PORT/nimserver`.
//!
//! - `POST /nimserver/user/getToken.action`: issues (or extends) a token for a uid and optional room.
//! - `POST /nimserver/user/verifyToken.action`: for the service that admits users to rooms; consumes a
//!   single-use token on its first successful use; also accepts tokens an app server computed itself.
//! - `POST /nimserver/user/revokeToken.action`: revokes a uid's live token (and room).
//!
//! Every answer is HTTP 200 with `application/json; charset=utf-8` and NetEase's envelope: `{"code":200,…}` or
//! `{"code":N,"desc":"…"}` (414 parameters and headers, 403 forbidden, 416 rate limit, 417 already used,
//! 431 replayed headers, 500/503 store failures), because NetEase's SDKs treat any other HTTP status as a
//! transport failure and retry.

pub mod params;
pub mod token;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use self::params::{AuthHeaders, ChannelName, Form, Uid};
use crate::config::Settings;
use crate::http::AppState;
use crate::store::{Admission, RateLimit, RecordKey, StoreError};
use crate::ttl::{SharedClock, TtlPolicy};

/// A failed NetEase call: its code and desc. Never carries a secret or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeteaseError {
    /// NetEase's code.
    pub code: u16,
    /// What went wrong.
    pub desc: Cow<'static, str>,
}

impl NeteaseError {
    fn new(code: u16, desc: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            desc: desc.into(),
        }
    }
}

impl From<StoreError> for NeteaseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                Self::new(503, "server busy: token store unavailable, retry later")
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(error = %cause, "store data error");
                Self::new(500, "server error")
            }
        }
    }
}

/// NetEase's envelope: always HTTP 200, JSON, UTF-8.
pub fn envelope(body: &Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

impl IntoResponse for NeteaseError {
    fn into_response(self) -> Response {
        envelope(&json!({"code": self.code, "desc": self.desc}))
    }
}

/// One configured app.
#[derive(Debug)]
struct App {
    app_key: String,
    secrets: Vec<SecretString>,
    enabled: bool,
    rate: Option<RateLimit>,
}

/// The provider built from configuration.
#[derive(Debug)]
pub struct NeteaseProvider {
    apps: HashMap<String, App>,
    window: Duration,
    replay_guard: bool,
    max_channel_chars: usize,
    policy: TtlPolicy,
    clock: SharedClock,
    /// The last curTime put in a token: each new token gets a later one, so two tokens minted in the same
    /// millisecond (say, right after a revocation) still differ.
    last_cur_time: AtomicI64,
}

impl NeteaseProvider {
    /// Builds the app index from validated settings.
    pub fn from_settings(settings: &Settings, clock: SharedClock) -> Self {
        let apps = settings
            .netease
            .apps
            .values()
            .map(|app| {
                (
                    app.app_key.clone(),
                    App {
                        app_key: app.app_key.clone(),
                        secrets: app.secrets.values().cloned().collect(),
                        enabled: app.enabled,
                        rate: (app.rate_limit > 0).then_some(RateLimit {
                            limit: app.rate_limit,
                            window: app.rate_window,
                            lockout: Duration::ZERO,
                        }),
                    },
                )
            })
            .collect();
        Self {
            apps,
            window: settings.netease.curtime_window,
            replay_guard: settings.netease.replay_guard,
            max_channel_chars: settings.netease.max_channel_name_chars,
            policy: settings.ttl.netease,
            clock,
            last_cur_time: AtomicI64::new(0),
        }
    }

    /// Now in ms, or one ms past the last value handed out, whichever is later.
    fn next_cur_time(&self) -> i64 {
        let now = self.clock.now_millis();
        let mut last = self.last_cur_time.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.last_cur_time.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }
}

/// The routes of this provider.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/nimserver/user/getToken.action", post(get_token))
        .route("/nimserver/user/verifyToken.action", post(verify_token))
        .route("/nimserver/user/revokeToken.action", post(revoke_token))
}

/// An authenticated call: the app, the secret whose CheckSum matched, and the form.
struct Call<'a> {
    app: &'a App,
    secret: &'a SecretString,
    form: Form,
}

/// Reads the body, then authenticates: headers, CurTime window, CheckSum (constant time, every secret of the
/// app), app status, replay guard; then parses the form.
async fn authenticate(state: &AppState, request: Request) -> Result<Call<'_>, NeteaseError> {
    let provider = &state.netease;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|_| {
            NeteaseError::param(format!("body is larger than {} bytes", state.body_limit))
        })?;
    let auth = AuthHeaders::parse(&parts.headers)?;
    let app = provider
        .apps
        .get(auth.app_key)
        .ok_or(NeteaseError::param("appkey: unknown AppKey"))?;
    let now = provider.clock.now_secs();
    let window = i64::try_from(provider.window.as_secs()).unwrap_or(i64::MAX);
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
        return Err(NeteaseError::new(403, "app is forbidden"));
    }
    if provider.replay_guard {
        // Remember the header set for as long as its CurTime stays acceptable.
        let until = auth.cur_time.saturating_add(window).saturating_add(1);
        let ttl = Duration::from_secs(u64::try_from((until - now).max(1)).unwrap_or(1));
        let key = format!("ne:replay:{}:{}:{}", app.app_key, auth.cur_time, auth.nonce);
        if !state.store.remember_once(&key, ttl).await? {
            return Err(NeteaseError::new(
                431,
                "request repeated: this AppKey, Nonce and CurTime were already used",
            ));
        }
    }
    let form = Form::parse(&parts.headers, &body)?;
    Ok(Call { app, secret, form })
}

fn record_key(app: &App, uid: Uid, channel: &str) -> RecordKey {
    RecordKey {
        app: app.app_key.clone(),
        subject: uid.get().to_string(),
        room: channel.to_owned(),
    }
}

/// Tokens tokenmint issued are governed by their store record only; this marker keeps them from passing as
/// self-computed tokens once their record is gone (replaced, consumed, revoked, or shortened by an extension),
/// and it marks self-computed tokens revoked. It is keyed by the app and the token's canonical text, so every
/// spelling of a token is blocked and no app can block another app's token.
fn blocked_subject(app: &App, canonical: &str) -> String {
    format!(
        "ne:nofallback:{}:{}",
        app.app_key,
        hex::encode(Sha1::digest(canonical.as_bytes()))
    )
}

/// Counts one call against the app's rate limit (a separate counter per kind of call); 416 past it.
async fn rate_limit(state: &AppState, app: &App, kind: &str) -> Result<(), NeteaseError> {
    let Some(rate) = &app.rate else {
        return Ok(());
    };
    let decision = state
        .store
        .hit(&format!("ne:{kind}:{}", app.app_key), rate)
        .await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(NeteaseError::new(
            416,
            format!("frequency control: rate limit exceeded for this app ({kind})"),
        ))
    }
}

async fn get_token(State(state): State<AppState>, request: Request) -> Response {
    match issue(&state, request).await {
        Ok(token) => envelope(&json!({"code": 200, "token": token})),
        Err(e) => e.into_response(),
    }
}

async fn issue(state: &AppState, request: Request) -> Result<String, NeteaseError> {
    let call = authenticate(state, request).await?;
    let provider = &state.netease;
    let uid = Uid::try_from(call.form.get("uid"))?;
    let single_use = !params::repeat_use(call.form.get("repeatUse"))?;
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
    rate_limit(state, call.app, "rate").await?;

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
    // Mark the candidate as issued by tokenmint in the same breath as it may become a record: both writes are
    // sent together, so on the embedded store they share one group commit (one transaction: both or neither).
    // A marker for a candidate that loses to an existing record is harmless and expires with it.
    let until = now_ms.saturating_add(i64::from(ttl.as_secs()) * 1000);
    let key = record_key(call.app, uid, channel.as_str());
    let marker = blocked_subject(call.app, &candidate);
    let ((), issued) = tokio::try_join!(
        state.store.revoke_subject(&marker, until),
        state
            .store
            .issue_or_extend(&key, &candidate, ttl.as_duration(), single_use),
    )?;
    Ok(issued.record.token)
}

async fn verify_token(State(state): State<AppState>, request: Request) -> Response {
    match admit(&state, request).await {
        Ok(body) => envelope(&body),
        Err(e) => e.into_response(),
    }
}

async fn admit(state: &AppState, request: Request) -> Result<Value, NeteaseError> {
    let call = authenticate(state, request).await?;
    let provider = &state.netease;
    let uid = Uid::try_from(call.form.get("uid"))?;
    let channel = ChannelName::parse(call.form.get("channelName"), provider.max_channel_chars)?;
    let raw = call.form.get("token").unwrap_or_default();
    if raw.is_empty() {
        return Err(NeteaseError::param("token is empty"));
    }
    // Every spelling of a token is the same token: records and markers are keyed by the canonical text.
    let presented = token::decode(raw).ok_or(NeteaseError::new(403, TOKEN_INVALID))?;
    let token = presented.canonical();

    // A token bound to this room, then one good for any room.
    let rooms = channel.candidate_rooms();
    for room in &rooms {
        match state
            .store
            .use_token(&record_key(call.app, uid, room), &token)
            .await?
        {
            Admission::Admitted(record) => {
                return Ok(json!({
                    "code": 200,
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
                    417,
                    "token was already used (repeatUse=false)",
                ))
            }
            Admission::Revoked => return Err(NeteaseError::new(403, "token was revoked")),
            Admission::Unknown => {}
        }
    }
    self_computed(state, &call, uid, &channel, &presented, &token).await
}

/// Why a token does not verify for an app, uid and room.
const TOKEN_INVALID: &str = "token is invalid for this uid and channelName";

impl NeteaseProvider {
    /// Checks a decoded token's signature (any secret of the app; bound to one of `rooms`, "" meaning any room)
    /// and that its lifetime fits the policy: returns the room it is bound to and its expiry, ms. Says nothing of
    /// whether it has expired yet.
    fn check_signature<'r>(
        &self,
        app: &App,
        uid: Uid,
        rooms: &[&'r str],
        decoded: &token::SelfToken,
    ) -> Result<(&'r str, i64), NeteaseError> {
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        if decoded.ttl == 0 || decoded.ttl > self.policy.max() {
            return Err(NeteaseError::new(403, TOKEN_INVALID));
        }
        let bound = app.secrets.iter().find_map(|secret| {
            rooms.iter().copied().find(|room| {
                let expected = token::signature(
                    &app.app_key,
                    uid.get(),
                    decoded.cur_time,
                    decoded.ttl,
                    room,
                    secret.expose_secret(),
                );
                bool::from(expected.as_bytes().ct_eq(decoded.signature.as_bytes()))
            })
        });
        let room = bound.ok_or(NeteaseError::new(403, TOKEN_INVALID))?;
        if decoded.cur_time > self.clock.now_millis().saturating_add(window_ms) {
            return Err(NeteaseError::new(403, "token curTime is in the future"));
        }
        let expires_at = decoded
            .cur_time
            .saturating_add(i64::from(decoded.ttl) * 1000);
        Ok((room, expires_at))
    }
}

/// Checks a token the app server computed itself: signature, uid, room and lifetime, then that it was neither
/// issued here (governed by its record) nor revoked.
async fn self_computed(
    state: &AppState,
    call: &Call<'_>,
    uid: Uid,
    channel: &ChannelName,
    decoded: &token::SelfToken,
    canonical: &str,
) -> Result<Value, NeteaseError> {
    let provider = &state.netease;
    let rooms = channel.candidate_rooms();
    let (room, expires_at) = provider.check_signature(call.app, uid, &rooms, decoded)?;
    if provider.clock.now_millis() >= expires_at {
        return Err(NeteaseError::new(403, "token is expired"));
    }
    if state
        .store
        .is_revoked(&blocked_subject(call.app, canonical))
        .await?
    {
        return Err(NeteaseError::new(
            403,
            "token is no longer valid (revoked, used or replaced)",
        ));
    }
    Ok(json!({
        "code": 200,
        "uid": uid.get(),
        "channelName": channel.as_str(),
        "boundChannel": !room.is_empty(),
        "repeatUse": true,
        "expiresAt": expires_at,
        "source": "self-computed",
    }))
}

async fn revoke_token(State(state): State<AppState>, request: Request) -> Response {
    match revoke(&state, request).await {
        Ok(revoked) => envelope(&json!({"code": 200, "revoked": revoked})),
        Err(e) => e.into_response(),
    }
}

/// Revokes the live token of uid (and channelName); with `token`, also a token the app server computed, until
/// its expiry. The token must verify for the caller's app, this uid and channelName (so an app revokes only its
/// own tokens, and nothing is stored for a token that could never pass); it is checked before anything is
/// written. Revocations count against the app's rate limit like getToken calls, on their own counter.
async fn revoke(state: &AppState, request: Request) -> Result<bool, NeteaseError> {
    let call = authenticate(state, request).await?;
    let provider = &state.netease;
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
            Some((blocked_subject(call.app, &decoded.canonical()), expires_at))
        }
    };
    rate_limit(state, call.app, "revoke-rate").await?;
    let mut revoked = state
        .store
        .revoke(&record_key(call.app, uid, channel.as_str()))
        .await?
        .is_some();
    if let Some((subject, until)) = blocked {
        // The lifetime is bounded by the policy (check_signature), so this entry is too.
        if until > provider.clock.now_millis() {
            state.store.revoke_subject(&subject, until).await?;
            revoked = true;
        }
    }
    Ok(revoked)
}

/// The body of a request that timed out, in NetEase's envelope.
pub fn timeout_response() -> Response {
    NeteaseError::new(503, "server busy: request timed out").into_response()
}
