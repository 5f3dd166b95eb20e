//! Routing a Stripe webhook. The event names the order it is about in
//! `data.object.metadata.order_id`; an order the orders service created (`ord_…`) must reach
//! payments whatever the rollout, anything else follows the payments flag. The body is read
//! whole for that (it is small and capped), then forwarded byte for byte so the signature
//! still verifies.

use serde_json::Value;

use crate::{
    flags::snapshot::Snapshot,
    group::Group,
    routing::{self, Side},
};

/// Where a webhook event with this body goes.
pub fn decide(snapshot: &Snapshot, body: &[u8]) -> Side {
    let event: Option<Value> = serde_json::from_slice(body).ok();
    let text = |pointer: &str| {
        event
            .as_ref()
            .and_then(|e| e.pointer(pointer))
            .and_then(Value::as_str)
    };
    let order_id = text("/data/object/metadata/order_id");
    // The same order's events go the same way; without one, the event's object or id.
    let key = order_id
        .or_else(|| text("/data/object/id"))
        .or_else(|| text("/id"))
        .unwrap_or_default();
    routing::decide_by_key(snapshot, Group::Payments, order_id, key)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(order_id: Option<&str>) -> Vec<u8> {
        let metadata = order_id.map_or(json!({}), |id| json!({ "order_id": id }));
        json!({
            "id": "evt_1",
            "type": "payment_intent.succeeded",
            "data": { "object": { "id": "pi_1", "metadata": metadata } }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn events_about_new_orders_go_to_payments_whatever_the_flag() {
        let off = Snapshot::uniform(false, 0);
        assert_eq!(decide(&off, &event(Some("ord_abc"))), Side::New);
    }

    #[test]
    fn other_events_follow_the_flag() {
        for body in [event(Some("1234")), event(None), b"not json".to_vec()] {
            assert_eq!(decide(&Snapshot::uniform(true, 0), &body), Side::Legacy);
            assert_eq!(decide(&Snapshot::uniform(true, 100), &body), Side::New);
            assert_eq!(decide(&Snapshot::uniform(false, 100), &body), Side::Legacy);
        }
    }
}
