//! The application layer: composes the providers into one router with the shared middleware stack.
//!
//! [`router`] is what the server runs and what tests can call without a socket. Each provider brings its own
//! routes over its own state; this module adds the health probes, the fallbacks and the middleware, outermost
//! first: one middleware (request id, span, limits: header count, requests in flight, deadline; then the log line
//! and the metrics, see [`middleware`]), the body limit. Unknown paths and methods are answered in the JSON error shape, or
//! NetEase's envelope under `/nimserver`.

pub mod health;
pub mod middleware;
pub mod openapi;

use std::ops::Deref;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{RunEnvironment, Settings};
use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::metrics::Metrics;
use crate::outcome::{Action, RouteSpec};
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
    /// Server-side token state (the readiness probe asks it); kept across reloads.
    pub store: Store,
    /// The metrics; kept across reloads.
    pub metrics: Arc<Metrics>,
    /// Requests running now; kept across reloads, so the limit holds while old and new state serve together.
    pub in_flight: Arc<AtomicUsize>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Most request headers accepted.
    pub max_headers: usize,
    /// Most requests running at once.
    pub max_in_flight: usize,
    /// Serve `/metrics` on this router (not when it has a listener of its own, or is disabled).
    pub metrics_route: bool,
    /// Tenants configured, all providers together; in production none means not ready.
    pub tenants: usize,
    /// The profile.
    pub env: RunEnvironment,
    /// CORS for the browser-facing routes; `None` when no origin is allowed.
    pub cors: Option<CorsLayer>,
    clock: SharedClock,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Opens the store, creates the metrics and builds the providers from the settings.
    pub async fn new(settings: &Settings, clock: SharedClock) -> Result<Self, StoreError> {
        let store = Store::open(&settings.store, clock.clone()).await?;
        let metrics = Arc::new(Metrics::new(store.metrics()));
        Ok(Self::assemble(
            settings,
            clock,
            store,
            metrics,
            Arc::new(AtomicUsize::new(0)),
        ))
    }

    /// New state from reloaded `settings`: new providers (tenants, keys, TTLs, limits), the same store, metrics
    /// and in-flight count. Settings that cannot change live are the caller's to report.
    pub fn reloaded(&self, settings: &Settings) -> Self {
        Self::assemble(
            settings,
            self.clock.clone(),
            self.store.clone(),
            self.metrics.clone(),
            self.in_flight.clone(),
        )
    }

    fn assemble(
        settings: &Settings,
        clock: SharedClock,
        store: Store,
        metrics: Arc<Metrics>,
        in_flight: Arc<AtomicUsize>,
    ) -> Self {
        let ttl = &settings.ttl;
        Self(Arc::new(Shared {
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
                clock.clone(),
                store.clone(),
            )),
            store,
            metrics,
            in_flight,
            body_limit: settings.server.body_limit_bytes,
            request_timeout: settings.server.request_timeout,
            max_headers: settings.server.max_headers,
            max_in_flight: settings.server.max_in_flight,
            metrics_route: settings.metrics.enabled && settings.metrics.port.is_none(),
            tenants: settings.tenants().total(),
            env: settings.env,
            cors: cors_layer(&settings.cors.allowed_origins, settings.cors.twilio),
            clock,
        }))
    }
}

/// The service's own routes.
pub const ROUTES: [RouteSpec; 4] = [
    RouteSpec::new("tokenmint", "/healthz", Action::Probe),
    RouteSpec::new("tokenmint", "/readyz", Action::Probe),
    RouteSpec::new("tokenmint", "/metrics", Action::Probe),
    RouteSpec::new("tokenmint", "/openapi.json", Action::Probe),
];

/// The route registered at `path`, with its provider and action.
pub fn route(path: &str) -> Option<&'static RouteSpec> {
    static ALL: [&[RouteSpec]; 4] = [&ROUTES, &twilio::ROUTES, &netease::ROUTES, &mecloud::ROUTES];
    ALL.iter()
        .flat_map(|routes| routes.iter())
        .find(|r| r.path == path)
}

/// The whole application as one router.
pub fn router(state: AppState) -> Router {
    let [healthz, readyz, metrics, openapi] = ROUTES;
    let mut own = Router::new()
        .route(healthz.path, get(health::live))
        .route(readyz.path, get(health::ready))
        .route(openapi.path, get(openapi::document_json));
    if state.metrics_route {
        own = own.route(metrics.path, get(health::metrics));
    }
    let cors = state.cors.clone();
    let app = own
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
            middleware::observe,
        ));
    match cors {
        // Before routing, so a preflight (OPTIONS) is answered rather than routed to a 405.
        Some(cors) => Router::new().fallback_service(tower_layer::Layer::layer(&cors, app)),
        None => app,
    }
}

/// CORS for `origins` (validated at load) on the MeCloud routes, and the Twilio ones when `twilio`: preflights
/// answered, `GET`/`POST` with `Content-Type` and `Authorization` allowed, cached by browsers for 10 minutes.
/// Other routes never get an allowed origin. `None` when there is no origin.
fn cors_layer(origins: &[String], twilio: bool) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let any = origins.iter().any(|o| o == "*");
    let listed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let allow = AllowOrigin::predicate(move |origin, request| {
        let path = request.uri.path();
        let browser_route =
            path.starts_with("/mecloud/") || (twilio && path.starts_with("/twilio/"));
        browser_route && (any || listed.contains(origin))
    });
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(600)),
    )
}

/// The router of the metrics listener (`metrics.port`): `GET /metrics` only.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(ROUTES[2].path, get(health::metrics_only))
        .with_state(metrics)
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
