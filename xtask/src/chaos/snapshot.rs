//! What the books say after the run: the orders, stock, idempotency keys, payments and dead
//! letters straight from Postgres, and every PaymentIntent from stripe-sim's ledger. The
//! invariants are checked against this one picture.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::Value;
use sqlx::{PgPool, Row as _};

/// An order row.
#[derive(Debug, Clone)]
pub struct OrderRow {
    /// `ord_…`.
    pub id: String,
    /// Its status.
    pub status: String,
    /// Where its stock is: none, reserved, released, sold.
    pub stock: String,
    /// Its total, minor units.
    pub total: i64,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<String>,
    /// `pay_…`.
    pub payment_id: Option<String>,
    /// The cart it was placed from.
    pub cart_id: String,
    /// The payment status orders last heard.
    pub payment_status: Option<String>,
}

/// A payment row.
#[derive(Debug, Clone)]
pub struct PaymentRow {
    /// `pay_…`.
    pub id: String,
    /// Its order.
    pub order_id: String,
    /// Its status.
    pub status: String,
    /// Its amount.
    pub amount: i64,
    /// What it says was refunded.
    pub amount_refunded: i64,
    /// The PaymentIntent.
    pub provider_id: Option<String>,
}

/// A dead letter in either queue.
#[derive(Debug, Clone)]
pub struct DeadJob {
    /// `orders` or `payments`.
    pub queue: &'static str,
    /// The job id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: Value,
    /// Its last error.
    pub last_error: Option<String>,
}

/// The books.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Orders by id.
    pub orders: BTreeMap<String, OrderRow>,
    /// `(order, sku, quantity)`.
    pub lines: Vec<(String, String, i64)>,
    /// `sku → (on_hand, reserved)`.
    pub inventory: BTreeMap<String, (i64, i64)>,
    /// `Idempotency-Key → order`.
    pub keys: BTreeMap<String, String>,
    /// Payments by order.
    pub payments: BTreeMap<String, PaymentRow>,
    /// Stripe event id → the order it named.
    pub event_orders: BTreeMap<String, String>,
    /// Dead letters.
    pub dead: Vec<DeadJob>,
    /// stripe-sim's intents by the order in their metadata (`""` for none).
    pub intents: BTreeMap<String, Vec<Value>>,
}

/// How many orders are not final, and how many jobs are pending or running in both queues.
pub async fn progress(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders.orders WHERE status NOT IN ('confirmed', 'failed', 'cancelled')",
    )
    .fetch_one(pool)
    .await?;
    let busy: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM orders.jobs WHERE status IN ('pending', 'running'))
              + (SELECT count(*) FROM payments.jobs WHERE status IN ('pending', 'running'))",
    )
    .fetch_one(pool)
    .await?;
    Ok((open, busy))
}

/// Reads the books from Postgres and stripe-sim's ledger at `sim`.
pub async fn take(pool: &PgPool, sim: &str) -> anyhow::Result<Snapshot> {
    let mut snap = Snapshot::default();
    for row in sqlx::query(
        "SELECT id, status, stock, total, failure_reason, payment_id, cart_id, payment_status
         FROM orders.orders",
    )
    .fetch_all(pool)
    .await?
    {
        let order = OrderRow {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            stock: row.try_get("stock")?,
            total: row.try_get("total")?,
            failure_reason: row.try_get("failure_reason")?,
            payment_id: row.try_get("payment_id")?,
            cart_id: row.try_get("cart_id")?,
            payment_status: row.try_get("payment_status")?,
        };
        snap.orders.insert(order.id.clone(), order);
    }
    for row in sqlx::query("SELECT order_id, sku, quantity::bigint AS q FROM orders.order_lines")
        .fetch_all(pool)
        .await?
    {
        snap.lines.push((
            row.try_get("order_id")?,
            row.try_get("sku")?,
            row.try_get("q")?,
        ));
    }
    for row in sqlx::query("SELECT sku, on_hand, reserved FROM orders.inventory")
        .fetch_all(pool)
        .await?
    {
        snap.inventory.insert(
            row.try_get("sku")?,
            (row.try_get("on_hand")?, row.try_get("reserved")?),
        );
    }
    // Keys are stored scoped to their cart (`{cart_id}/{key}`); the client sent the key alone.
    for row in sqlx::query(
        "SELECT substr(key, strpos(key, '/') + 1) AS key, order_id FROM orders.idempotency_keys",
    )
        .fetch_all(pool)
        .await?
    {
        snap.keys
            .insert(row.try_get("key")?, row.try_get("order_id")?);
    }
    for row in sqlx::query(
        "SELECT id, order_id, status, amount, amount_refunded, provider_id FROM payments.payments",
    )
    .fetch_all(pool)
    .await?
    {
        let payment = PaymentRow {
            id: row.try_get("id")?,
            order_id: row.try_get("order_id")?,
            status: row.try_get("status")?,
            amount: row.try_get("amount")?,
            amount_refunded: row.try_get("amount_refunded")?,
            provider_id: row.try_get("provider_id")?,
        };
        snap.payments.insert(payment.order_id.clone(), payment);
    }
    for row in sqlx::query("SELECT id, order_id FROM payments.events WHERE order_id IS NOT NULL")
        .fetch_all(pool)
        .await?
    {
        snap.event_orders
            .insert(row.try_get("id")?, row.try_get("order_id")?);
    }
    for queue in ["orders", "payments"] {
        let sql = if queue == "orders" {
            "SELECT id, kind, payload, last_error FROM orders.jobs WHERE status = 'dead' ORDER BY id"
        } else {
            "SELECT id, kind, payload, last_error FROM payments.jobs WHERE status = 'dead' ORDER BY id"
        };
        for row in sqlx::query(sql).fetch_all(pool).await? {
            snap.dead.push(DeadJob {
                queue,
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                payload: row.try_get("payload")?,
                last_error: row.try_get("last_error")?,
            });
        }
    }
    let ledger = super::http::send(
        sim,
        hyper::Method::GET,
        "/_sim/payment_intents",
        &[],
        super::http::Body::None,
    )
    .await
    .context("stripe-sim's ledger did not answer")?;
    for pi in ledger.json["data"].as_array().cloned().unwrap_or_default() {
        let order = pi["metadata"]["order_id"].as_str().unwrap_or("").to_owned();
        snap.intents.entry(order).or_default().push(pi);
    }
    Ok(snap)
}

