//! One error type for the JSON routes, one status mapping, one error shape.
//!
//! Every failure on the `/twilio` (and later `/mecloud`) routes is answered as
//! `{"error":{"code":"…","message":"…"}}`. Client mistakes get a specific code and a message that says what to
//! fix; server faults are logged with their cause chain and answered with a generic message, so no internal
//! detail, secret or token reaches a caller. NetEase-compatible routes keep NetEase's own envelope and map
//! errors at their edge instead.

use std::borrow::Cow;

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::outcome::Outcome;
use serde::Serialize;

/// A failed request on a JSON route.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body parsed, but a value breaks a rule (`code` names the rule, e.g. `invalid_ttl`).
    #[error("{message}")]
    Invalid {
        /// Machine-readable reason.
        code: &'static str,
        /// What to fix.
        message: Cow<'static, str>,
    },
    /// 400: the body is not valid JSON, or does not fit the route's schema.
    #[error("{message}")]
    BadBody {
        /// `malformed_json` or `invalid_body`.
        code: &'static str,
        /// The parser's account of the problem (field names, positions; never secrets).
        message: String,
    },
    /// 401: no usable credentials; answered with `WWW-Authenticate: Basic`.
    #[error("{message}")]
    Unauthorized {
        /// `missing_credentials`, `malformed_credentials` or `invalid_credentials`.
        code: &'static str,
        /// What is wrong, without saying which half of a credential failed.
        message: &'static str,
    },
    /// 401: a token or accesstoken was refused; answered with `WWW-Authenticate: Bearer`.
    #[error("{message}")]
    Rejected {
        /// Which rule failed (e.g. `token_mismatch`, `accesstoken_expired`).
        code: &'static str,
        /// What failed, never the expected value.
        message: Cow<'static, str>,
    },
    /// 409: the operation was already done and may not be repeated (e.g. a token exchanged twice).
    #[error("{message}")]
    Conflict {
        /// Which rule.
        code: &'static str,
        /// What happened.
        message: Cow<'static, str>,
    },
    /// 429: a rate limit; answered with `Retry-After`.
    #[error("rate limit exceeded; retry after {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds until the window or lock-out ends.
        retry_after_secs: u64,
    },
    /// 404: no such route.
    #[error("no route for this path")]
    NotFound,
    /// 405: the route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 408: the request ran past the configured deadline.
    #[error("request timed out")]
    Timeout,
    /// 413: the body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 431: more request headers than `server.max_headers`.
    #[error("the request has more than {limit} headers")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// 415: the body is not `application/json`.
    #[error("expected a body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 503: the token store cannot be reached; retry later.
    #[error("token store unavailable; retry later")]
    StoreUnavailable,
    /// 503: `server.max_in_flight` requests are running; retry in a moment.
    #[error("server busy: too many requests in flight; retry in a moment")]
    Overloaded,
    /// 500: a fault on our side; logged with its cause, answered generically.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The JSON error shape: `{"error":{"code":"…","message":"…"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong: a machine-readable code and a message that says how to fix it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// The error code (`invalid_ttl`, `rate_limited`, …).
    code: &'a str,
    /// What went wrong, for people.
    message: &'a str,
}

impl ApiError {
    /// A 400 for a value that breaks a rule.
    pub fn invalid(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } | Self::BadBody { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } | Self::Rejected { .. } => StatusCode::UNAUTHORIZED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::StoreUnavailable | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::BadBody { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Rejected { code, .. }
            | Self::Conflict { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "request_timeout",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooManyHeaders { .. } => "too_many_headers",
            Self::StoreUnavailable => "store_unavailable",
            Self::Overloaded => "overloaded",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Maps a body-reading failure, given the configured limit.
    pub fn from_bytes_rejection(rejection: &BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge { limit }
        } else {
            Self::BadBody {
                code: "invalid_body",
                message: "the request body could not be read".to_owned(),
            }
        }
    }

    /// Maps axum's JSON rejection to the service's shape.
    pub fn from_json_rejection(rejection: JsonRejection, limit: usize) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::BadBody {
                code: "invalid_body",
                message: source_text(&e),
            },
            JsonRejection::JsonSyntaxError(e) => Self::BadBody {
                code: "malformed_json",
                message: source_text(&e),
            },
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) => Self::from_bytes_rejection(&e, limit),
            other => Self::BadBody {
                code: "invalid_body",
                message: other.body_text(),
            },
        }
    }
}

/// The innermost cause's text: serde's own words ("unknown field `x`, expected one of …"), without axum's
/// prefix.
fn source_text(error: &dyn std::error::Error) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(cause) = &self {
            let mut chain = cause.to_string();
            let mut source = cause.source();
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            tracing::error!(error = %chain, "internal error");
        }
        let message = self.to_string();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: &message,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(Outcome(self.code()));
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tokenmint\", charset=\"UTF-8\""),
                );
            }
            Self::Rejected { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tokenmint\", error=\"invalid_token\""),
                );
            }
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::ttl::TtlOutOfBounds> for ApiError {
    fn from(e: crate::ttl::TtlOutOfBounds) -> Self {
        Self::invalid("invalid_ttl", e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                Self::StoreUnavailable
            }
            corrupt @ crate::store::StoreError::Corrupt(_) => Self::Internal(Box::new(corrupt)),
        }
    }
}

/// The OpenAPI description of the errors every JSON route may answer, in the shape above (listed once, used by
/// each route's `responses(...)`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// A value breaks a rule, or the body is not the documented JSON (or form).
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody<'static>),
    /// The request ran past `server.request_timeout_secs`.
    #[response(status = 408)]
    Timeout(#[to_schema] ErrorBody<'static>),
    /// The body is over `server.body_limit_bytes`.
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody<'static>),
    /// The body has an unsupported content type.
    #[response(status = 415)]
    UnsupportedMediaType(#[to_schema] ErrorBody<'static>),
    /// More than `server.max_headers` headers.
    #[response(status = 431)]
    TooManyHeaders(#[to_schema] ErrorBody<'static>),
    /// The token store is unavailable, or too many requests are in flight.
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody<'static>),
}
