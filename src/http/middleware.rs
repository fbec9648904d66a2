//! Request id, tracing span and deadline.
//!
//! Spans carry the method, the matched route (never the raw URI: query strings may hold tokens), the request id,
//! the status and the latency. Nothing from headers or bodies is recorded.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use super::AppState;
use crate::error::ApiError;

/// The request id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-supplied request id that is propagated; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's id, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

fn new_request_id() -> HeaderValue {
    let id: u128 = rand::random();
    // 32 hex digits are always a valid header value.
    HeaderValue::from_str(&format!("{id:032x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Takes the caller's `x-request-id` when it is sane, otherwise makes one; puts it in the request's extensions
/// and echoes it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&X_REQUEST_ID) {
        Some(value) if acceptable_request_id(value) => value.clone(),
        _ => new_request_id(),
    };
    request
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), id.clone());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    response
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
            .and_then(|id| id.0.to_str().ok())
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
