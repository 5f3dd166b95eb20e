//! Orders, their lines and their stock. Status changes go through `transition` (a locked
//! order, the caller's transaction) or one of the one-statement steps (`reserve_pending`,
//! `confirm_paid_at_once`); either way the move is checked against the state machine and
//! recorded in `order_events`, and the event streams hear of it after the commit. Stock moves
//! are conditional on the order's `stock` column, so each happens at most once per order.

use common::{
    money::Money,
    queue::{NewJob, Queue},
};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row as _, postgres::PgRow};
use time::OffsetDateTime;

use crate::domain::{CartId, Holding, Mover, OrderId, PaymentId, Status};

/// NOTIFY channel carrying the id of every order whose status changed.
pub const EVENTS_CHANNEL: &str = "orders_order_events";

/// An order row.
#[derive(Debug, Clone)]
pub struct Order {
    /// Its id.
    pub id: OrderId,
    /// Where it is.
    pub status: Status,
    /// Where its stock is.
    pub stock: Holding,
    /// The cart it came from.
    pub cart_id: CartId,
    /// The customer's email.
    pub email: String,
    /// The sum of its lines.
    pub total: Money,
    /// Payment method to confirm server-side.
    pub payment_method: Option<String>,
    /// The payment at the payments service.
    pub payment_id: Option<PaymentId>,
    /// Its last known status.
    pub payment_status: Option<String>,
    /// For Stripe.js.
    pub client_secret: Option<String>,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<String>,
    /// When an unpaid order is cancelled.
    pub payment_due_at: Option<OffsetDateTime>,
    /// Accepted at.
    pub created_at: OffsetDateTime,
}

impl sqlx::FromRow<'_, PgRow> for Order {
    /// Parses the row into the order's types; a value none of them takes is a decode error
    /// naming its column (the database holds only what the store wrote).
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        fn parsed<T, E>(row: &PgRow, column: &str) -> Result<T, sqlx::Error>
        where
            T: TryFrom<String, Error = E>,
            E: std::error::Error + Send + Sync + 'static,
        {
            T::try_from(row.try_get::<String, _>(column)?).map_err(|e| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: Box::new(e),
            })
        }
        let currency: String = row.try_get("currency")?;
        let currency = currency
            .parse()
            .map_err(
                |e: common::money::InvalidCurrency| sqlx::Error::ColumnDecode {
                    index: "currency".to_owned(),
                    source: Box::new(e),
                },
            )?;
        Ok(Self {
            id: parsed(row, "id")?,
            status: parsed(row, "status")?,
            stock: parsed(row, "stock")?,
            cart_id: parsed(row, "cart_id")?,
            email: row.try_get("email")?,
            total: Money::new(row.try_get("total")?, currency),
            payment_method: row.try_get("payment_method")?,
            payment_id: row
                .try_get::<Option<String>, _>("payment_id")?
                .map(PaymentId::try_from)
                .transpose()
                .map_err(|e| sqlx::Error::ColumnDecode {
                    index: "payment_id".to_owned(),
                    source: Box::new(e),
                })?,
            payment_status: row.try_get("payment_status")?,
            client_secret: row.try_get("client_secret")?,
            failure_reason: row.try_get("failure_reason")?,
            payment_due_at: row.try_get("payment_due_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A line's price snapshot.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Line {
    /// The product.
    pub sku: String,
    /// Its name when ordered.
    pub name: String,
    /// Units.
    pub quantity: i32,
    /// Unit price when ordered.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
}

/// A move the state machine forbids; a bug in the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The transition is not in the state machine.
    #[error("illegal transition {from} -> {to}")]
    IllegalTransition {
        /// Current status.
        from: Status,
        /// Requested status.
        to: Status,
    },
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, status, stock, cart_id, email, currency, total, payment_method, payment_id, \
                       payment_status, client_secret, failure_reason, payment_due_at, created_at";

/// Places a new `pending` order with its lines and its `job`, claiming `key` for it with the
/// response to replay, in one statement (atomic by itself: one round trip, no transaction);
/// wake the queue after it.
/// Answers `false`, writing nothing, when the key is taken: a concurrent request with the
/// same key waits on the key's row until the first commits.
pub async fn place(
    pool: &PgPool,
    key: &Claim<'_>,
    order: &Order,
    lines: &[Line],
    queue: &Queue,
    job: &NewJob,
) -> Result<bool, sqlx::Error> {
    let enqueue = queue.enqueue_step("job", "placed", 17);
    let sql = format!(
        "WITH claimed AS (
             INSERT INTO orders.idempotency_keys (key, request, order_id, status_code, response, expires_at)
             VALUES ($1, $2, $3, 202, $4, now() + $5 * interval '1 second')
             ON CONFLICT (key) DO NOTHING RETURNING order_id),
         placed AS (
             INSERT INTO orders.orders (id, status, cart_id, email, currency, total, payment_method, created_at)
             SELECT order_id, 'pending', $6, $7, $8, $9, $10, $11 FROM claimed RETURNING id),
         line AS (
             INSERT INTO orders.order_lines (order_id, sku, name, quantity, unit_price, line_total)
             SELECT placed.id, l.* FROM placed,
                 UNNEST($12::text[], $13::text[], $14::int[], $15::bigint[], $16::bigint[]) AS l),
         event AS (
             INSERT INTO orders.order_events (order_id, to_status) SELECT id, 'pending' FROM placed),
         {}
         SELECT id FROM placed",
        enqueue.cte
    );
    let query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql))
        .bind(key.key)
        .bind(key.request)
        .bind(order.id.as_str())
        .bind(key.response)
        .bind(key.ttl.as_secs() as i64)
        .bind(order.cart_id.as_str())
        .bind(&order.email)
        .bind(order.total.currency.as_str())
        .bind(order.total.amount)
        .bind(&order.payment_method)
        .bind(order.created_at)
        .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.unit_price).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.line_total).collect::<Vec<_>>());
    let placed = enqueue.bind(query, job).fetch_optional(pool).await?;
    Ok(placed.is_some())
}

