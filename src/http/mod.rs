//! The application layer: composes the providers into one router with the shared middleware stack.
//!
//! [`router`] is what the server runs and what tests can call without a socket. Each provider brings its own
//! routes over its own state; this module adds the health probes, the fallbacks and the middleware, outermost
//! first: request id (generated or propagated, echoed), a tracing span per request, the limits (header count,
//! deadline), the body limit. Unknown paths and methods are answered in the JSON error shape, or
//! NetEase's envelope under `/nimserver`.

pub mod health;
pub mod middleware;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::config::Settings;
use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::providers::mecloud::{self, MecloudProvider};
use crate::providers::netease::wire::NeteaseError;
use crate::providers::netease::{self, NeteaseProvider};
use crate::providers::twilio::{self, TwilioProvider};
use crate::store::{Store, StoreError};
use crate::ttl::SharedClock;

/// State shared by the application's own handlers and middleware; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// Twilio-style Access Tokens.
    pub twilio: Arc<TwilioProvider>,
    /// NetEase Yunxin getToken.
    pub netease: Arc<NeteaseProvider>,
    /// MeCloud tokens and accesstokens.
    pub mecloud: Arc<MecloudProvider>,
    /// Server-side token state (the readiness probe asks it).
    pub store: Store,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Most request headers accepted.
    pub max_headers: usize,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Opens the store and builds the providers from the settings.
    pub async fn new(settings: &Settings, clock: SharedClock) -> Result<Self, StoreError> {
        let store = Store::open(&settings.store, clock.clone()).await?;
        let ttl = &settings.ttl;
        Ok(Self(Arc::new(Shared {
            twilio: Arc::new(TwilioProvider::from_settings(
                &settings.twilio,
                ttl,
                clock.clone(),
                store.clone(),
            )),
            netease: Arc::new(NeteaseProvider::from_settings(
                &settings.netease,
                ttl,
                clock.clone(),
                store.clone(),
            )),
            mecloud: Arc::new(MecloudProvider::from_settings(
                &settings.mecloud,
                ttl,
                clock,
                store.clone(),
            )),
            store,
            body_limit: settings.server.body_limit_bytes,
            request_timeout: settings.server.request_timeout,
            max_headers: settings.server.max_headers,
        })))
    }
}

/// The whole application as one router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .with_state(state.clone())
        .merge(twilio::router(state.twilio.clone()))
        .merge(netease::router(state.netease.clone()))
        .merge(mecloud::router(state.mecloud.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(Extension(BodyLimit(state.body_limit)))
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::limits,
        ))
        .layer(middleware::trace_layer())
        .layer(axum::middleware::from_fn(middleware::request_id))
}

/// NetEase clients treat any HTTP status but 200 as a transport failure, so `/nimserver` paths keep NetEase's
/// envelope even for unknown paths and methods.
pub(crate) fn is_netease(uri: &Uri) -> bool {
    uri.path().starts_with("/nimserver/")
}

async fn not_found(uri: Uri) -> Response {
    if is_netease(&uri) {
        NeteaseError::param("no such API").into_response()
    } else {
        ApiError::NotFound.into_response()
    }
}

async fn method_not_allowed(uri: Uri) -> Response {
    if is_netease(&uri) {
        NeteaseError::param("bad http method: use POST").into_response()
    } else {
        ApiError::MethodNotAllowed.into_response()
    }
}
