//! The path of one proxied request: screen its head (methods the gateway routes, one
//! `Host`, framing it can forward unambiguously), shed when too many are in flight,
//! rate-limit the client, decide the side from the flag snapshot, forward, then count the
//! outcome (the new side's failures feed auto-rollback) and set the visitor cookie.
//! Everything that is not an admin or operational route comes through here.

use std::{
    net::{Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, Version, header},
    response::{IntoResponse, Response},
};
use common::{Problem, problem::ProblemType};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};

use crate::{
    error::GatewayError,
    flags::Flags,
    forwarding::{Client, TrustedProxies},
    group::Group,
    http1::{BodyTimeout, CappedBody, DeadlineBody, TooLarge, caused_by},
    limits::{ClientKey, InFlight, RateLimiter, StreamCounts, StreamPlace},
    meters::RequestMeters,
    proxy::{Proxy, Upstream},
    rollback::{Outcome, Rollback},
    routing::{self, Decision, Route, Side},
    webhook,
};

/// Where each side of each group answers.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The cart service.
    pub cart: Upstream,
    /// The orders service.
    pub orders: Upstream,
    /// The payments service.
    pub payments: Upstream,
    /// The monolith, when configured.
    pub legacy: Option<Upstream>,
}

impl Upstreams {
    fn for_side(&self, group: Option<Group>, side: Side) -> Option<&Upstream> {
        match (group, side) {
            (Some(Group::Cart), Side::New) => Some(&self.cart),
            (Some(Group::Orders), Side::New) => Some(&self.orders),
            (Some(Group::Payments), Side::New) => Some(&self.payments),
            _ => self.legacy.as_ref(),
        }
    }
}

/// What the proxied path shares.
pub struct Edge {
    /// The route flags.
    pub flags: Arc<Flags>,
    /// The new side's outcome windows.
    pub rollback: Arc<Rollback>,
    /// The per-client limit, when on.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// The global in-flight cap.
    pub in_flight: InFlight,
    /// The upstream client.
    pub proxy: Proxy,
    /// The upstreams.
    pub upstreams: Upstreams,
    /// Cap on a Stripe webhook body.
    pub webhook_max_body_bytes: usize,
    /// Bound on the arrival of a request body.
    pub body_timeout: Duration,
    /// Open event streams per client.
    pub streams: StreamCounts,
    /// An event stream's longest life.
    pub stream_max: Duration,
    /// Request counts and durations.
    pub meters: RequestMeters,
}

/// The router's fallback: proxies a request that looked like one of the gateway's own routes
/// but is not (the serving loop sends every other request to `Edge::handle` directly).
pub async fn forward(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |c| c.0);
    edge.handle(request, &Client::new(peer)).await
}

