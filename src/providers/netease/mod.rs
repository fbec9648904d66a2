//! NetEase Yunxin-style getToken, drop-in compatible with `http://HOST:PORT/nimserver`.
//!
//! - `POST /nimserver/user/getToken.action`: issues (or extends) a token for a uid and optional room.
//! - `POST /nimserver/user/verifyToken.action`: for the service that admits users to rooms; consumes a
//!   single-use token on its first successful use; also accepts tokens an app server computed itself.
//! - `POST /nimserver/user/revokeToken.action`: revokes a uid's live token (and room).
//!
//! Every answer is HTTP 200 in NetEase's envelope ([`wire`]).
//!
//! - [`config`]: the `[netease]` settings.
//! - [`wire`]: the envelope and its codes, the form body, the authentication headers.
//! - [`domain`]: uid, room and repeat-use, each with its own error.
//! - [`token`]: the documented token format, the CheckSum.
//! - `handlers`: the routes, over this provider's own state ([`router`]).

pub mod config;
pub mod domain;
mod handlers;
pub mod token;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use secrecy::{ExposeSecret, SecretString};

use crate::outcome::{Action, RouteSpec};
use subtle::ConstantTimeEq;

use self::config::{NeteaseSettings, ReplayGuard};
use self::domain::Uid;
use self::wire::{Code, NeteaseError};
use crate::store::{RateLimit, Store};
use crate::ttl::{SharedClock, TtlPolicy, TtlSettings};

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
    replay_guard: ReplayGuard,
    max_channel_chars: usize,
    policy: TtlPolicy,
    clock: SharedClock,
    store: Store,
    /// The last curTime put in a token: each new token gets a later one, so two tokens minted in the same
    /// millisecond (say, right after a revocation) still differ.
    last_cur_time: AtomicI64,
}

impl NeteaseProvider {
    /// Builds the app index from the settings.
    pub fn from_settings(
        settings: &NeteaseSettings,
        ttl: &TtlSettings,
        clock: SharedClock,
        store: Store,
    ) -> Self {
        let apps = settings
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
            window: settings.curtime_window,
            replay_guard: settings.replay_guard,
            max_channel_chars: settings.max_channel_name_chars,
            policy: ttl.netease,
            clock,
            store,
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

/// Why a token does not verify for an app, uid and room.
pub(crate) const TOKEN_INVALID: &str = "token is invalid for this uid and channelName";

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
        let window_ms = crate::ttl::millis(self.window);
        if decoded.ttl == 0 || decoded.ttl > self.policy.max() {
            return Err(NeteaseError::forbidden(TOKEN_INVALID));
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
        let room = bound.ok_or(NeteaseError::forbidden(TOKEN_INVALID))?;
        if decoded.cur_time > self.clock.now_millis().saturating_add(window_ms) {
            return Err(NeteaseError::forbidden("token curTime is in the future"));
        }
        let expires_at = decoded
            .cur_time
            .saturating_add(i64::from(decoded.ttl) * 1000);
        Ok((room, expires_at))
    }
}

/// This provider's routes and what each does (for the request log line and the metrics).
pub const ROUTES: [RouteSpec; 3] = [
    RouteSpec::new("netease", "/nimserver/user/getToken.action", Action::Issue),
    RouteSpec::new(
        "netease",
        "/nimserver/user/verifyToken.action",
        Action::Verify,
    ),
    RouteSpec::new(
        "netease",
        "/nimserver/user/revokeToken.action",
        Action::Revoke,
    ),
];

/// This provider's part of the OpenAPI document (paths and schemas, generated from the handlers and types).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(handlers::get_token, handlers::verify_token, handlers::revoke_token))]
    struct Api;
    <Api as utoipa::OpenApi>::openapi()
}

/// The routes of this provider ([`ROUTES`]), over its own state.
pub fn router(provider: Arc<NeteaseProvider>) -> Router {
    let [get_token, verify_token, revoke_token] = ROUTES;
    Router::new()
        .route(get_token.path, post(handlers::get_token))
        .route(verify_token.path, post(handlers::verify_token))
        .route(revoke_token.path, post(handlers::revoke_token))
        .with_state(provider)
}

/// The body of a request that timed out, in NetEase's envelope.
pub fn timeout_response() -> Response {
    NeteaseError::new(Code::Unavailable, "server busy: request timed out").into_response()
}

/// The answer while too many requests are in flight, in NetEase's envelope.
pub fn overloaded_response() -> Response {
    NeteaseError::new(
        Code::Unavailable,
        "server busy: too many requests in flight, retry later",
    )
    .into_response()
}
