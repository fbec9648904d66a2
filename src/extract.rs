//! Extractors that answer bad input in the service's own error shape, shared by every provider.
//!
//! They take the configured body limit from the request's [`BodyLimit`] extension, which the application's
//! router inserts, so a provider's routes need nothing from the application's state.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body, in bytes, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    /// The default of `server.body_limit_bytes`, used where no limit was inserted (a router used on its own).
    pub const DEFAULT: Self = Self(16 * 1024);

    /// The limit set on `request`.
    pub fn of(request: &Request) -> usize {
        request
            .extensions()
            .get::<Self>()
            .copied()
            .unwrap_or(Self::DEFAULT)
            .0
    }
}

/// The media type of the `Content-Type` header, if it parses.
pub fn media_type(headers: &HeaderMap) -> Option<mime::Mime> {
    headers
        .get(CONTENT_TYPE)?
        .to_str()
        .ok()?
        .parse::<mime::Mime>()
        .ok()
}

/// `application/json`, or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| {
        m.type_() == mime::APPLICATION
            && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
    })
}

/// `application/x-www-form-urlencoded`, with or without parameters.
pub fn is_form(headers: &HeaderMap) -> bool {
    media_type(headers)
        .is_some_and(|m| m.type_() == mime::APPLICATION && m.subtype() == mime::WWW_FORM_URLENCODED)
}

/// Like [`axum::Json`], but a malformed body, a wrong content type or an oversized body becomes an [`ApiError`].
///
/// The body is parsed with plain `serde_json` first; only when that fails is it parsed again through axum's
/// path-tracking deserializer, so error messages name the field (`grants.chat.foo: unknown field …`) without
/// every valid request paying for the tracking.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = BodyLimit::of(&req);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::from_bytes_rejection(&rejection, limit))?;
        match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => Ok(Self(value)),
            Err(_) => match axum::Json::<T>::from_bytes(&bytes) {
                Ok(axum::Json(value)) => Ok(Self(value)),
                Err(rejection) => Err(ApiError::from_json_rejection(rejection, limit)),
            },
        }
    }
}

/// A form (`application/x-www-form-urlencoded`) or otherwise JSON body, bad input answered in the JSON error
/// shape.
#[derive(Debug)]
pub struct JsonOrForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_form(req.headers()) {
            return AppJson::<T>::from_request(req, state)
                .await
                .map(|AppJson(v)| Self(v));
        }
        let limit = BodyLimit::of(&req);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::from_bytes_rejection(&rejection, limit))?;
        if looks_like_json(&body) {
            return Err(ApiError::BadBody {
                code: "invalid_body",
                message: "the body looks like JSON but was sent as a form (Content-Type: \
                          application/x-www-form-urlencoded, what curl -d sends by default); send it with \
                          Content-Type: application/json"
                    .to_owned(),
            });
        }
        serde_urlencoded::from_bytes(&body)
            .map(Self)
            .map_err(|e| ApiError::BadBody {
                code: "invalid_body",
                message: e.to_string(),
            })
    }
}

/// A form body that starts like a JSON object or array: JSON sent with a form's content type.
fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised_with_or_without_parameters() {
        for (value, expected) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("application/x-www-form-urlencoded", false),
            ("text/json", false),
            ("", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().expect("header value"));
            assert_eq!(is_json(&headers), expected, "{value:?}");
        }
    }

    #[test]
    fn form_media_types_are_recognised_with_or_without_parameters() {
        for (value, expected) in [
            ("application/x-www-form-urlencoded", true),
            ("application/x-www-form-urlencoded;charset=utf-8", true),
            ("APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8", true),
            ("application/json", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().expect("header value"));
            assert_eq!(is_form(&headers), expected, "{value:?}");
        }
    }
}
