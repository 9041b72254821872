//! A form visit's screenshots (`/visits/{id}/screenshots/{n}`, PNG), under the same access
//! rules as a call's recording: a visit another group's viewer may not see answers 404, and so
//! does a file outside `[storage] recordings_dir` or one purged by retention.

use super::{St, Viewer, WebError};
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The `n`th screenshot of a visit (0 first, in the order taken).
pub async fn screenshot(
    st: St,
    viewer: Viewer,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let v = super::visit::visible_visit(&st, &viewer, &id).await?;
    let n: usize = n.parse().map_err(|_| WebError::NotFound)?;
    let shots = st.cx.store.screenshots(&v.id).await?;
    let path = shots
        .get(n)
        .and_then(|s| s.path.clone())
        .ok_or(WebError::NotFound)?;
    let dir = std::fs::canonicalize(&st.cx.config.storage.recordings_dir)
        .map_err(|_| WebError::NotFound)?;
    let file = std::fs::canonicalize(&path).map_err(|_| WebError::NotFound)?;
    if !file.starts_with(&dir) {
        tracing::warn!(visit = %v.id, "screenshot outside recordings_dir refused");
        return Err(WebError::NotFound);
    }
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|_| WebError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "image/png")], bytes).into_response())
}