/// An `Idempotency-Key` claimed by a new order, with what to replay for it.
pub struct Claim<'a> {
    /// The key.
    pub key: &'a str,
    /// The canonical request body.
    pub request: &'a str,
    /// The 202 body.
    pub response: &'a serde_json::Value,
    /// How long the key is remembered.
    pub ttl: std::time::Duration,
}

/// The order, without locking it.
pub async fn find(pool: &PgPool, id: &OrderId) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders.orders WHERE id = $1"
    )))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
}

/// The order's lines, by sku.
pub async fn lines(pool: &PgPool, id: &OrderId) -> Result<Vec<Line>, sqlx::Error> {
    sqlx::query_as("SELECT sku, name, quantity, unit_price, line_total FROM orders.order_lines WHERE order_id = $1 ORDER BY sku")
        .bind(id.as_str())
        .fetch_all(pool)
        .await
}

/// The order, locked until the transaction ends: every saga step and event handler starts
/// here, so two of them never act on the same order at once.
pub async fn lock(conn: &mut PgConnection, id: &OrderId) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders.orders WHERE id = $1 FOR UPDATE"
    )))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await
}

/// Moves a locked order to `to`, if the state machine allows it.
pub async fn transition(
    conn: &mut PgConnection,
    order: &mut Order,
    to: Status,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    check_path(order.status, &[to])?;
    // One round trip: the status and its event row. The event streams learn of it after the
    // commit (`Saga::commit`).
    sqlx::query(
        "WITH moved AS (
             UPDATE orders.orders SET status = $2, failure_reason = coalesce(split_part($3, ':', 1), failure_reason),
                 updated_at = now()
             WHERE id = $1 RETURNING id)
         INSERT INTO orders.order_events (order_id, from_status, to_status, reason)
         SELECT id, $4, $2, $3 FROM moved",
    )
    .bind(order.id.as_str())
    .bind(to.as_str())
    .bind(reason)
    .bind(order.status.as_str())
    .execute(&mut *conn)
    .await?;
    moved(order.id.as_str(), order.status, &[to], reason);
    order.status = to;
    if let Some(reason) = reason {
        order.failure_reason = Some(public_reason(reason).to_owned());
    }
    Ok(())
}

