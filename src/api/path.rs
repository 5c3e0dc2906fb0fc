//! The path-segment extractor of the routes that take an id. Axum's own answers a segment
//! that is not UTF-8 with a plain-text 400 of its own; here such a segment simply names
//! nothing, so the route answers its usual JSON 404.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// One path segment as text; a segment that is not UTF-8 (which no id is) comes out empty.
pub struct Path<T>(pub T);

impl<S: Send + Sync> FromRequestParts<S> for Path<String> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let text = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(text)| text)
            .unwrap_or_default();
        Ok(Path(text))
    }
}
