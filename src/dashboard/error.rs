//! The dashboard API's one error type: `{"error": "…"}` with the status, for every handler;
//! and [`ApiQuery`], the query-string extractor whose refusals are that error too.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The API's errors: `{"error": "…"}` with the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not logged in")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Something the server needs is not there (a locked keychain): the user can fix it.
    #[error("{0}")]
    Unavailable(String),
    #[error("too many failed logins; try again later")]
    RateLimited(Duration),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<super::auth::KeyRefused> for ApiError {
    fn from(refused: super::auth::KeyRefused) -> ApiError {
        match refused {
            super::auth::KeyRefused::WrongKey => ApiError::Unauthorized,
            super::auth::KeyRefused::RateLimited(after) => ApiError::RateLimited(after),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "dashboard API error");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if let ApiError::RateLimited(after) = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        response
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// axum's [`Query`], refusing a query string it cannot read (`since=yesterday`, `status=abc`)
/// with [`ApiError::BadRequest`], whose message names the parameter, instead of axum's
/// plain-text 400. Several can read one query string, each taking its own parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match Query::try_from_uri(&parts.uri) {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                // "Failed to deserialize query string: since: <why>": keep "since: <why>".
                let text = rejection.body_text();
                let named = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(ApiError::BadRequest(named.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RequestFilter;

    fn filter(query: &str) -> Result<RequestFilter, String> {
        let uri: axum::http::Uri = format!("/api/requests?{query}").parse().unwrap();
        let (mut parts, ()) = axum::http::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        futures_util::FutureExt::now_or_never(ApiQuery::<RequestFilter>::from_request_parts(
            &mut parts,
            &(),
        ))
        .unwrap()
        .map(|ApiQuery(f)| f)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_filter_is_refused_naming_the_parameter() {
        let f = filter("status=429&streaming=true&since=2025-01-31T10:00:00Z&limit=2").unwrap();
        assert_eq!(f.status, Some(429));
        assert_eq!(f.streaming, Some(true));
        assert_eq!(
            f.since,
            Some(time::macros::datetime!(2025-01-31 10:00:00 UTC))
        );
        assert_eq!(f.until, None);
        for (query, start) in [
            ("since=yesterday", "since: expected RFC 3339"),
            ("until=2025-13-01T00:00:00Z", "until: "),
            ("status=abc", "status: "),
            ("streaming=maybe", "streaming: "),
        ] {
            let e = filter(query).unwrap_err();
            assert!(e.starts_with(start), "{query}: {e}");
        }
    }
}
