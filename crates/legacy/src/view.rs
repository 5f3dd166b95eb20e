//! The wire shapes: request bodies, and the cart, order and product views. They are the new
//! services' shapes field for field (ids aside), so a storefront reads either system's
//! answers with one client and a comparison of the two sees only real differences.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::store::{
    carts::{CART_TTL, StoredCart},
    products::Product,
};

/// `POST /v1/carts` body; optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCart {
    /// ISO 4217 code; `USD` when omitted.
    pub currency: Option<String>,
}

/// `POST /v1/carts/{id}/items` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    /// The product.
    pub sku: String,
    /// Units to add, 1–99.
    pub quantity: i64,
}

/// `PUT /v1/carts/{id}/items/{sku}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// The line's new quantity, 0–99; 0 removes the line.
    pub quantity: i64,
}

/// `POST /v1/orders` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The cart to order.
    pub cart_id: String,
    /// Where the confirmation goes.
    pub email: String,
    /// Accepted for compatibility; the monolith takes no card.
    pub payment_method: Option<String>,
}

/// One priced line of a cart.
#[derive(Debug, Serialize, Deserialize)]
pub struct CartLineView {
    /// The product.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Units.
    pub quantity: i32,
    /// One unit, minor units.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
    /// False when the product is no longer sold (or priced in another currency).
    pub available: bool,
}

/// A cart, priced from the monolith's products.
#[derive(Debug, Serialize, Deserialize)]
pub struct CartView {
    /// The cart's number, as text.
    pub id: String,
    /// ISO 4217.
    pub currency: String,
    /// The lines, by sku.
    pub items: Vec<CartLineView>,
    /// Units in the cart.
    pub item_count: u64,
    /// Sum of the available lines.
    pub subtotal: i64,
    /// The cart's version; send it back in `If-Match`.
    pub version: i64,
    /// When the cart expires unless changed (RFC 3339).
    pub expires_at: String,
}

impl CartView {
    /// Prices `cart` with `products`.
    pub fn price(cart: &StoredCart, products: &HashMap<String, Product>) -> Self {
        let mut items = Vec::with_capacity(cart.lines.len());
        let (mut subtotal, mut item_count) = (0_i64, 0_u64);
        for (sku, quantity) in &cart.lines {
            item_count += *quantity as u64;
            let product = products
                .get(sku)
                .filter(|p| p.active && p.currency == cart.currency);
            items.push(match product {
                Some(p) => {
                    let line_total = p.unit_price.saturating_mul(i64::from(*quantity));
                    subtotal = subtotal.saturating_add(line_total);
                    CartLineView {
                        sku: sku.clone(),
                        name: p.name.clone(),
                        quantity: *quantity,
                        unit_price: p.unit_price,
                        line_total,
                        available: true,
                    }
                }
                None => CartLineView {
                    sku: sku.clone(),
                    name: sku.clone(),
                    quantity: *quantity,
                    unit_price: 0,
                    line_total: 0,
                    available: false,
                },
            });
        }
        Self {
            id: cart.id.to_string(),
            currency: cart.currency.clone(),
            items,
            item_count,
            subtotal,
            version: cart.version,
            expires_at: rfc3339(cart.updated_at + CART_TTL),
        }
    }
}

/// One line of an order, priced when it was placed.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct OrderLineView {
    /// The product.
    pub sku: String,
    /// Its name when ordered.
    pub name: String,
    /// Units.
    pub quantity: i32,
    /// One unit, minor units.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
}

/// An order. The monolith confirms in the request that places it and takes no card, so
/// `failure_reason` and `payment` are always null.
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderView {
    /// The order's number, as text.
    pub id: String,
    /// Always `confirmed`.
    pub status: String,
    /// The lines.
    pub items: Vec<OrderLineView>,
    /// Sum of the lines.
    pub total: i64,
    /// ISO 4217.
    pub currency: String,
    /// Where the confirmation goes.
    pub email: String,
    /// When it was placed (RFC 3339).
    pub created_at: String,
    /// Never set.
    pub failure_reason: Option<String>,
    /// Never set.
    pub payment: Option<serde_json::Value>,
}

/// A product page.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProductView {
    /// The sku.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// One unit, minor units.
    pub unit_price: i64,
    /// ISO 4217.
    pub currency: String,
    /// Whether it is sold.
    pub active: bool,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            sku: p.sku,
            name: p.name,
            unit_price: p.unit_price,
            currency: p.currency,
            active: p.active,
        }
    }
}

/// `at` in RFC 3339, to the second.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}
