//! Request id (tower-http's, with a check of what callers send), tracing span, header limit and deadline.
//!
//! Spans carry the method, the matched route (never the raw URI: query strings may hold tokens), the request id,
//! the status and the latency. Nothing from headers or bodies is recorded.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use super::AppState;
use crate::error::ApiError;

/// The request id header.
const X_REQUEST_ID: &str = "x-request-id";

/// Longest caller-supplied request id that is propagated; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// Drops a caller's `x-request-id` that is too long or has odd characters (it goes into every log line), so
/// tower-http's [`SetRequestIdLayer`](tower_http::request_id::SetRequestIdLayer) makes a new one.
pub async fn drop_unacceptable_request_id(mut request: Request) -> Request {
    let acceptable = request
        .headers()
        .get(X_REQUEST_ID)
        .is_none_or(acceptable_request_id);
    if !acceptable {
        request.headers_mut().remove(X_REQUEST_ID);
    }
    request
}

/// Makes request ids: 32 random hex digits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id: u128 = rand::random();
        HeaderValue::from_str(&format!("{id:032x}"))
            .ok()
            .map(RequestId::new)
    }
}

/// Answers 408 in the JSON shape when a request runs past the configured deadline.
pub async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let netease = super::is_netease(request.uri());
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) if netease => crate::providers::netease::timeout_response(),
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Refuses a request with more headers than `server.max_headers`, in the route's own error shape (hyper's
/// parser takes more, see `config::MAX_HEADERS`, so this answer is ours to give).
pub async fn header_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.max_headers;
    if request.headers().len() <= limit {
        return next.run(request).await;
    }
    if super::is_netease(request.uri()) {
        crate::providers::netease::wire::NeteaseError::param(format!(
            "bad http header: more than {limit} headers"
        ))
        .into_response()
    } else {
        ApiError::TooManyHeaders { limit }.into_response()
    }
}

/// Makes the per-request span.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let path = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("<unmatched>", MatchedPath::as_str);
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            "request",
            method = %request.method(),
            path,
            request_id,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        )
    }
}

/// Records the status and latency and logs one line per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestDone;

impl<B> OnResponse<B> for RequestDone {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, span: &Span) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        span.record("status", response.status().as_u16());
        span.record("latency_ms", latency_ms);
        tracing::info!("request completed");
    }
}

/// The tracing layer with tokenmint's span and completion line.
pub fn trace_layer(
) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), RequestDone, (), (), ()>
{
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(RequestDone)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}
