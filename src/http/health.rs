//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::store::TokenStore;

/// `GET /healthz`: the process is up and answering.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the service can serve, its token store included; 503 while the store is unreachable, so a
/// gateway routes around this instance until it recovers.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": {"store": "ok"}})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "checks": {"store": "unavailable"}})),
            )
        }
    }
}