/// The public part of a failure reason: its code (`payment_declined`, `processing_failed`,
/// …), never the detail after the colon (an upstream's error chain), which stays in the
/// order's events and the logs. The SQL of `transition` takes the same part.
pub fn public_reason(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason)
}

/// `COLUMNS` of the orders table named `alias`, for a `RETURNING` beside other relations.
fn qualified(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `path` is a walk of the saga's through the state machine from `from`.
fn check_path(from: Status, path: &[Status]) -> Result<(), StoreError> {
    let mut at = from;
    for &to in path {
        check(at, to, Mover::Saga)?;
        at = to;
    }
    Ok(())
}

/// The state machine's verdict on one move by `by`, as the store's error.
fn check(from: Status, to: Status, by: Mover) -> Result<(), StoreError> {
    if Status::can_move(from, to, by) {
        Ok(())
    } else {
        Err(StoreError::IllegalTransition { from, to })
    }
}

/// Reopens a locked order abandoned by a dead job, for its replay: back to `pending`, holding
/// no stock and no failure reason, with the move in `order_events` — if the state machine
/// lets a replay move it (only a `failed` order).
pub async fn reopen(conn: &mut PgConnection, order: &mut Order) -> Result<(), StoreError> {
    check(order.status, Status::Pending, Mover::Replay)?;
    sqlx::query(
        "WITH moved AS (
             UPDATE orders.orders SET status = 'pending', stock = 'none', failure_reason = NULL, updated_at = now()
             WHERE id = $1 RETURNING id)
         INSERT INTO orders.order_events (order_id, from_status, to_status, reason)
         SELECT id, $2, 'pending', 'replayed' FROM moved",
    )
    .bind(order.id.as_str())
    .bind(order.status.as_str())
    .execute(&mut *conn)
    .await?;
    moved(
        order.id.as_str(),
        order.status,
        &[Status::Pending],
        Some("replayed"),
    );
    order.status = Status::Pending;
    order.stock = Holding::None;
    order.failure_reason = None;
    Ok(())
}

/// Counts and logs the moves of a statement that took `path` from `from`.
fn moved(order: &str, from: Status, path: &[Status], reason: Option<&str>) {
    let mut at = from;
    for &to in path {
        metrics::counter!("order_transitions_total", "to" => to.as_str()).increment(1);
        tracing::info!(order, from = %at, to = %to, reason, "order moved");
        at = to;
    }
}

/// The first step of a `pending` order, in one statement (atomic by itself: no transaction):
/// it locks the order, then its inventory rows in sku order (so concurrent reservations never
/// deadlock), checks every line against the newest counts, and either holds the stock for
/// every line and moves the order to `reserved`, or holds none and fails it `out_of_stock`;
/// the move is recorded in `order_events`. Answers the moved order, or `None` when the order
/// is not (or no longer) `pending`. A best-selling sku's row is every checkout's: it stays
/// locked for this one statement and its commit.
pub async fn reserve_pending(pool: &PgPool, id: &OrderId) -> Result<Option<Order>, StoreError> {
    const SHORT: &str = "out_of_stock";
    check_path(Status::Pending, &[Status::Reserved])?;
    check_path(Status::Pending, &[Status::Failed])?;
    // A pending order holds no stock (`reopen` hands back a failed order's only without any).
    let sql = format!(
        "WITH o AS (
             SELECT id FROM orders.orders WHERE id = $1 AND status = 'pending' AND stock = 'none' FOR UPDATE),
         wanted AS (
             SELECT l.sku, l.quantity, i.on_hand - i.reserved >= l.quantity AS enough
             FROM o JOIN orders.order_lines l ON l.order_id = o.id JOIN orders.inventory i ON i.sku = l.sku
             ORDER BY l.sku FOR UPDATE OF i),
         verdict AS (
             SELECT o.id, count(w.sku) > 0 AND coalesce(bool_and(w.enough), false)
                    AND count(w.sku) = (SELECT count(*) FROM orders.order_lines WHERE order_id = o.id) AS ok
             FROM o LEFT JOIN wanted w ON true GROUP BY o.id),
         held AS (
             UPDATE orders.inventory i SET reserved = i.reserved + w.quantity, updated_at = now()
             FROM wanted w, verdict v WHERE v.ok AND i.sku = w.sku RETURNING i.sku),
         moved AS (
             UPDATE orders.orders o
             SET status = CASE WHEN v.ok THEN 'reserved' ELSE 'failed' END,
                 stock = CASE WHEN v.ok THEN 'reserved' ELSE o.stock END,
                 failure_reason = CASE WHEN v.ok THEN o.failure_reason ELSE $2 END,
                 updated_at = now()
             FROM verdict v WHERE o.id = v.id
             RETURNING {returning}),
         logged AS (
             INSERT INTO orders.order_events (order_id, from_status, to_status, reason)
             SELECT id, 'pending', status, CASE WHEN status = 'failed' THEN $2 END FROM moved)
         SELECT {COLUMNS} FROM moved",
        returning = qualified("o"),
    );
    let order: Option<Order> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(SHORT)
        .fetch_optional(pool)
        .await?;
    if let Some(order) = &order {
        let reason = (order.status == Status::Failed).then_some(SHORT);
        moved(order.id.as_str(), Status::Pending, &[order.status], reason);
    }
    Ok(order)
}

