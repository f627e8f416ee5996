//! The one error type of elevate's core and HTTP layer. 4xx variants carry a message that is safe
//! to show; `Internal` carries the cause for the log only and is shown as an opaque 500 with the
//! request id (see `web::error`).

use crate::crypto::SealError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// 403 with code `step_up_required`: allowed only with a fresh passkey assertion.
    #[error("{0}")]
    StepUpRequired(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A system elevate depends on (a database target) failed; safe to show.
    #[error("{0}")]
    Unavailable(String),
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<SealError> for AppError {
    fn from(e: SealError) -> Self {
        AppError::Internal(e.into())
    }
}
