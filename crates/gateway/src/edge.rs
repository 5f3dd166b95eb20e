//! The path of one proxied request: shed when too many are in flight, rate-limit the
//! client, decide the side from the flag snapshot, forward, then count the outcome (the new
//! side's feeds auto-rollback) and set the visitor cookie. Everything that is not an admin
//! or operational route comes through here.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderName, HeaderValue, header},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt as _;

use crate::{
    body::{CappedBody, TooLarge},
    error::GatewayError,
    flags::Flags,
    forwarding::{Client, TrustedProxies},
    group::Group,
    limits::{ClientKey, InFlight, RateLimiter},
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
    /// Header naming a client's API key.
    pub key_header: HeaderName,
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
        if let Some(limiter) = &self.limiter
            && let Err(retry_after) = limiter.check(ClientKey::of(
                request.headers(),
                &self.key_header,
                self.trusted_proxies
                    .client_ip(client.ip(), request.headers()),
            ))
        {
            metrics::counter!("gateway_rate_limited_total").increment(1);
            return GatewayError::RateLimited { retry_after }.into_response();
        }

        let started = Instant::now();
        let (decision, armed, request) = match route(self, request).await {
            Ok(routed) => routed,
            Err(e) => return e.into_response(),
        };
        let result = match self.upstreams.for_side(decision.group, decision.side) {
            Some(upstream) => self.proxy.forward(upstream, request, client).await,
            None => Err(GatewayError::NoLegacy),
        };

        if let (Some(group), Side::New) = (decision.group, decision.side) {
            let outcome = match &result {
                Ok(response) if response.status().is_server_error() => Some(Outcome::Failed),
                Ok(_) => Some(Outcome::Answered),
                Err(e) if e.is_upstream_failure() => Some(Outcome::Failed),
                Err(_) => None,
            };
            if let Some(outcome) = outcome
                && let Some(trip) = self.rollback.record(group, outcome, armed)
            {
                self.flags.trip(trip);
            }
        }

        let mut response = result.unwrap_or_else(IntoResponse::into_response);
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
    let body = match CappedBody::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<TooLarge>() => return Err(GatewayError::TooLarge { limit }),
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
