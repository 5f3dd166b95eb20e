//! The payment state machine, in one place. Stripe tells us about a payment through API
//! answers, webhooks (duplicated, late, out of order) and the reconciler; every one of them
//! goes through [`transition`], so a payment only ever moves forward and a stale report never
//! moves it back.

use serde::Serialize;

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a payment method (Stripe.js confirms in the browser).
    RequiresPaymentMethod,
    /// Has a payment method, not yet confirmed.
    RequiresConfirmation,
    /// Waiting for the customer (3-D Secure).
    RequiresAction,
    /// On its way; the outcome comes later.
    Processing,
    /// Paid.
    Succeeded,
    /// Declined or failed.
    Failed,
    /// Canceled at the provider.
    Canceled,
    /// Paid, and part of it given back.
    PartiallyRefunded,
    /// Paid, and all of it given back.
    Refunded,
    /// Paid, and the customer's bank opened a dispute.
    Disputed,
}

/// The lines a payment's life can take; moving from one to another is a contradiction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    Open,
    Paid,
    Failed,
    Canceled,
}

/// What a reported status means for a payment in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The report is news: move to it.
    Move,
    /// The payment is already there.
    Same,
    /// The report is behind the payment (a late or reordered event): ignore it.
    Stale,
    /// The report contradicts a settled outcome (paid vs failed): ask the provider.
    Conflict,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 10] = [
        Status::RequiresPaymentMethod,
        Status::RequiresConfirmation,
        Status::RequiresAction,
        Status::Processing,
        Status::Succeeded,
        Status::Failed,
        Status::Canceled,
        Status::PartiallyRefunded,
        Status::Refunded,
        Status::Disputed,
    ];

    /// The status's wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::RequiresConfirmation => "requires_confirmation",
            Status::RequiresAction => "requires_action",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::PartiallyRefunded => "partially_refunded",
            Status::Refunded => "refunded",
            Status::Disputed => "disputed",
        }
    }

    /// How far along its line the payment is: the order of the state machine.
    fn rank(self) -> u8 {
        match self {
            Status::RequiresPaymentMethod => 0,
            Status::RequiresConfirmation => 1,
            Status::RequiresAction => 2,
            Status::Processing => 3,
            Status::Succeeded | Status::Failed | Status::Canceled => 4,
            Status::PartiallyRefunded => 5,
            Status::Refunded => 6,
            Status::Disputed => 7,
        }
    }

    fn branch(self) -> Branch {
        match self {
            Status::RequiresPaymentMethod
            | Status::RequiresConfirmation
            | Status::RequiresAction
            | Status::Processing => Branch::Open,
            Status::Succeeded | Status::PartiallyRefunded | Status::Refunded | Status::Disputed => {
                Branch::Paid
            }
            Status::Failed => Branch::Failed,
            Status::Canceled => Branch::Canceled,
        }
    }

    /// Whether the payment still waits for an outcome.
    pub fn is_open(self) -> bool {
        self.branch() == Branch::Open
    }

    /// Whether the payment took money (some of it may have been given back since).
    pub fn is_paid(self) -> bool {
        self.branch() == Branch::Paid
    }

    /// Whether orders is told when a payment reaches this status: the outcomes and what
    /// happens to money already taken. Intermediate states are not sent; orders waits.
    pub fn notifies_orders(self) -> bool {
        !self.is_open()
    }

    /// The statuses a payment may still move out of, for queries.
    pub fn open() -> impl Iterator<Item = Status> {
        Self::ALL.into_iter().filter(|s| s.is_open())
    }
}

/// What `reported` means for a payment that is `current`.
pub fn transition(current: Status, reported: Status) -> Transition {
    let (from, to) = (current.branch(), reported.branch());
    if current == reported {
        Transition::Same
    } else if from != Branch::Open && to != Branch::Open && from != to {
        Transition::Conflict
    } else if reported.rank() > current.rank() {
        Transition::Move
    } else {
        Transition::Stale
    }
}

common::named!(Status, "payment status");

#[cfg(test)]
mod tests {
    use super::{Status::*, Transition::*, *};

    #[test]
    fn open_payments_move_forward_to_any_outcome() {
        assert_eq!(transition(RequiresPaymentMethod, RequiresAction), Move);
        assert_eq!(transition(RequiresAction, Processing), Move);
        for outcome in [Succeeded, Failed, Canceled] {
            assert_eq!(transition(RequiresAction, outcome), Move);
            assert_eq!(transition(Processing, outcome), Move);
        }
    }

    #[test]
    fn late_reports_never_move_a_payment_back() {
        assert_eq!(transition(Succeeded, RequiresAction), Stale);
        assert_eq!(transition(Processing, RequiresAction), Stale);
        assert_eq!(transition(Refunded, PartiallyRefunded), Stale);
        assert_eq!(transition(Refunded, Succeeded), Stale);
        assert_eq!(transition(Failed, RequiresPaymentMethod), Stale);
        assert_eq!(transition(Disputed, Refunded), Stale);
    }

    #[test]
    fn paid_payments_can_be_refunded_and_disputed() {
        assert_eq!(transition(Succeeded, PartiallyRefunded), Move);
        assert_eq!(transition(PartiallyRefunded, Refunded), Move);
        assert_eq!(transition(Succeeded, Refunded), Move);
        assert_eq!(transition(Refunded, Disputed), Move);
    }

    #[test]
    fn contradicting_outcomes_are_conflicts() {
        assert_eq!(transition(Succeeded, Failed), Conflict);
        assert_eq!(transition(Failed, Succeeded), Conflict);
        assert_eq!(transition(Canceled, Refunded), Conflict);
        assert_eq!(transition(Failed, Canceled), Conflict);
    }

    #[test]
    fn every_pair_has_exactly_one_answer_and_no_cycles() {
        for a in Status::ALL {
            assert_eq!(transition(a, a), Same);
            for b in Status::ALL {
                if transition(a, b) == Move {
                    assert_ne!(transition(b, a), Move, "{a} <-> {b}");
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
        }
        assert!("paid".parse::<Status>().is_err());
    }
}
