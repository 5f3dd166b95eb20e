//! The streaming reverse proxy: keep-alive HTTP/1.1 connections to every upstream, pooled
//! per serving thread, spoken by the gateway's own code (`crate::http1`) or by hyper
//! (`crate::hyper_upstream`) as `GATEWAY_HTTP` says. Bodies stream both ways; the request
//! body is capped as it streams, connecting and waiting for response headers are bounded,
//! and each failure becomes a `GatewayError` that says whether the upstream is to blame.

use std::time::Duration;

use axum::{
    body::Body,
    extract::Request,
    http::{
        HeaderValue, Uri, header,
        uri::{Authority, PathAndQuery, Scheme},
    },
    response::Response,
};
use common::ConfigError;
use hyper::body::Body as _;

use crate::{
    config::HttpPath,
    error::GatewayError,
    forwarding::{self, Client},
    http1::{
        self, BodyProgress, BodyTimeout, CappedBody, ConnectError, DeadlineBody, ExchangeError,
        Forwarding, Outgoing, Pool, PoolSettings, Pooled, ResponseHead, TooLarge, caused_by,
    },
    hyper_upstream::{self, HyperPool},
};

/// Where an upstream answers: scheme, authority and an optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    authority: Authority,
    host: HeaderValue,
    base_path: String,
}

