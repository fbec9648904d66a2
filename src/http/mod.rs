//! The HTTP surface: shared state, the router and its middleware stack.
//!
//! [`router`] is what the server runs and what tests can call without a socket. Middleware, outermost first:
//! request id (generated or propagated, echoed), a tracing span per request, the request deadline, the body
//! limit. Unknown paths and methods are answered in the JSON error shape.

pub mod extract;
pub mod health;
pub mod middleware;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::Settings;
use crate::error::ApiError;
use crate::providers::mecloud::MecloudProvider;
use crate::providers::netease::{NeteaseError, NeteaseProvider};
use crate::providers::twilio::TwilioProvider;
use crate::store::{Store, StoreError};
use crate::ttl::SharedClock;

/// State shared by every handler; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// Where every provider reads time from.
    pub clock: SharedClock,
    /// Twilio-style Access Tokens.
    pub twilio: TwilioProvider,
    /// NetEase Yunxin getToken.
    pub netease: NeteaseProvider,
    /// MeCloud tokens and accesstokens.
    pub mecloud: MecloudProvider,
    /// Server-side token state.
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
    /// Opens the store and builds the providers from validated settings.
    pub async fn new(settings: &Settings, clock: SharedClock) -> Result<Self, StoreError> {
        let store = Store::open(&settings.store, clock.clone()).await?;
        Ok(Self(Arc::new(Shared {
            twilio: TwilioProvider::from_settings(settings, clock.clone()),
            netease: NeteaseProvider::from_settings(settings, clock.clone()),
            mecloud: MecloudProvider::from_settings(settings, clock.clone()),
            store,
            clock,
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
        .merge(crate::providers::twilio::routes())
        .merge(crate::providers::netease::routes())
        .merge(crate::providers::mecloud::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::header_limit,
        ))
        .layer(middleware::trace_layer())
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
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
