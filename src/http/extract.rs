//! Extractors that answer bad input in the service's own error shape.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::ApiError;

/// Like [`axum::Json`], but a malformed body, a wrong content type or an oversized body becomes an [`ApiError`].
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::from_json_rejection(rejection, state.body_limit)),
        }
    }
}
