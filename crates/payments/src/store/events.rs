//! Stripe events seen, by id: a redelivery finds the row and only counts up `deliveries`,
//! so an event is processed once however often Stripe sends it. A row keeps what the event
//! says about its PaymentIntent, for the job that applies it and for operators.

use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::{
    events::Effect,
    ledger::Report,
    state::Status,
    store::payments::{self, Payment},
};

/// One verified event to record.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// `evt_…`.
    pub id: String,
    /// `payment_intent.succeeded`, …
    pub kind: String,
    /// Stripe's `created`, Unix seconds.
    pub created: i64,
    /// What it says.
    pub effect: Effect,
    /// Copies of the event in this batch.
    pub copies: i32,
}

/// Records `events` (ids unique within the slice, sorted so concurrent batches lock rows in
/// the same order); answers the ids that were new.
pub async fn record(
    conn: &mut PgConnection,
    events: &[Incoming],
) -> Result<Vec<String>, sqlx::Error> {
    let column = |f: fn(&Incoming) -> Option<&str>| events.iter().map(f).collect::<Vec<_>>();
    let ids = column(|e| Some(e.id.as_str()));
    let kinds = column(|e| Some(e.kind.as_str()));
    let intents = column(|e| Some(e.effect.intent_id.as_str()));
    let orders = column(|e| e.effect.order_id.as_deref());
    let statuses = column(|e| Some(e.effect.report.status.as_str()));
    let reasons = column(|e| e.effect.report.failure_reason.as_deref());
    let currencies = column(|e| e.effect.currency.as_deref());
    let amounts: Vec<Option<i64>> = events.iter().map(|e| e.effect.amount).collect();
    let created: Vec<i64> = events.iter().map(|e| e.created).collect();
    let refunded: Vec<Option<i64>> = events
        .iter()
        .map(|e| e.effect.report.amount_refunded)
        .collect();
    let copies: Vec<i32> = events.iter().map(|e| e.copies).collect();
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "INSERT INTO payments.events
             (id, type, created, intent_id, order_id, status, failure_reason, amount_refunded,
              deliveries, amount, currency)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::bigint[], $9::int[], $10::bigint[],
                              $11::text[])
         ON CONFLICT (id) DO UPDATE SET deliveries = payments.events.deliveries + excluded.deliveries
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&created)
    .bind(&intents)
    .bind(&orders)
    .bind(&statuses)
    .bind(&reasons)
    .bind(&refunded)
    .bind(&copies)
    .bind(&amounts)
    .bind(&currencies)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, inserted)| inserted.then_some(id))
        .collect())
}

#[derive(sqlx::FromRow)]
struct Row {
    intent_id: String,
    order_id: Option<String>,
    #[sqlx(try_from = "String")]
    status: Status,
    failure_reason: Option<String>,
    amount_refunded: Option<i64>,
    amount: Option<i64>,
    currency: Option<String>,
}

impl Row {
    fn effect(self, id: &str) -> Effect {
        Effect {
            intent_id: self.intent_id,
            order_id: self.order_id,
            amount: self.amount,
            currency: self.currency,
            report: Report {
                status: self.status,
                failure_reason: self.failure_reason,
                amount_refunded: self.amount_refunded,
                event_id: Some(id.to_owned()),
                answered: false,
                authoritative: false,
            },
        }
    }
}

/// An event with its payment.
#[derive(sqlx::FromRow)]
struct Joined {
    event_id: String,
    intent_id: String,
    event_order_id: Option<String>,
    #[sqlx(try_from = "String")]
    event_status: Status,
    event_failure_reason: Option<String>,
    event_amount_refunded: Option<i64>,
    event_amount: Option<i64>,
    event_currency: Option<String>,
    #[sqlx(flatten)]
    payment: Payment,
}

/// The events of `ids` whose payment exists, each with that payment locked for a change;
/// the others (a payment not committed yet, a PaymentIntent that is not ours) are left out.
/// Payments are locked in id order, so concurrent batches cannot deadlock; a payment's events
/// come in the order of `ids` (the order they arrived).
pub async fn lock_with_payments(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<(String, Effect, Payment)>, sqlx::Error> {
    let sql = format!(
        "SELECT e.id AS event_id, e.intent_id, e.order_id AS event_order_id, e.status AS event_status,
                e.failure_reason AS event_failure_reason, e.amount_refunded AS event_amount_refunded,
                e.amount AS event_amount, e.currency AS event_currency, {columns}
         FROM payments.events e JOIN payments.payments p ON p.provider_id = e.intent_id
         WHERE e.id = ANY($1)
         ORDER BY p.id, array_position($1, e.id)
         FOR UPDATE OF p",
        columns = payments::columns("p"),
    );
    let rows: Vec<Joined> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|j| {
            let effect = Row {
                intent_id: j.intent_id,
                order_id: j.event_order_id,
                status: j.event_status,
                failure_reason: j.event_failure_reason,
                amount_refunded: j.event_amount_refunded,
                amount: j.event_amount,
                currency: j.event_currency,
            }
            .effect(&j.event_id);
            (j.event_id, effect, j.payment)
        })
        .collect())
}

/// What event `id` says.
pub async fn find(pool: &PgPool, id: &str) -> Result<Option<Effect>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT intent_id, order_id, status, failure_reason, amount_refunded, amount, currency
         FROM payments.events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.effect(id)))
}

/// Notes how processing the event ended.
pub async fn processed(
    conn: &mut PgConnection,
    id: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments.events SET processed_at = now(), outcome = $2 WHERE id = $1")
        .bind(id)
        .bind(outcome)
        .execute(conn)
        .await?;
    Ok(())
}

/// Notes how processing each of `done` (event id, outcome) ended, in one statement.
pub async fn processed_all(
    conn: &mut PgConnection,
    done: &[(String, &str)],
) -> Result<(), sqlx::Error> {
    let (ids, outcomes): (Vec<&str>, Vec<&str>) = done
        .iter()
        .map(|(id, outcome)| (id.as_str(), *outcome))
        .unzip();
    sqlx::query(
        "UPDATE payments.events e SET processed_at = now(), outcome = d.outcome
         FROM unnest($1::text[], $2::text[]) AS d(id, outcome) WHERE e.id = d.id",
    )
    .bind(ids)
    .bind(outcomes)
    .execute(conn)
    .await?;
    Ok(())
}
