//! The Stripe objects the simulator keeps, and their JSON as Stripe renders it.
//!
//! Each type holds only what the simulator needs to decide things; `to_json` fills in every
//! other field Stripe sends (mostly `null`) so typed clients such as async-stripe, which
//! require the full field set, deserialize them.

mod charge;
mod dispute;
mod event;
mod payment_intent;
mod refund;

pub use charge::{Charge, ChargeStatus};
pub use dispute::Dispute;
pub use event::{Event, EventType, RequestRef};
pub use payment_intent::{CaptureMethod, PaymentIntent, Status};
pub use refund::Refund;
