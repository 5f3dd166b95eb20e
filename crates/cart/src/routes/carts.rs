//! `/v1/carts`: create, read, change and delete carts. Every mutation answers the priced cart
//! with its `ETag`, and honours `If-Match` so a client can refuse to overwrite a change it
//! has not seen.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{post, put},
};
use common::{ApiJson, Problem};

use crate::{
    AppState,
    domain::{self, CartId, Expected, LineTarget, Quantity, Sku},
    error::{CartError, etag},
    store::LineChange,
    view::{AddItem, CartView, CreateCart, SetQuantity},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/carts", post(create))
        .route("/v1/carts/{id}", axum::routing::get(get).delete(delete))
        .route("/v1/carts/{id}/items", post(add_item))
        .route(
            "/v1/carts/{id}/items/{sku}",
            put(set_item).delete(remove_item),
        )
}

/// Creates an empty cart.
#[utoipa::path(
    post, path = "/v1/carts", tag = "carts",
    request_body(content = Option<CreateCart>, description = "Optional (no body, or an empty one, makes a USD cart); any content type is read as JSON"),
    responses(
        (status = 201, description = "The new cart", body = CartView,
            headers(("Location" = String, description = "The cart's URL"), ("ETag" = String, description = "The cart's version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a circulating ISO 4217 currency, an unknown field, or a body that is not an object", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cart store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn create(State(app): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let request: CreateCart = if body.iter().all(u8::is_ascii_whitespace) {
        CreateCart::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::from_json_error(&e))?
    };
    let currency = domain::cart_currency(request.currency.as_deref())
        .map_err(|e| CartError::Invalid(vec![e]))?;
    let cart = app.store.create(currency).await.map_err(CartError::from)?;
    let location =
        HeaderValue::from_str(&format!("/v1/carts/{}", cart.id)).expect("ids are header-safe");
    let view = CartView::price(cart, &app.catalog).await?;
    let mut response = respond(StatusCode::CREATED, view);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// Reads a cart, priced from the current catalog.
#[utoipa::path(
    get, path = "/v1/carts/{id}", tag = "carts",
    params(("id" = String, Path, description = "The cart's id", pattern = "^crt_[0-9a-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "The cart", body = CartView, headers(("ETag" = String, description = "The cart's version"))),
        (status = 404, description = "No such cart, or it expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app))]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, CartError> {
    let id = cart_id(&id)?;
    let cart = app.store.get(&id).await?;
    Ok(respond(
        StatusCode::OK,
        CartView::price(cart, &app.catalog).await?,
    ))
}

/// Deletes a cart.
#[utoipa::path(
    delete, path = "/v1/carts/{id}", tag = "carts",
    params(("id" = String, Path, description = "The cart's id", pattern = "^crt_[0-9a-hjkmnp-tv-z]{26}$"), ("If-Match" = Option<String>, Header, description = "Expected version: `\"<version>\"` or `*`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such cart", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The cart changed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cart store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app, headers))]
pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, CartError> {
    let id = cart_id(&id)?;
    app.store.delete(&id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds units of a product to the cart.
#[utoipa::path(
    post, path = "/v1/carts/{id}/items", tag = "carts",
    params(("id" = String, Path, description = "The cart's id", pattern = "^crt_[0-9a-hjkmnp-tv-z]{26}$"), ("If-Match" = Option<String>, Header, description = "Expected version: `\"<version>\"` or `*`")),
    request_body = AddItem,
    responses(
        (status = 200, description = "The updated cart", body = CartView, headers(("ETag" = String, description = "The cart's version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cart", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The cart changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown or inactive sku, currency mismatch, bad quantity, too many lines", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app, headers, body))]
pub async fn add_item(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AddItem>,
) -> Result<Response, CartError> {
    let id = cart_id(&id)?;
    let (sku, quantity) = match (Sku::parse(&body.sku), Quantity::parse(body.quantity)) {
        (Ok(sku), Ok(q)) => (sku, q),
        (sku, q) => {
            return Err(CartError::Invalid(
                sku.err().into_iter().chain(q.err()).collect(),
            ));
        }
    };
    let product = app.catalog.product(sku.as_str()).await?;
    let product = product
        .filter(|p| p.active)
        .ok_or_else(|| CartError::field("sku", "unknown or inactive sku"))?;
    let cart = app
        .store
        .change_line(
            &id,
            &sku,
            LineChange::Add(quantity, product.currency),
            if_match(&headers),
        )
        .await?;
    Ok(respond(
        StatusCode::OK,
        CartView::price(cart, &app.catalog).await?,
    ))
}

/// Sets a line's quantity; 0 removes the line.
#[utoipa::path(
    put, path = "/v1/carts/{id}/items/{sku}", tag = "carts",
    params(("id" = String, Path, description = "The cart's id", pattern = "^crt_[0-9a-hjkmnp-tv-z]{26}$"), ("sku" = String, Path, description = "The line's sku", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("If-Match" = Option<String>, Header, description = "Expected version: `\"<version>\"` or `*`")),
    request_body = SetQuantity,
    responses(
        (status = 200, description = "The updated cart", body = CartView, headers(("ETag" = String, description = "The cart's version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cart", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The cart changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed or unknown sku, currency mismatch, bad quantity, too many lines", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app, headers, body))]
pub async fn set_item(
    State(app): State<AppState>,
    Path((id, sku)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetQuantity>,
) -> Result<Response, CartError> {
    let id = cart_id(&id)?;
    let (sku, target) = match (Sku::parse(&sku), LineTarget::parse(body.quantity)) {
        (Ok(sku), Ok(t)) => (sku, t),
        (sku, t) => {
            return Err(CartError::Invalid(
                sku.err().into_iter().chain(t.err()).collect(),
            ));
        }
    };
    let currency = match target {
        LineTarget::Remove => None,
        LineTarget::Set(_) => {
            let product = app.catalog.product(sku.as_str()).await?;
            let product = product
                .filter(|p| p.active)
                .ok_or_else(|| CartError::field("sku", "unknown or inactive sku"))?;
            Some(product.currency)
        }
    };
    let cart = app
        .store
        .change_line(
            &id,
            &sku,
            LineChange::Set(target, currency),
            if_match(&headers),
        )
        .await?;
    Ok(respond(
        StatusCode::OK,
        CartView::price(cart, &app.catalog).await?,
    ))
}

/// Removes a line; removing a line that is not there changes nothing.
#[utoipa::path(
    delete, path = "/v1/carts/{id}/items/{sku}", tag = "carts",
    params(("id" = String, Path, description = "The cart's id", pattern = "^crt_[0-9a-hjkmnp-tv-z]{26}$"), ("sku" = String, Path, description = "The line's sku", pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
        ("If-Match" = Option<String>, Header, description = "Expected version: `\"<version>\"` or `*`")),
    responses(
        (status = 200, description = "The updated cart", body = CartView, headers(("ETag" = String, description = "The cart's version"))),
        (status = 404, description = "No such cart", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The cart changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The sku is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip(app, headers))]
pub async fn remove_item(
    State(app): State<AppState>,
    Path((id, sku)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, CartError> {
    let id = cart_id(&id)?;
    let sku = Sku::parse(&sku).map_err(|e| CartError::Invalid(vec![e]))?;
    let cart = app
        .store
        .change_line(&id, &sku, LineChange::Remove, if_match(&headers))
        .await?;
    Ok(respond(
        StatusCode::OK,
        CartView::price(cart, &app.catalog).await?,
    ))
}

/// A malformed id names no cart: 404, like an unknown one.
fn cart_id(raw: &str) -> Result<CartId, CartError> {
    CartId::parse(raw).ok_or(CartError::NotFound)
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
    Expected::Version(raw.parse().unwrap_or(u64::MAX))
}

fn respond(status: StatusCode, view: CartView) -> Response {
    let tag = etag(view.version);
    let mut response = (status, Json(view)).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
