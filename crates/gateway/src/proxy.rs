//! The streaming reverse proxy: pooled HTTP/1.1 clients (hyper-util's), one per serving
//! thread, for every upstream. Bodies stream both ways; the request body is capped as it streams, connecting
//! and waiting for response headers are bounded, and each failure becomes a `GatewayError`
//! that says whether the upstream is to blame.

use std::{io, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    http::{
        HeaderValue, Uri, Version, header,
        uri::{Authority, PathAndQuery, Scheme},
    },
    response::Response,
};
use common::ConfigError;
use hyper::body::Body as _;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use thread_local::ThreadLocal;

use crate::{
    body::{self, CappedBody, TooLarge},
    error::GatewayError,
    forwarding,
};

/// Where an upstream answers: scheme, authority and an optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
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
        Ok(Self {
            scheme: Scheme::HTTP,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, GatewayError> {
        let tail = path_and_query.map_or("/", PathAndQuery::as_str);
        let path_and_query = if self.base_path.is_empty() {
            PathAndQuery::try_from(tail)
        } else {
            PathAndQuery::try_from(format!("{}{tail}", self.base_path))
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query.map_err(|e| GatewayError::BadRequest(e.into()))?)
            .build()
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
    /// Whether to set `traceparent` from the gateway's own span.
    pub inject_trace: bool,
}

/// The pooled clients and their limits.
///
/// Each thread gets a connection pool of its own: the gateway serves every client connection
/// on one thread (see `crate::serve`), and an upstream connection driven by that same thread
/// answers without waking another one.
#[derive(Clone)]
pub struct Proxy {
    clients: Arc<ThreadLocal<Client<HttpConnector, Body>>>,
    settings: ProxySettings,
}

impl Proxy {
    /// A proxy with its own connection pools.
    pub fn new(settings: ProxySettings) -> Self {
        Self {
            clients: Arc::new(ThreadLocal::new()),
            settings,
        }
    }

    fn client(&self) -> &Client<HttpConnector, Body> {
        self.clients.get_or(|| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(self.settings.connect_timeout));
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(self.settings.pool_idle)
                .pool_max_idle_per_host(self.settings.pool_max_idle)
                .build(connector)
        })
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
        client: IpAddr,
    ) -> Result<Response, GatewayError> {
        let limit = self.settings.max_body_bytes;
        let (mut parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            body::drain(body);
            return Err(GatewayError::TooLarge { limit });
        }
        parts.uri = upstream.uri_for(parts.uri.path_and_query())?;
        parts.version = Version::HTTP_11;
        forwarding::prepare_request(&mut parts.headers, client);
        if self.settings.inject_trace
            && let Some(traceparent) = common::telemetry::current_traceparent()
            && let Ok(value) = HeaderValue::try_from(traceparent)
        {
            parts.headers.insert("traceparent", value);
        }
        // A body known to be empty (most GETs) needs no cap.
        let (body, overflow) = if body.size_hint().exact() == Some(0) {
            (body, None)
        } else {
            let (capped, overflow) = CappedBody::new(body, limit);
            (Body::new(capped), Some(overflow))
        };
        let request = Request::from_parts(parts, body);

        let sent = tokio::time::timeout(
            self.settings.response_timeout,
            self.client().request(request),
        );
        let response = match sent.await {
            Err(_) => return Err(GatewayError::UpstreamTimeout),
            Ok(Err(e)) => {
                let error = classify(e, limit);
                if let (GatewayError::TooLarge { .. }, Some(overflow)) = (&error, overflow) {
                    overflow.drain();
                }
                return Err(error);
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        forwarding::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

fn classify(error: hyper_util::client::legacy::Error, limit: usize) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut timed_out = false;
    let mut body_failed = false;
    while let Some(e) = source {
        if e.is::<TooLarge>() {
            return GatewayError::TooLarge { limit };
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            timed_out |= io.kind() == io::ErrorKind::TimedOut;
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            body_failed |= hyper.is_user();
        }
        source = e.source();
    }
    if error.is_connect() {
        if timed_out {
            GatewayError::UpstreamTimeout
        } else {
            GatewayError::UpstreamUnreachable(Box::new(error))
        }
    } else if body_failed {
        // Reading the client's body failed (it went away): not the upstream's fault.
        GatewayError::BadRequest(Box::new(error))
    } else {
        GatewayError::UpstreamFailed(Box::new(error))
    }
}
