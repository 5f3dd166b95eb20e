//! `/v1/orders`: checkout, read an order, follow it as server-sent events. Checkout answers
//! at once: the order, its lines and its `ProcessOrder` job are written in one transaction,
//! and the saga runs in the worker. Event streams are bounded in number and in lifetime, so
//! holding them open is no way to exhaust the process.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use common::{ApiJson, Problem, money::Money, problem::ProblemType};
use futures_util::StreamExt as _;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{
    OwnedSemaphorePermit,
    broadcast::{self, error::RecvError},
};

use crate::{
    AppState,
    domain::{CartId, Checkout, CheckoutRequest, Holding, OrderId, Status},
    error::OrdersError,
    store::{
        idempotency,
        orders::{self, Line, Order},
    },
    view::OrderView,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(create))
        .route("/v1/orders/{id}", get(read))
        .route("/v1/orders/{id}/events", get(events))
}

/// Places an order from a cart.
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    params(("Idempotency-Key" = String, Header, description = "Required (1–255 visible characters); a retry with the same key and body replays the first answer", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body = CheckoutRequest,
    responses(
        (status = 202, description = "Accepted; follow it at Location", body = OrderView,
            headers(("Location" = String, description = "The order's URL"), ("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The first request with this key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, empty or missing cart, or the key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cart service or the database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Response, OrdersError> {
    let key = common::idempotency::key(&headers).ok_or(OrdersError::MissingIdempotencyKey)?;
    let checkout = Checkout::try_from(body).map_err(OrdersError::Invalid)?;
    let key = idempotency::scoped(checkout.cart_id.as_str(), key);
    let request = json!({"cart_id": checkout.cart_id, "email": checkout.email, "payment_method": checkout.payment_method}).to_string();

    // The cart is read first: a replay must not depend on a cart that a confirmed order
    // has since cleared, so a cart that cannot be ordered is checked against the key.
    let cart = match orderable_cart(&app, &checkout.cart_id).await {
        Ok(cart) => cart,
        Err(e @ OrdersError::Cart(_)) => {
            return match idempotency::find(&app.pool, &key).await? {
                Some(stored) => replay(stored, &request),
                None => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let lines: Vec<Line> = cart
        .items
        .iter()
        .map(|l| Line {
            sku: l.sku.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            line_total: l.line_total,
        })
        .collect();
    let order = Order {
        id: OrderId::new(),
        status: Status::Pending,
        stock: Holding::None,
        cart_id: checkout.cart_id,
        email: checkout.email,
        total: Money::new(cart.subtotal, cart.currency),
        payment_method: checkout.payment_method,
        payment_id: None,
        payment_status: None,
        client_secret: None,
        failure_reason: None,
        payment_due_at: None,
        created_at: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc()),
    };
    let view = serde_json::to_value(OrderView::new(&order, &lines)).expect("an order serialises");
    let claim = orders::Claim {
        key: &key,
        request: &request,
        response: &view,
        ttl: app.idempotency_ttl,
    };

    let job = app.saga.process_job(&order.id);
    for _ in 0..2 {
        if orders::place(&app.pool, &claim, &order, &lines, &app.saga.queue, &job).await? {
            app.saga.queue.wake();
            metrics::counter!("orders_accepted_total").increment(1);
            return Ok(accepted(order.id.as_str(), view, false));
        }
        // The key is taken: replay its answer, or reclaim it once if it has expired.
        if let Some(stored) = idempotency::find(&app.pool, &key).await? {
            return replay(stored, &request);
        }
        if !idempotency::forget_if_expired(&app.pool, &key).await? {
            break;
        }
    }
    Err(OrdersError::InFlight)
}

async fn orderable_cart(
    app: &AppState,
    cart_id: &CartId,
) -> Result<crate::clients::Cart, OrdersError> {
    let cart = app.saga.clients.cart(cart_id).await.map_err(|e| match e {
        crate::clients::UpstreamError::Transient(e) => OrdersError::Upstream(format!("cart: {e}")),
        crate::clients::UpstreamError::Rejected { status, .. } => {
            OrdersError::Upstream(format!("cart answered {status}"))
        }
    })?;
    let cart =
        cart.ok_or_else(|| OrdersError::Cart("the cart does not exist or has expired".into()))?;
    if cart.items.is_empty() {
        return Err(OrdersError::Cart("the cart is empty".into()));
    }
    if let Some(line) = cart.items.iter().find(|l| !l.available) {
        return Err(OrdersError::Cart(format!(
            "{} is no longer sold; remove it from the cart",
            line.sku
        )));
    }
    Ok(cart)
}

fn replay(stored: idempotency::Stored, request: &str) -> Result<Response, OrdersError> {
    if stored.request != request {
        return Err(OrdersError::KeyReused);
    }
    let id = stored.response["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(accepted(&id, stored.response, true))
}

fn accepted(id: &str, body: serde_json::Value, replayed: bool) -> Response {
    common::idempotency::created(
        StatusCode::ACCEPTED,
        &format!("/v1/orders/{id}"),
        replayed,
        Json(body),
    )
}

/// Reads an order.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "The order's id", pattern = "^ord_[0-9a-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app))]
pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, OrdersError> {
    Ok(Json(
        load_view(&app, &order_id(&id)?)
            .await?
            .ok_or(OrdersError::NotFound("The order"))?,
    ))
}

/// The order id in a path; a malformed one names no order (404).
fn order_id(raw: &str) -> Result<OrderId, OrdersError> {
    OrderId::parse(raw).ok_or(OrdersError::NotFound("The order"))
}

async fn load_view(app: &AppState, id: &OrderId) -> Result<Option<OrderView>, sqlx::Error> {
    let Some(order) = orders::find(&app.pool, id).await? else {
        return Ok(None);
    };
    let lines = orders::lines(&app.pool, id).await?;
    Ok(Some(OrderView::new(&order, &lines)))
}

/// Follows an order: its current state at once, then every change; the stream ends at a
/// final state, after `EVENT_STREAM_MAX_SECS`, or when the process stops (the browser's
/// `EventSource` reconnects, to another process).
/// At most `EVENT_STREAM_MAX` streams are open in one process; past it, 429.
#[utoipa::path(
    get, path = "/v1/orders/{id}/events", tag = "orders",
    params(("id" = String, Path, description = "The order's id", pattern = "^ord_[0-9a-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "`text/event-stream` of `order` events, each an OrderView", content_type = "text/event-stream", body = OrderView),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This process holds as many streams as it may; retry after `Retry-After` or poll the order", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app))]
pub async fn events(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, OrdersError> {
    // Every open stream holds a connection and wakes on every order change in the process,
    // so their number is capped before any other work.
    let Ok(permit) = app.event_streams.clone().try_acquire_owned() else {
        metrics::counter!("orders_event_streams_refused_total").increment(1);
        return Ok(Problem::new(ProblemType::TooManyEventStreams)
        .detail("The server follows as many orders as it can; retry later or read the order with GET /v1/orders/{id}")
        .header(header::RETRY_AFTER, HeaderValue::from_static("5"))
        .into_response());
    };
    let open = OpenStream::counted(permit);
    let id = order_id(&id)?;
    // Subscribe before reading, so no change between the two is missed.
    let changes = app.events.subscribe();
    let first = load_view(&app, &id)
        .await?
        .ok_or(OrdersError::NotFound("The order"))?;
    let max_age = app.event_stream_max_age;
    let shutdown = app.shutdown.clone();
    let start = Follow {
        app,
        id,
        changes,
        next: Some(first),
        last: None,
        done: false,
        _open: open,
    };
    let stream = futures_util::stream::unfold(start, |mut follow| async move {
        if follow.done {
            return None;
        }
        loop {
            if let Some(view) = follow.next.take()
                && follow.last.as_deref() != Some(view.status.as_str())
            {
                follow.done = view.status.parse::<Status>().is_ok_and(Status::is_final);
                follow.last = Some(view.status.clone());
                let event = Event::default()
                    .event("order")
                    .id(view.status.clone())
                    .json_data(&view)
                    .expect("an order serialises");
                return Some((Ok::<_, Infallible>(event), follow));
            }
            match follow.changes.recv().await {
                Ok(changed) if changed != follow.id.as_str() => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    follow.next = load_view(&follow.app, &follow.id).await.ok().flatten()
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .take_until(async move {
        tokio::select! {
            () = tokio::time::sleep(max_age) => {}
            () = shutdown.cancelled_owned() => {}
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// One event stream's state between events.
struct Follow {
    app: AppState,
    id: OrderId,
    changes: broadcast::Receiver<String>,
    /// A view to send, when it differs from the last one sent.
    next: Option<OrderView>,
    /// The status last sent.
    last: Option<String>,
    /// A final status was sent: the stream ends.
    done: bool,
    _open: OpenStream,
}

/// An open stream's place under the cap, counted in the `orders_event_streams_open` gauge
/// for as long as the stream lives, however it ends.
struct OpenStream {
    _permit: OwnedSemaphorePermit,
}

impl OpenStream {
    fn counted(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("orders_event_streams_open").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("orders_event_streams_open").decrement(1.0);
    }
}
