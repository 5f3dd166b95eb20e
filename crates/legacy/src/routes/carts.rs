//! `/v1/carts`: the cart paths of the new cart service, answered from the monolith's tables
//! under its numeric ids, with the same bodies, `ETag`/`If-Match` and errors.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use common::{ApiJson, FieldError, Problem, money::Currency};

use crate::{
    AppState,
    error::{LegacyError, etag},
    store::{
        self,
        carts::{self, Expected, LineChange, MAX_QUANTITY, StoredCart},
        products,
    },
    view::{AddItem, CartView, CreateCart, SetQuantity},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/carts", post(create))
        .route("/v1/carts/{id}", get(read).delete(delete))
        .route("/v1/carts/{id}/items", post(add_item))
        .route(
            "/v1/carts/{id}/items/{sku}",
            put(set_item).delete(remove_item),
        )
}

#[tracing::instrument(skip_all)]
async fn create(State(app): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let request: CreateCart = if body.iter().all(u8::is_ascii_whitespace) {
        CreateCart::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::from_json_error(&e))?
    };
    let currency = match request.currency.as_deref() {
        None => Currency::USD,
        Some(code) => code.parse().map_err(|_| {
            LegacyError::field(
                "currency",
                "must be an ISO 4217 currency code such as USD or EUR",
            )
        })?,
    };
    let cart = carts::create(&app.pool, currency.as_str()).await?;
    let mut response = respond(StatusCode::CREATED, &app, cart).await?;
    let location = HeaderValue::from_str(&format!("/v1/carts/{}", response.1))
        .expect("numbers are header-safe");
    response.0.headers_mut().insert(header::LOCATION, location);
    Ok(response.0)
}

#[tracing::instrument(skip(app))]
async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, LegacyError> {
    let cart = carts::get(&app.pool, cart_id(&id)?).await?;
    Ok(respond(StatusCode::OK, &app, cart).await?.0)
}

#[tracing::instrument(skip(app, headers))]
async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, LegacyError> {
    carts::delete(&app.pool, cart_id(&id)?, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tracing::instrument(skip(app, headers, body))]
async fn add_item(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AddItem>,
) -> Result<Response, LegacyError> {
    let id = cart_id(&id)?;
    let (sku, quantity) = both(sku_field(&body.sku), quantity(body.quantity, 1))?;
    let currency = sold_in(&app, &sku).await?;
    let change = LineChange::Add(quantity, currency);
    let cart = carts::change_line(&app.pool, id, &sku, change, if_match(&headers)).await?;
    Ok(respond(StatusCode::OK, &app, cart).await?.0)
}

#[tracing::instrument(skip(app, headers, body))]
async fn set_item(
    State(app): State<AppState>,
    Path((id, sku)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetQuantity>,
) -> Result<Response, LegacyError> {
    let id = cart_id(&id)?;
    let (sku, quantity) = both(sku_field(&sku), quantity(body.quantity, 0))?;
    let change = if quantity == 0 {
        LineChange::Remove
    } else {
        LineChange::Set(quantity, sold_in(&app, &sku).await?)
    };
    let cart = carts::change_line(&app.pool, id, &sku, change, if_match(&headers)).await?;
    Ok(respond(StatusCode::OK, &app, cart).await?.0)
}

#[tracing::instrument(skip(app, headers))]
async fn remove_item(
    State(app): State<AppState>,
    Path((id, sku)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, LegacyError> {
    let id = cart_id(&id)?;
    let sku = sku_field(&sku).map_err(|e| LegacyError::Invalid(vec![e]))?;
    let cart =
        carts::change_line(&app.pool, id, &sku, LineChange::Remove, if_match(&headers)).await?;
    Ok(respond(StatusCode::OK, &app, cart).await?.0)
}

/// Whether `raw` has the catalog's sku shape (1–64 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit).
pub fn valid_sku(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && raw.as_bytes()[0].is_ascii_alphanumeric()
}

fn sku_field(raw: &str) -> Result<String, FieldError> {
    if valid_sku(raw) {
        Ok(raw.to_owned())
    } else {
        Err(FieldError::new("sku", "unknown sku"))
    }
}

/// A quantity in `least..=99`.
fn quantity(raw: i64, least: i64) -> Result<i32, FieldError> {
    if (least..=i64::from(MAX_QUANTITY)).contains(&raw) {
        Ok(raw as i32)
    } else {
        Err(FieldError::new(
            "quantity",
            format!("must be between {least} and {MAX_QUANTITY}"),
        ))
    }
}

/// Both values, or every field error at once.
fn both<A, B>(a: Result<A, FieldError>, b: Result<B, FieldError>) -> Result<(A, B), LegacyError> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(LegacyError::Invalid(
            a.err().into_iter().chain(b.err()).collect(),
        )),
    }
}

/// The currency `sku` is sold in; a 422 when it is unknown or no longer sold.
async fn sold_in(app: &AppState, sku: &str) -> Result<String, LegacyError> {
    products::one(&app.pool, sku)
        .await?
        .filter(|p| p.active)
        .map(|p| p.currency)
        .ok_or_else(|| LegacyError::field("sku", "unknown or inactive sku"))
}

/// A malformed id names no cart: 404, like an unknown one.
fn cart_id(raw: &str) -> Result<i64, LegacyError> {
    store::parse_id(raw).ok_or(LegacyError::NotFound("The cart"))
}

/// `If-Match` as a precondition; a value that is no version matches nothing.
fn if_match(headers: &HeaderMap) -> Expected {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Expected::Any;
    };
    let raw = value.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Expected::Any;
    }
    let raw = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    Expected::Version(raw.parse().unwrap_or(-1))
}

/// The priced cart with its `ETag`, and its id.
async fn respond(
    status: StatusCode,
    app: &AppState,
    cart: StoredCart,
) -> Result<(Response, i64), LegacyError> {
    let skus: Vec<String> = cart.lines.iter().map(|(s, _)| s.clone()).collect();
    let priced = if skus.is_empty() {
        Default::default()
    } else {
        products::lookup(&app.pool, &skus).await?
    };
    let view = CartView::price(&cart, &priced);
    let mut response = (status, Json(view)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag(cart.version));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((response, cart.id))
}
