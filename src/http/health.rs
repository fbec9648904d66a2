//! Liveness and readiness probes.

use axum::Json;
use serde_json::{json, Value};

/// `GET /healthz`: the process is up and answering.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the service can mint tokens (configuration loaded, providers built).
pub async fn ready() -> Json<Value> {
    Json(json!({"status": "ready"}))
}