/// What payments answered about an order's payment.
#[derive(Debug, Clone, Copy)]
pub struct PaymentAnswer<'a> {
    /// Its id.
    pub id: &'a PaymentId,
    /// Its status.
    pub status: &'a str,
    /// For Stripe.js.
    pub client_secret: Option<&'a str>,
}

/// The path of a `reserved` order whose payment was answered `succeeded` at once (confirmed
/// server-side): through `awaiting_payment` and `paid` to `confirmed`.
const PAID_AT_ONCE: [Status; 3] = [Status::AwaitingPayment, Status::Paid, Status::Confirmed];

/// Confirms a `reserved` order whose payment succeeded at once, in one statement (atomic by
/// itself): it locks the order, records the payment, sells the stock, moves the order to
/// `confirmed` recording each step of the way in `order_events`, and queues `follow_up` (the
/// cart's clearing). Answers the confirmed order, or `None` when the order is not (or no
/// longer) `reserved`; then the caller takes the general way (`lock`, `transition`).
pub async fn confirm_paid_at_once(
    pool: &PgPool,
    id: &OrderId,
    payment: PaymentAnswer<'_>,
    queue: &Queue,
    follow_up: &NewJob,
) -> Result<Option<Order>, StoreError> {
    check_path(Status::Reserved, &PAID_AT_ONCE)?;
    let (from, to): (Vec<&str>, Vec<&str>) = std::iter::once(Status::Reserved)
        .chain(PAID_AT_ONCE)
        .zip(PAID_AT_ONCE)
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .unzip();
    let step = queue.enqueue_step("job", "moved", 7);
    let sql = format!(
        "WITH o AS (
             SELECT id FROM orders.orders WHERE id = $1 AND status = 'reserved' AND stock = 'reserved' FOR UPDATE),
         sold AS (
             UPDATE orders.inventory i SET reserved = i.reserved - l.quantity, on_hand = i.on_hand - l.quantity,
                 updated_at = now()
             FROM o JOIN orders.order_lines l ON l.order_id = o.id WHERE l.sku = i.sku RETURNING i.sku),
         moved AS (
             UPDATE orders.orders SET status = 'confirmed', stock = 'sold', payment_id = $2, payment_status = $3,
                 client_secret = coalesce($4, client_secret), updated_at = now()
             FROM o WHERE orders.id = o.id
             RETURNING {returning}),
         logged AS (
             INSERT INTO orders.order_events (order_id, from_status, to_status)
             SELECT moved.id, step.from_status, step.to_status
             FROM moved, unnest($5::text[], $6::text[]) WITH ORDINALITY AS step(from_status, to_status, n)
             ORDER BY step.n),
         {job}
         SELECT {COLUMNS} FROM moved",
        returning = qualified("orders"),
        job = step.cte,
    );
    let query = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(payment.id.as_str())
        .bind(payment.status)
        .bind(payment.client_secret)
        .bind(from)
        .bind(to);
    let order: Option<Order> = step.bind(query, follow_up).fetch_optional(pool).await?;
    if order.is_some() {
        moved(id.as_str(), Status::Reserved, &PAID_AT_ONCE, None);
    }
    Ok(order)
}