impl Edge {
    /// Proxies `request` from `client` to the side the flags choose.
    pub async fn handle(&self, request: Request, client: &Client) -> Response {
        let Some(_permit) = self.in_flight.try_acquire() else {
            metrics::counter!("gateway_shed_total").increment(1);
            return GatewayError::Overloaded.into_response();
        };
        let client_ip = self
            .trusted_proxies
            .client_ip(client.ip(), request.headers());
        if let Some(limiter) = &self.limiter
            && let Err(retry_after) = limiter.check(ClientKey(client_ip))
        {
            metrics::counter!("gateway_rate_limited_total").increment(1);
            return GatewayError::RateLimited { retry_after }.into_response();
        }
        let stream = if is_event_stream(&request) {
            match self.streams.open(client_ip) {
                Some(place) => Some(place),
                None => {
                    metrics::counter!("gateway_streams_refused_total").increment(1);
                    return GatewayError::TooManyStreams.into_response();
                }
            }
        } else {
            None
        };

        let started = Instant::now();
        let (decision, armed, request) = match route(self, request).await {
            Ok(routed) => routed,
            Err(e) => return e.into_response(),
        };
        let result = match self.upstreams.for_side(decision.group, decision.side) {
            Some(upstream) => self.proxy.forward(upstream, request, client).await,
            None => Err(GatewayError::NoLegacy),
        };

        if let (Some(group), Side::New) = (decision.group, decision.side)
            && let Some(outcome) = outcome(&result, stream.is_some())
            && let Some(trip) = self.rollback.record(group, outcome, armed, client_ip)
        {
            self.flags.trip(trip);
        }

        let mut response = result.unwrap_or_else(IntoResponse::into_response);
        if let Some(place) = stream
            && response.status().is_success()
        {
            response =
                response.map(|body| Body::new(LimitedStream::new(body, place, self.stream_max)));
        }
        if let Some(visitor) = decision.new_visitor
            && let Ok(cookie) = HeaderValue::try_from(format!(
                "{}={visitor}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
                routing::VISITOR_COOKIE
            ))
        {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        self.meters.record(
            decision.group,
            decision.side,
            response.status(),
            started.elapsed(),
        );
        response
    }
}

/// What a new-side answer says about the new service, for auto-rollback: only what it
/// caused on a request it accepted is a failure (a 5xx, a connection that failed, a timeout
/// of its own). The client's own mistakes (4xx) and slow or broken bodies count for nothing,
/// and neither does an event stream's wait: a stream is long-lived by design.
fn outcome(result: &Result<Response, GatewayError>, stream: bool) -> Option<Outcome> {
    match result {
        Ok(response) if response.status().is_server_error() => Some(Outcome::Failed),
        Ok(_) => Some(Outcome::Answered),
        Err(GatewayError::UpstreamTimeout) if stream => None,
        Err(e) if e.is_upstream_failure() => Some(Outcome::Failed),
        Err(_) => None,
    }
}

/// Whether `request` asks for an event stream: an order's `/events`, or any request that
/// accepts only `text/event-stream`.
fn is_event_stream(request: &Request) -> bool {
    if request.method() != Method::GET {
        return false;
    }
    let path = request.uri().path();
    let order_events = path
        .strip_prefix("/v1/orders/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    order_events
        || request
            .headers()
            .get(header::ACCEPT)
            .is_some_and(|accept| accept.as_bytes().starts_with(b"text/event-stream"))
}

/// An event stream's body: ends (cleanly, for the client to reconnect) after its longest
/// life, and holds the client's stream place until it ends or is dropped.
struct LimitedStream {
    inner: Option<Body>,
    // tokio's timer: a stream lives long, and may outlive its serving thread's ticks.
    end: Pin<Box<tokio::time::Sleep>>,
    _place: StreamPlace,
}

impl LimitedStream {
    fn new(inner: Body, place: StreamPlace, life: Duration) -> Self {
        Self {
            inner: Some(inner),
            end: Box::pin(tokio::time::sleep(life)),
            _place: place,
        }
    }
}

impl hyper::body::Body for LimitedStream {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.end.as_mut().poll(cx).is_ready() {
            metrics::counter!("gateway_streams_expired_total").increment(1);
            this.inner = None;
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        // A stream cut short must not have promised a length.
        SizeHint::default()
    }
}

/// The methods the gateway routes; anything else is refused at the edge.
const ROUTED: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Checks a request head before anything else sees it, in either HTTP path: a method the
/// gateway routes (not `CONNECT`: it is no forward proxy), exactly one `Host`, and a body
/// framing it can forward without ambiguity (`Transfer-Encoding` only as a single `chunked`,
/// never together with `Content-Length`). Header names with `_` are dropped, as nginx does:
/// `Content_Length` must not become `Content-Length` at an upstream that folds the two. A
/// refusal says `Connection: close`: after a head like that, nothing more on the connection
/// can be trusted.
pub fn screen(request: &mut Request) -> Result<(), Response> {
    let refuse = |kind: ProblemType, detail: &str| {
        let mut response = Problem::new(kind)
            .detail(detail)
            .header(header::CONNECTION, HeaderValue::from_static("close"))
            .into_response();
        if kind == ProblemType::MethodNotAllowed {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        Err(response)
    };
    if !ROUTED.contains(request.method()) {
        metrics::counter!("gateway_refused_total", "reason" => "method").increment(1);
        return refuse(
            ProblemType::MethodNotAllowed,
            "The gateway does not route this method",
        );
    }
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let one_host = match request.version() {
        Version::HTTP_09 | Version::HTTP_10 => hosts <= 1,
        _ => hosts == 1,
    };
    if !one_host {
        metrics::counter!("gateway_refused_total", "reason" => "host").increment(1);
        return refuse(
            ProblemType::BadRequest,
            "A request carries exactly one Host header",
        );
    }
    let headers = request.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if !is_single_chunked(headers) {
            metrics::counter!("gateway_refused_total", "reason" => "transfer-encoding")
                .increment(1);
            return refuse(
                ProblemType::NotImplemented,
                "Only a single Transfer-Encoding: chunked is accepted",
            );
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            metrics::counter!("gateway_refused_total", "reason" => "framing").increment(1);
            return refuse(
                ProblemType::BadRequest,
                "A request carries Content-Length or Transfer-Encoding, not both",
            );
        }
    }
    drop_underscored(request.headers_mut());
    Ok(())
}

/// Whether the `Transfer-Encoding` lines say exactly `chunked`, once.
fn is_single_chunked(headers: &HeaderMap) -> bool {
    let mut lines = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (lines.next(), lines.next()) {
        (Some(only), None) => only
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked")),
        _ => false,
    }
}

/// Removes every header whose name has an `_`.
fn drop_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| name.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Decides the side; answers whether the group's rollout is above 0 (auto-rollback armed)
/// and the request to forward (a webhook's body is read whole to decide it).
async fn route(edge: &Edge, request: Request) -> Result<(Decision, bool, Request), GatewayError> {
    let snapshot = edge.flags.snapshot();
    let route = routing::classify(request.uri().path());
    if route != Route::StripeWebhook {
        let decision = routing::decide(&snapshot, &route, request.headers());
        let armed = decision.group.is_some_and(|g| snapshot.get(g).is_ramped());
        return Ok((decision, armed, request));
    }
    drop(snapshot);
    // Boxed: the webhook's state stays out of every other request's future.
    Box::pin(route_webhook(edge, request)).await
}

/// Decides a Stripe webhook's side from its body, read whole.
async fn route_webhook(
    edge: &Edge,
    request: Request,
) -> Result<(Decision, bool, Request), GatewayError> {
    let limit = edge.webhook_max_body_bytes;
    let (parts, body) = request.into_parts();
    let (body, _) = DeadlineBody::new(body, edge.body_timeout);
    let body = match CappedBody::new(Body::new(body), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<TooLarge>() => return Err(GatewayError::TooLarge { limit }),
        Err(e) if caused_by::<BodyTimeout>(&*e) => return Err(GatewayError::BodyTimeout),
        Err(e) => return Err(GatewayError::BadRequest(e)),
    };
    // Read the snapshot after the body: it may have changed while the body arrived.
    let snapshot = edge.flags.snapshot();
    let decision = Decision {
        group: Some(Group::Payments),
        side: webhook::decide(&snapshot, &body),
        new_visitor: None,
    };
    let armed = snapshot.get(Group::Payments).is_ramped();
    Ok((
        decision,
        armed,
        Request::from_parts(parts, Body::from(body)),
    ))
}
