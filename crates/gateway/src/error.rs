//! The gateway's own errors (as opposed to an upstream's answers, which pass through) and
//! their one mapping to problem+json. Upstream causes are logged here, inside the request's
//! span; the client only learns which kind of failure it was.

use std::time::Duration;

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use common::{Problem, problem::ProblemType};

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Everything a proxied request can fail with at the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request body is larger than the limit.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request could not be read or forwarded (the client went away mid-upload).
    #[error("the request could not be read")]
    BadRequest(#[source] Cause),
    /// The client's body did not arrive within the body deadline.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The client holds as many event streams as it may.
    #[error("too many event streams")]
    TooManyStreams,
    /// The upstream did not connect or answer in time.
    #[error("the upstream timed out")]
    UpstreamTimeout,
    /// The upstream refused or could not be reached.
    #[error("the upstream is unreachable")]
    UpstreamUnreachable(#[source] Cause),
    /// The upstream connection failed after it was made.
    #[error("the upstream failed")]
    UpstreamFailed(#[source] Cause),
    /// The request belongs to legacy but no `LEGACY_URL` is configured.
    #[error("no legacy upstream is configured")]
    NoLegacy,
    /// The client is over its rate limit.
    #[error("rate limited")]
    RateLimited {
        /// When the next request would be accepted.
        retry_after: Duration,
    },
    /// Too many requests in flight: shed instead of queued.
    #[error("overloaded")]
    Overloaded,
}

impl GatewayError {
    /// Whether this failure counts against the upstream's health (auto-rollback).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Self::UpstreamTimeout | Self::UpstreamUnreachable(_) | Self::UpstreamFailed(_)
        )
    }
}

impl From<GatewayError> for Problem {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::TooLarge { limit } => Problem::new(ProblemType::PayloadTooLarge)
                .detail(format!("Request bodies are limited to {limit} bytes")),
            GatewayError::BadRequest(cause) => {
                tracing::debug!(error = %cause, "request unreadable");
                Problem::new(ProblemType::BadRequest)
            }
            GatewayError::BodyTimeout => Problem::new(ProblemType::BodyTimeout)
                .detail("The request body did not arrive whole in time")
                .header(header::CONNECTION, HeaderValue::from_static("close")),
            GatewayError::TooManyStreams => Problem::new(ProblemType::TooManyStreams)
                .detail("This client holds as many event streams as it may; close one first")
                .header(header::RETRY_AFTER, HeaderValue::from_static("5")),
            GatewayError::UpstreamTimeout => {
                tracing::warn!("upstream timed out");
                Problem::new(ProblemType::UpstreamTimeout)
                    .detail("The service behind this route did not answer in time; retry shortly")
            }
            GatewayError::UpstreamUnreachable(cause) | GatewayError::UpstreamFailed(cause) => {
                tracing::warn!(error = %chain(&*cause), "upstream failed");
                Problem::new(ProblemType::BadGateway)
                    .detail("The service behind this route could not be reached; retry shortly")
            }
            GatewayError::NoLegacy => Problem::new(ProblemType::NoUpstream)
                .detail("This route is served by the legacy system, which is not configured"),
            GatewayError::RateLimited { retry_after } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                Problem::new(ProblemType::RateLimited)
                    .detail(format!("Slow down; retry in {seconds} s"))
                    .header(header::RETRY_AFTER, HeaderValue::from(seconds))
            }
            GatewayError::Overloaded => Problem::new(ProblemType::Overloaded)
                .detail("Too many requests are in flight; retry shortly")
                .header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
