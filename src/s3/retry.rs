//! Backoff with jitter and classification of S3 errors.
//!
//! The SDK already retries each request (standard mode, see
//! [`S3Settings`](super::S3Settings)). On top of that, the engine retries a whole object
//! (every part of a multipart upload, with the upload aborted in between) when the SDK gave up
//! on something transient, and the index update retries its read-merge-write cycle on 412/409.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;

/// Full-jitter exponential backoff: a random delay in `[0, min(cap, base·2^attempt)]`, at
/// least `base / 2` so retries never spin.
pub(crate) fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(cap).max(base);
    let ms = ceiling.as_millis().max(1) as u64;
    let floor = (base.as_millis() as u64 / 2).min(ms);
    Duration::from_millis(rand::rng().random_range(floor..=ms))
}

/// What an error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// A conditional write lost (412 `PreconditionFailed`, 409 `ConditionalRequestConflict`).
    Conflict,
    /// The server does not implement the request (501 `NotImplemented`).
    NotImplemented,
    /// 404 / `NoSuchKey` / `NoSuchBucket`.
    NotFound,
    /// 401/403: credentials missing, wrong or not allowed.
    Denied,
    /// 5xx, throttling, timeouts and connection errors: worth trying again.
    Transient,
    /// Anything else (bad request, ...).
    Permanent,
}

/// Classifies an SDK error.
pub(crate) fn classify<E, R>(err: &SdkError<E, R>) -> ErrorKind
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    let status = match err {
        SdkError::ServiceError(s) => Some(s.raw().status_code()),
        SdkError::ResponseError(r) => Some(r.raw().status_code()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            return ErrorKind::Transient;
        }
        _ => None,
    };
    let code = err.code().unwrap_or_default();
    match (status, code) {
        (_, "PreconditionFailed" | "ConditionalRequestConflict") | (Some(412 | 409), _) => {
            ErrorKind::Conflict
        }
        (_, "NotImplemented") | (Some(501), _) => ErrorKind::NotImplemented,
        (_, "NoSuchKey" | "NoSuchBucket" | "NotFound") | (Some(404), _) => ErrorKind::NotFound,
        (
            _,
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken",
        )
        | (Some(401 | 403), _) => ErrorKind::Denied,
        (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
        | (Some(429), _) => ErrorKind::Transient,
        (Some(s), _) if s >= 500 => ErrorKind::Transient,
        (None, _) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// Access to the HTTP status of a raw response (implemented for the SDK's response type).
pub(crate) trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Formats an SDK error with its whole chain of causes.
pub(crate) fn describe<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> String {
    format!("{}", DisplayErrorContext(err))
}

/// Runs `op` up to `attempts` times while it fails with a transient error, sleeping with
/// [`backoff`] in between. `transient` decides which errors are worth another attempt.
pub(crate) async fn with_retries<T, E, F, Fut>(
    attempts: u32,
    base: Duration,
    transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt + 1 < attempts && transient(&e) => {
                tokio::time::sleep(backoff(attempt, base, Duration::from_secs(10))).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 0..20 {
            let d = backoff(attempt, base, cap);
            assert!(d >= Duration::from_millis(50), "{d:?}");
            assert!(d <= cap, "{d:?}");
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 5, "no jitter: {seen:?}");
    }

    #[tokio::test]
    async fn with_retries_stops_on_permanent_errors() {
        let mut calls = 0;
        let r: Result<(), &str> = with_retries(
            5,
            Duration::from_millis(1),
            |e| *e == "t",
            |_| {
                calls += 1;
                async move { if calls < 3 { Err("t") } else { Err("p") } }
            },
        )
        .await;
        assert_eq!(r, Err("p"));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<u8, &str> = with_retries(
            3,
            Duration::from_millis(1),
            |_| true,
            |_| {
                calls += 1;
                async { Err("t") }
            },
        )
        .await;
        assert_eq!(r, Err("t"));
        assert_eq!(calls, 3);
    }
}
