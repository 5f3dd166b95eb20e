//! Stock holds: an unpaid order may not hoard stock. A new checkout of a cart supersedes the
//! cart's earlier unpaid orders (their stock and payments released); a customer may have only
//! so many orders waiting for payment; and stock is held for at most the reservation hold,
//! which may be shorter than the payment timeout. After the hold the order still waits for
//! its payment, holding nothing; a payment that then succeeds takes the stock again, or, if
//! it sold meanwhile, the order fails `out_of_stock` and its payment is refunded.

use std::time::Duration;

use common::queue::{JobError, NewJob};
use sqlx::PgConnection;

use crate::{
    domain::{Holding, OrderId, Status},
    saga::Saga,
    store::{
        holds,
        orders::{self, Order, StoreError},
    },
};

/// Releases an unpaid order's stock when its reservation hold ends.
pub const RELEASE_HOLD: &str = "release_hold";

/// The hold rules.
#[derive(Debug, Clone, Copy)]
pub struct HoldPolicy {
    /// How long an unpaid order holds its stock; at or past the payment timeout, until it.
    pub reservation_hold: Duration,
    /// Orders one customer (by email) may have waiting for payment; 0: no cap.
    pub max_awaiting_per_customer: u32,
}

fn db(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(format!("database: {e}"))
}

impl Saga {
    /// Applies the hold rules to order `order_id`, if pending, before it reserves: its cart's
    /// earlier open orders are cancelled `superseded`, and the order fails
    /// `too_many_open_orders` when its customer has too many waiting for payment.
    pub(crate) async fn before_reserve(&self, order_id: &OrderId) -> Result<(), JobError> {
        let Some((earlier, awaiting)) = holds::before_reserve(&self.pool, order_id)
            .await
            .map_err(db)?
        else {
            return Ok(());
        };
        let cap = self.holds.max_awaiting_per_customer;
        let over_cap = cap > 0 && awaiting >= i64::from(cap);
        if earlier.is_empty() && !over_cap {
            return Ok(());
        }
        let mut tx = common::db::begin(&self.pool).await.map_err(db)?;
        let mut moved = Vec::new();
        // Newer before older, always: two checkouts of one cart cannot wait on each other.
        let Some(mut this) = orders::lock(&mut tx, order_id).await.map_err(db)? else {
            return Ok(());
        };
        if this.status != Status::Pending {
            return Ok(());
        }
        for id in earlier.iter().rev() {
            if let Some(mut old) = orders::lock(&mut tx, id).await.map_err(db)?
                && matches!(
                    old.status,
                    Status::Pending | Status::Reserved | Status::AwaitingPayment
                )
            {
                self.end_unpaid(&mut tx, &mut old, Status::Cancelled, "superseded")
                    .await
                    .map_err(db)?;
                metrics::counter!("orders_superseded_total").increment(1);
                moved.push(old.id);
            }
        }
        if over_cap {
            self.end_unpaid(&mut tx, &mut this, Status::Failed, "too_many_open_orders")
                .await
                .map_err(db)?;
            metrics::counter!("orders_refused_total", "reason" => "too_many_open_orders")
                .increment(1);
            moved.push(this.id.clone());
        }
        tx.commit().await.map_err(db)?;
        for id in &moved {
            self.changes.send(id.as_str());
        }
        Ok(())
    }

    /// The job that releases order `order_id`'s stock when its hold ends, if the hold is
    /// shorter than the payment timeout.
    pub(crate) fn release_hold_job(&self, order_id: &OrderId) -> Option<NewJob> {
        let hold = self.holds.reservation_hold;
        (hold < self.payment_timeout).then(|| {
            NewJob::new(RELEASE_HOLD, serde_json::json!({ "order_id": order_id }))
                .dedup(format!("hold:{order_id}"))
                .attempts(self.max_attempts)
                .delay(hold)
        })
    }

    /// Ends the reservation hold of an order still waiting for its payment: its stock goes
    /// back on sale; the order keeps waiting.
    pub async fn release_hold(&self, order_id: &OrderId) -> Result<(), JobError> {
        let mut tx = common::db::begin(&self.pool).await.map_err(db)?;
        let Some(mut order) = orders::lock(&mut tx, order_id).await.map_err(db)? else {
            return Ok(());
        };
        if matches!(order.status, Status::Reserved | Status::AwaitingPayment)
            && order.stock == Holding::Reserved
        {
            orders::release(&mut tx, &mut order).await.map_err(db)?;
            metrics::counter!("orders_holds_released_total").increment(1);
            tracing::info!(
                order = %order_id,
                "reservation hold ended; stock back on sale"
            );
        }
        tx.commit().await.map_err(db)
    }

    /// Makes sure the paid, locked `order` holds its stock before the sale: an order whose
    /// hold ended takes it again. Answers `false` (the order ended `out_of_stock`, its
    /// payment to be refunded) when the stock sold meanwhile.
    pub(crate) async fn hold_for_sale(
        &self,
        conn: &mut PgConnection,
        order: &mut Order,
    ) -> Result<bool, StoreError> {
        if order.stock != Holding::Released {
            return Ok(true);
        }
        if holds::reserve_again(conn, order).await? {
            return Ok(true);
        }
        tracing::warn!(order = %order.id, "paid after its hold ended and the stock sold meanwhile; refunding");
        self.end_unpaid(conn, order, Status::Failed, "out_of_stock")
            .await?;
        Ok(false)
    }
}
