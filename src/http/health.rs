//! Liveness, readiness and metrics probes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::config::RunEnvironment;
use crate::metrics::Metrics;
use crate::store::TokenStore;

/// `GET /healthz`: the process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"}))))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the service can serve: its token store answers and, in production, at least one tenant is
/// configured (an instance with none would refuse every call). 503 otherwise, so a gateway routes around it.
#[utoipa::path(
    get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready", "checks": {"store": "ok", "tenants": "ok"}})),
        (status = 503, description = "Not ready: the store is unreachable, or production has no tenant", body = Object),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = match state.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            false
        }
    };
    let tenants = state.tenants > 0 || state.env == RunEnvironment::Development;
    let checks = json!({
        "store": if store { "ok" } else { "unavailable" },
        "tenants": if tenants { "ok" } else { "none configured" },
    });
    if store && tenants {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "checks": checks})),
        )
    }
}

/// `GET /metrics` on the main listener.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format (absent when metrics.port gives it its own listener)", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    exposition(&state.metrics)
}

/// `GET /metrics` on the metrics listener.
pub async fn metrics_only(State(metrics): State<Arc<Metrics>>) -> Response {
    exposition(&metrics)
}

fn exposition(metrics: &Metrics) -> Response {
    let mut response = metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