impl Upstream {
    /// Parses the `http://host:port[/prefix]` in variable `name`.
    pub fn parse(name: &str, url: &str) -> Result<Self, ConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ConfigError::new(name, format!("{url:?}: {e}")))?;
        let scheme = uri.scheme().cloned();
        if scheme != Some(Scheme::HTTP) {
            return Err(ConfigError::new(
                name,
                format!("{url:?}: only http:// upstreams are supported"),
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ConfigError::new(name, format!("{url:?} names no host")))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ConfigError::new(name, format!("{url:?}: {e}")))?;
        Ok(Self {
            host,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request target on this upstream: origin-form, after the base path.
    fn target(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, GatewayError> {
        let tail = path_and_query.map_or("/", PathAndQuery::as_str);
        Uri::try_from(format!("{}{tail}", self.base_path))
            .map_err(|e| GatewayError::BadRequest(e.into()))
    }
}

/// How the proxy talks to upstreams.
#[derive(Debug, Clone, Copy)]
pub struct ProxySettings {
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Bound on waiting for response headers.
    pub response_timeout: Duration,
    /// Idle connections close after this.
    pub pool_idle: Duration,
    /// Idle connections kept per upstream.
    pub pool_max_idle: usize,
    /// Request bodies larger than this are refused.
    pub max_body_bytes: usize,
    /// A request body must arrive whole within this.
    pub body_timeout: Duration,
    /// Whether to set `traceparent` from the gateway's own span.
    pub inject_trace: bool,
    /// Who speaks HTTP/1 to the upstreams.
    pub http: HttpPath,
}

/// The connection pools and the limits.
pub struct Proxy {
    transport: Transport,
    settings: ProxySettings,
}

/// Who speaks HTTP/1 to the upstreams, with its connections.
enum Transport {
    Own(Pool),
    Hyper(HyperPool),
}

impl Proxy {
    /// A proxy with pools of its own.
    pub fn new(settings: ProxySettings) -> Self {
        let pool = PoolSettings {
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.pool_idle,
            max_idle: settings.pool_max_idle,
        };
        let transport = match settings.http {
            HttpPath::Own => Transport::Own(Pool::new(pool)),
            HttpPath::Hyper => Transport::Hyper(HyperPool::new(pool)),
        };
        Self {
            transport,
            settings,
        }
    }

    /// The body limit.
    pub fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// Sends `request` to `upstream` for `client` and answers the upstream's response with
    /// its body streaming.
    pub async fn forward(
        &self,
        upstream: &Upstream,
        request: Request,
        client: &Client,
    ) -> Result<Response, GatewayError> {
        let limit = self.settings.max_body_bytes;
        let (mut parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::TooLarge { limit });
        }
        // The client's origin-form target goes on as it is, unless the upstream has a prefix.
        if !upstream.base_path.is_empty() {
            parts.uri = upstream.target(parts.uri.path_and_query())?;
        }
        forwarding::strip_hop_by_hop(&mut parts.headers);
        let traceparent = self
            .settings
            .inject_trace
            .then(common::telemetry::current_traceparent)
            .flatten()
            .and_then(|traceparent| HeaderValue::try_from(traceparent).ok());
        // A body known to be empty (most GETs) needs no cap and no deadline.
        let (body, progress) = if body.size_hint().exact() == Some(0) {
            (body, None)
        } else {
            let (body, progress) = DeadlineBody::new(body, self.settings.body_timeout);
            (
                Body::new(CappedBody::new(Body::new(body), limit)),
                Some(progress),
            )
        };
        // What the upstream did not take of the body (it answered or failed first) the
        // client's body reads and throws away once dropped.
        let exchanged = match &self.transport {
            Transport::Own(pool) => {
                let forwarding = Forwarding {
                    host: &upstream.host,
                    client,
                    traceparent,
                };
                self.forward_own(pool, upstream, parts, body, &forwarding)
                    .await
            }
            Transport::Hyper(pool) => {
                let size = body.size_hint();
                hyper_upstream::forward_headers(
                    &mut parts,
                    &upstream.host,
                    client,
                    traceparent,
                    &size,
                );
                let send = pool.send(&upstream.authority, parts, body);
                match tokio::time::timeout(self.settings.response_timeout, send).await {
                    Ok(Ok(response)) => Ok(Ok(response)),
                    Ok(Err(e)) => Ok(Err(Failure::Hyper(e))),
                    Err(_) => Err(()),
                }
            }
        };
        match exchanged {
            // Still waiting for the client's body: the client is slow, not the upstream.
            Err(())
                if progress
                    .as_ref()
                    .is_some_and(BodyProgress::is_waiting_on_client) =>
            {
                Err(GatewayError::BodyTimeout)
            }
            Err(()) => Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => Err(failed(e, limit)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The exchange on the gateway's own upstream connections, within the response timeout
    /// (`Err(())` past it).
    async fn forward_own(
        &self,
        pool: &Pool,
        upstream: &Upstream,
        parts: axum::http::request::Parts,
        mut body: Body,
        forwarding: &Forwarding<'_>,
    ) -> Result<Result<Response, Failure>, ()> {
        let outgoing = Outgoing::forwarded(&parts, &body.size_hint(), forwarding);
        let exchange =
            std::pin::pin!(self.exchange(pool, &upstream.authority, &outgoing, &mut body));
        let (connection, head) =
            match http1::timeout(self.settings.response_timeout, exchange).await {
                Err(_) => return Err(()),
                Ok(Err(e)) => return Ok(Err(e)),
                Ok(Ok(exchanged)) => exchanged,
            };
        let (mut parts, body) = head.into_response(connection);
        forwarding::strip_hop_by_hop(&mut parts.headers);
        Ok(Ok(Response::from_parts(parts, body)))
    }

    /// Sends the request on an idle connection, or on a new one when there is none, or when
    /// the upstream dropped the idle one under a request that can go again.
    async fn exchange(
        &self,
        pool: &Pool,
        authority: &Authority,
        outgoing: &Outgoing,
        body: &mut Body,
    ) -> Result<(Pooled, ResponseHead), Failure> {
        if let Some(mut connection) = pool.idle(authority) {
            match http1::exchange(connection.connection(), outgoing, body).await {
                Ok(head) => return Ok((connection, head)),
                Err(e) if e.is_stale_connection() && outgoing.is_retryable() => {
                    tracing::debug!(error = %e, "an idle upstream connection was closed; retrying");
                }
                Err(e) => return Err(Failure::Exchange(e)),
            }
        }
        // Boxed: connecting is rare, and its state would otherwise be in every request's future.
        let mut connection = Box::pin(pool.connect(authority))
            .await
            .map_err(Failure::Connect)?;
        match http1::exchange(connection.connection(), outgoing, body).await {
            Ok(head) => Ok((connection, head)),
            Err(e) => Err(Failure::Exchange(e)),
        }
    }
}

/// What went wrong talking to an upstream.
enum Failure {
    Connect(ConnectError),
    Exchange(ExchangeError),
    Hyper(hyper_upstream::Failure),
}

/// The gateway's answer to a failed exchange: a body over the cap is the client's fault
/// (and the rest of it is drained), so is a body that could not be read; a connect timeout
/// is a timeout; everything else is the upstream's.
fn failed(failure: Failure, limit: usize) -> GatewayError {
    let error = match failure {
        Failure::Connect(e @ ConnectError::TimedOut(_)) => {
            tracing::debug!(error = %e, "upstream connect timed out");
            return GatewayError::UpstreamTimeout;
        }
        Failure::Connect(e) => return GatewayError::UpstreamUnreachable(Box::new(e)),
        Failure::Hyper(hyper_upstream::Failure::Connect(e)) => {
            return failed(Failure::Connect(e), limit);
        }
        Failure::Hyper(hyper_upstream::Failure::Exchange(e)) if e.is_user() => {
            return body_failed(Box::new(e), limit);
        }
        Failure::Hyper(e) => return GatewayError::UpstreamFailed(Box::new(e)),
        Failure::Exchange(e) => e,
    };
    let ExchangeError::RequestBody(body_error) = error else {
        return GatewayError::UpstreamFailed(Box::new(error));
    };
    body_failed(Box::new(body_error), limit)
}

/// The gateway's answer when the client's body could not be sent.
fn body_failed(body_error: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> GatewayError {
    if caused_by::<TooLarge>(&*body_error) {
        return GatewayError::TooLarge { limit };
    }
    if caused_by::<BodyTimeout>(&*body_error) {
        return GatewayError::BodyTimeout;
    }
    // Reading the client's body failed (it went away): not the upstream's fault.
    GatewayError::BadRequest(body_error)
}