/// Hands reserved stock back; does nothing if the order holds none.
pub async fn release(conn: &mut PgConnection, order: &mut Order) -> Result<(), sqlx::Error> {
    if order.stock != Holding::Reserved {
        return Ok(());
    }
    sqlx::query(
        "UPDATE orders.inventory i SET reserved = i.reserved - l.quantity, updated_at = now()
         FROM orders.order_lines l WHERE l.order_id = $1 AND l.sku = i.sku",
    )
    .bind(order.id.as_str())
    .execute(&mut *conn)
    .await?;
    metrics::counter!("order_compensations_total", "step" => "release_stock").increment(1);
    set_stock(conn, order, Holding::Released).await
}

/// Turns the reservation into a sale: `on_hand` and `reserved` both drop, and the order is
/// marked sold, in one statement. Like `reserve`, it locks the inventory rows until the commit:
/// callers run it last.
pub async fn sell(conn: &mut PgConnection, order: &mut Order) -> Result<(), sqlx::Error> {
    if order.stock != Holding::Reserved {
        return Ok(());
    }
    sqlx::query(
        "WITH sold AS (
             UPDATE orders.inventory i SET reserved = i.reserved - l.quantity, on_hand = i.on_hand - l.quantity,
                 updated_at = now()
             FROM orders.order_lines l WHERE l.order_id = $1 AND l.sku = i.sku RETURNING i.sku)
         UPDATE orders.orders SET stock = 'sold', updated_at = now() WHERE id = $1",
    )
    .bind(order.id.as_str())
    .execute(&mut *conn)
    .await?;
    order.stock = Holding::Sold;
    Ok(())
}

async fn set_stock(
    conn: &mut PgConnection,
    order: &mut Order,
    stock: Holding,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders.orders SET stock = $2, updated_at = now() WHERE id = $1")
        .bind(order.id.as_str())
        .bind(stock.as_str())
        .execute(conn)
        .await?;
    order.stock = stock;
    Ok(())
}

/// Records what the payments service said about the order's payment.
pub async fn record_payment(
    conn: &mut PgConnection,
    order: &mut Order,
    payment_id: &PaymentId,
    payment_status: &str,
    client_secret: Option<&str>,
    due_at: Option<OffsetDateTime>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders.orders SET payment_id = $2, payment_status = $3, client_secret = coalesce($4, client_secret),
             payment_due_at = coalesce($5, payment_due_at), updated_at = now()
         WHERE id = $1",
    )
    .bind(order.id.as_str())
    .bind(payment_id.as_str())
    .bind(payment_status)
    .bind(client_secret)
    .bind(due_at)
    .execute(conn)
    .await?;
    order.payment_id = Some(payment_id.clone());
    order.payment_status = Some(payment_status.to_owned());
    if client_secret.is_some() {
        order.client_secret = client_secret.map(str::to_owned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_statement_steps_walk_the_state_machine() {
        assert!(check_path(Status::Pending, &[Status::Reserved]).is_ok());
        assert!(check_path(Status::Pending, &[Status::Failed]).is_ok());
        assert!(check_path(Status::Reserved, &PAID_AT_ONCE).is_ok());
        // From anywhere else the same path names the first illegal step.
        assert!(matches!(
            check_path(Status::Pending, &PAID_AT_ONCE),
            Err(StoreError::IllegalTransition {
                from: Status::Pending,
                to: Status::AwaitingPayment
            })
        ));
        assert!(matches!(
            check_path(Status::AwaitingPayment, &PAID_AT_ONCE),
            Err(StoreError::IllegalTransition {
                from: Status::AwaitingPayment,
                to: Status::AwaitingPayment
            })
        ));
    }
}
