//! The order state machine, in one place. Every status change goes through `can_move`;
//! the store applies it to a locked row, so a change applied twice, or raced by another
//! worker, happens once. The one move out of a final state is an operator's replay of a dead
//! job, which reopens an order the job abandoned (`Saga::reopen`).

use std::{fmt, str::FromStr};

use serde::Serialize;

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

    /// Whether `from → to` is a legal transition.
    pub fn can_move(from: Status, to: Status) -> bool {
        Self::predecessors(to).contains(&from)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name the database should never hold.
#[derive(Debug, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl TryFrom<String> for Status {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn final_states_never_move() {
        for from in [Confirmed, Failed, Cancelled] {
            for to in Status::ALL {
                assert!(!Status::can_move(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn the_happy_path_is_legal_and_skipping_is_not() {
        assert!(Status::can_move(Pending, Reserved));
        assert!(Status::can_move(Reserved, AwaitingPayment));
        assert!(Status::can_move(AwaitingPayment, Paid));
        assert!(Status::can_move(Paid, Confirmed));
        assert!(!Status::can_move(Pending, Paid));
        assert!(!Status::can_move(AwaitingPayment, Confirmed));
        assert!(!Status::can_move(Paid, Reserved));
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
    }
}