impl Snapshot {
    /// The order a dead letter is about: an `ord_…` in its payload, or the order of the
    /// payment, event, intent or cart it names.
    pub fn order_of(&self, job: &DeadJob) -> Option<String> {
        let mut strings = Vec::new();
        collect_strings(&job.payload, &mut strings);
        for s in &strings {
            if s.starts_with("ord_") {
                return Some(s.clone());
            }
        }
        strings.iter().find_map(|s| {
            if s.starts_with("pay_") {
                self.payments
                    .values()
                    .find(|p| &p.id == s)
                    .map(|p| p.order_id.clone())
            } else if s.starts_with("crt_") {
                self.orders
                    .values()
                    .find(|o| &o.cart_id == s)
                    .map(|o| o.id.clone())
            } else if s.starts_with("evt_") {
                self.event_orders.get(s).cloned()
            } else if s.starts_with("pi_") {
                self.intents
                    .iter()
                    .find(|(_, pis)| pis.iter().any(|pi| pi["id"] == s.as_str()))
                    .map(|(order, _)| order.clone())
                    .filter(|o| !o.is_empty())
            } else {
                None
            }
        })
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dead(payload: Value) -> DeadJob {
        DeadJob {
            queue: "orders",
            id: 1,
            kind: "k".into(),
            payload,
            last_error: None,
        }
    }

    #[test]
    fn a_dead_letter_is_traced_to_its_order_through_what_it_names() {
        let mut snap = Snapshot::default();
        snap.orders.insert(
            "ord_1".into(),
            OrderRow {
                id: "ord_1".into(),
                status: "confirmed".into(),
                stock: "sold".into(),
                total: 100,
                failure_reason: None,
                payment_id: Some("pay_1".into()),
                cart_id: "crt_1".into(),
                payment_status: None,
            },
        );
        snap.payments.insert(
            "ord_1".into(),
            PaymentRow {
                id: "pay_1".into(),
                order_id: "ord_1".into(),
                status: "succeeded".into(),
                amount: 100,
                amount_refunded: 0,
                provider_id: Some("pi_1".into()),
            },
        );
        snap.event_orders.insert("evt_1".into(), "ord_1".into());
        snap.intents
            .insert("ord_1".into(), vec![json!({ "id": "pi_1" })]);

        for payload in [
            json!({ "order_id": "ord_1" }),
            json!({ "cart_id": "crt_1" }),
            json!({ "payment_id": "pay_1" }),
            json!({ "event": { "id": "evt_1" } }),
            json!(["pi_1"]),
        ] {
            assert_eq!(
                snap.order_of(&dead(payload.clone())).as_deref(),
                Some("ord_1"),
                "{payload}"
            );
        }
        assert_eq!(
            snap.order_of(&dead(json!({ "cart_id": "crt_other" }))),
            None
        );
    }
}
