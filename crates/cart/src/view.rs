//! The wire shapes of the cart API and the pricing of a stored cart into its view: prices
//! and names come from the catalog at read time, so a price change shows on the next read.

use common::money::Currency;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::ToSchema;

use crate::{catalog::Catalog, domain::StoredCart, error::CartError};

/// `POST /v1/carts` body; optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCart {
    /// ISO 4217 code every line must be priced in; `USD` when omitted.
    #[schema(value_type = Option<String>, example = "USD", pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
}

/// `POST /v1/carts/{id}/items` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    /// The product to add.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        example = "TSHIRT-BLACK-M"
    )]
    pub sku: String,
    /// How many to add to the line (1–99; the line holds at most 99).
    #[schema(minimum = 1, maximum = 99)]
    pub quantity: i64,
}

/// `PUT /v1/carts/{id}/items/{sku}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// The line's new quantity (0–99); 0 removes the line.
    #[schema(minimum = 0, maximum = 99)]
    pub quantity: i64,
}

/// One line of a cart, priced.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// The product.
    pub sku: String,
    /// The product's current name.
    pub name: String,
    /// Units on the line.
    pub quantity: u32,
    /// Current unit price in minor units.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
    /// False when the product was withdrawn after it was added; such a line is not in the
    /// subtotal and the cart cannot be checked out until it is removed.
    pub available: bool,
}

/// A cart, priced from the current catalog.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CartView {
    /// The cart's id (`crt_…`), also its access token.
    pub id: String,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// The lines, by sku.
    pub items: Vec<LineView>,
    /// Units in the cart.
    pub item_count: u64,
    /// Sum of the available lines, minor units.
    pub subtotal: i64,
    /// Incremented by every change; send it back in `If-Match`.
    pub version: u64,
    /// When the cart expires unless it is changed again (RFC 3339).
    pub expires_at: String,
}

impl CartView {
    /// Prices `cart` with the catalog's current products.
    pub async fn price(cart: StoredCart, catalog: &Catalog) -> Result<Self, CartError> {
        let skus: Vec<&str> = cart.lines.iter().map(|(sku, _)| sku.as_str()).collect();
        let products = if skus.is_empty() {
            Default::default()
        } else {
            catalog.products(&skus).await?
        };
        let mut items = Vec::with_capacity(cart.lines.len());
        let mut subtotal: i64 = 0;
        let mut item_count: u64 = 0;
        for (sku, quantity) in &cart.lines {
            item_count += u64::from(*quantity);
            let product = products
                .get(sku)
                .filter(|p| p.active && p.currency == cart.currency);
            let line = match product {
                Some(p) => {
                    let line_total = p.unit_price.saturating_mul(i64::from(*quantity));
                    subtotal = subtotal.saturating_add(line_total);
                    LineView {
                        sku: sku.clone(),
                        name: p.name.clone(),
                        quantity: *quantity,
                        unit_price: p.unit_price,
                        line_total,
                        available: true,
                    }
                }
                None => LineView {
                    sku: sku.clone(),
                    name: sku.clone(),
                    quantity: *quantity,
                    unit_price: 0,
                    line_total: 0,
                    available: false,
                },
            };
            items.push(line);
        }
        Ok(Self {
            id: cart.id.to_string(),
            currency: cart.currency.to_string(),
            items,
            item_count,
            subtotal,
            version: cart.version,
            expires_at: expires_at(cart.ttl_ms),
        })
    }
}

fn expires_at(ttl_ms: i64) -> String {
    let at = OffsetDateTime::now_utc() + time::Duration::milliseconds(ttl_ms.max(0));
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The currency of a new cart.
pub fn parse_currency(raw: Option<&str>) -> Result<Currency, CartError> {
    match raw {
        None => Ok(Currency::USD),
        Some(code) => code.parse().map_err(|e: common::money::InvalidCurrency| {
            CartError::field("currency", e.to_string())
        }),
    }
}
