//! The order state machine, in one place. Every status change goes through `can_move`;
//! the store applies it to a locked row, so a change applied twice, or raced by another
//! worker, happens once. The one move out of a final state is an operator's replay of a dead
//! job, which reopens an order the job abandoned (`Saga::reopen`): it is a move of its own
//! kind ([`Mover::Replay`]), checked by the same function.

use serde::Serialize;

/// Who moves an order: the saga's steps, or an operator replaying the dead job that gave up
/// on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    /// Checkout, payment events, timeouts and compensation: forward, or to an end.
    Saga,
    /// A dead job's replay: a `failed` order back to `pending`, and nothing else.
    Replay,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted; the saga has not started.
    Pending,
    /// Stock is held for every line.
    Reserved,
    /// A payment exists; waiting for its outcome.
    AwaitingPayment,
    /// The payment succeeded.
    Paid,
    /// Paid and the stock is sold: done.
    Confirmed,
    /// Could not be completed (out of stock, declined, processing failed).
    Failed,
    /// Given up on (payment timeout, payment canceled).
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Reserved,
        Status::AwaitingPayment,
        Status::Paid,
        Status::Confirmed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The status's wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Reserved => "reserved",
            Status::AwaitingPayment => "awaiting_payment",
            Status::Paid => "paid",
            Status::Confirmed => "confirmed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more happens to the order.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Confirmed | Status::Failed | Status::Cancelled)
    }

    /// Whether the order can still be paid: the only time its PaymentIntent's client secret
    /// is of use to the shopper, and so the only time the order shows it.
    pub fn awaits_payment(self) -> bool {
        matches!(
            self,
            Status::Pending | Status::Reserved | Status::AwaitingPayment
        )
    }

    /// The statuses an order may be in to move to `to`.
    pub fn predecessors(to: Status) -> &'static [Status] {
        use Status::*;
        match to {
            Pending => &[],
            Reserved => &[Pending],
            AwaitingPayment => &[Reserved],
            // A payment can succeed before the order has recorded it was created.
            Paid => &[Reserved, AwaitingPayment],
            Confirmed => &[Paid],
            Failed | Cancelled => &[Pending, Reserved, AwaitingPayment, Paid],
        }
    }

    /// Whether `by` may move an order `from → to`: the one transition check.
    pub fn can_move(from: Status, to: Status, by: Mover) -> bool {
        match by {
            Mover::Saga => Self::predecessors(to).contains(&from),
            Mover::Replay => from == Status::Failed && to == Status::Pending,
        }
    }
}

common::named!(Status, "order status");

#[cfg(test)]
mod tests {
    use super::{
        Mover,
        Status::{self, *},
    };

    fn can_move(from: Status, to: Status) -> bool {
        Status::can_move(from, to, Mover::Saga)
    }

    #[test]
    fn final_states_never_move() {
        for from in [Confirmed, Failed, Cancelled] {
            for to in Status::ALL {
                assert!(!can_move(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_replay_only_reopens_a_failed_order() {
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    Status::can_move(from, to, Mover::Replay),
                    (from, to) == (Failed, Pending),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn the_happy_path_is_legal_and_skipping_is_not() {
        assert!(can_move(Pending, Reserved));
        assert!(can_move(Reserved, AwaitingPayment));
        assert!(can_move(AwaitingPayment, Paid));
        assert!(can_move(Paid, Confirmed));
        assert!(!can_move(Pending, Paid));
        assert!(!can_move(AwaitingPayment, Confirmed));
        assert!(!can_move(Paid, Reserved));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
    }
}
