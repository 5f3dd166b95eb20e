//! The money invariants: at most one successful charge per order, captured minus refunded
//! at stripe-sim equal to the order's total if it confirmed and to nothing otherwise, no
//! payable intent left behind a closed order, our payment rows agreeing with stripe-sim,
//! and every dead letter compensated. Stripe is the source of truth for money, so each
//! check reads stripe-sim's ledger first and our rows second.

use serde_json::Value;

use super::{
    invariants::{Check, Evidence, is_final, v},
    snapshot::OrderRow,
};

fn succeeded_charges(intents: &[Value]) -> usize {
    intents
        .iter()
        .flat_map(|pi| pi["charges"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["status"] == "succeeded")
        .count()
}

/// The invariant of the same name in the report.
pub fn one_charge(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let none = Vec::new();
    let mut confirmed = 0;
    for o in e.snap.orders.values() {
        let intents = e.snap.intents.get(&o.id).unwrap_or(&none);
        let n = succeeded_charges(intents);
        if n > 1 {
            out.push(v(Some(&o.id), format!("{n} successful charges")));
        }
        if o.status == "confirmed" {
            confirmed += 1;
            if n == 0 {
                out.push(v(
                    Some(&o.id),
                    "confirmed without a successful charge".into(),
                ));
            }
        }
    }
    Check {
        name: "at most one successful charge per order; every confirmed order has one",
        summary: format!("{confirmed} confirmed orders"),
        violations: out,
    }
}

/// `Σ(amount_received − amount_refunded)` over an order's intents.
pub fn net(intents: &[Value]) -> i64 {
    intents
        .iter()
        .map(|pi| {
            pi["amount_received"].as_i64().unwrap_or(0)
                - pi["amount_refunded"].as_i64().unwrap_or(0)
        })
        .sum()
}

/// The money rule for one order, or why it breaks.
pub fn money_rule(order: &OrderRow, intents: &[Value]) -> Result<(), String> {
    let net = net(intents);
    let expected = if order.status == "confirmed" {
        order.total
    } else {
        0
    };
    if net == expected {
        Ok(())
    } else {
        Err(format!(
            "{} order of {}: stripe-sim holds {} (captured − refunded), expected {}",
            order.status,
            cents(order.total),
            cents(net),
            cents(expected)
        ))
    }
}

/// Minor units as dollars.
pub fn cents(amount: i64) -> String {
    format!("${}.{:02}", amount / 100, amount.rem_euclid(100))
}

/// The invariant of the same name in the report.
pub fn money(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let (mut kept, mut kept_orders, mut short) = (0, 0, 0);
    let none = Vec::new();
    for o in e.snap.orders.values() {
        let intents = e.snap.intents.get(&o.id).unwrap_or(&none);
        if let Err(why) = money_rule(o, intents) {
            let n = net(intents);
            if o.status != "confirmed" {
                kept += n;
                kept_orders += 1;
            } else {
                short += 1;
            }
            out.push(v(Some(&o.id), why));
        }
    }
    for (order, intents) in &e.snap.intents {
        if !e.snap.orders.contains_key(order) && net(intents) != 0 {
            out.push(v(
                Some(order),
                format!(
                    "stripe-sim holds {} for an order we do not have",
                    cents(net(intents))
                ),
            ));
        }
    }
    Check {
        name: "for every order, captured − refunded at stripe-sim is its total if confirmed, else 0",
        summary: format!(
            "{} orders; {} kept for {kept_orders} orders that did not confirm; {short} confirmed orders not fully paid",
            e.snap.orders.len(),
            cents(kept)
        ),
        violations: out,
    }
}

const PAYABLE: [&str; 3] = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
];

/// The invariant of the same name in the report.
pub fn payable(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let mut closed = 0;
    for o in e
        .snap
        .orders
        .values()
        .filter(|o| o.status == "failed" || o.status == "cancelled")
    {
        closed += 1;
        for pi in e.snap.intents.get(&o.id).into_iter().flatten() {
            if PAYABLE.iter().any(|s| pi["status"] == *s) {
                out.push(v(
                    Some(&o.id),
                    format!("{} order; {} is {}", o.status, pi["id"], pi["status"]),
                ));
            }
        }
    }
    Check {
        name: "no closed (failed/cancelled) order has a payable PaymentIntent",
        summary: format!("{closed} closed orders"),
        violations: out,
    }
}

/// Paid, cancelled or open, as money goes.
fn class(status: &str) -> &'static str {
    match status {
        "succeeded" | "partially_refunded" | "refunded" | "disputed" => "paid",
        "canceled" => "canceled",
        _ => "open",
    }
}

/// The invariant of the same name in the report.
pub fn rows_agree(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let mut compared = 0;
    for (order, intents) in &e.snap.intents {
        let row = e.snap.payments.get(order);
        for pi in intents {
            let id = pi["id"].as_str().unwrap_or_default();
            let Some(row) = row.filter(|r| r.provider_id.as_deref() == Some(id)) else {
                out.push(v(
                    Some(order),
                    format!(
                        "no payment row of ours holds {id} ({}, {} received)",
                        pi["status"],
                        cents(pi["amount_received"].as_i64().unwrap_or(0))
                    ),
                ));
                continue;
            };
            compared += 1;
            let theirs = pi["status"].as_str().unwrap_or_default();
            let refunded = pi["amount_refunded"].as_i64().unwrap_or(0);
            if class(&row.status) != class(theirs) {
                out.push(v(
                    Some(order),
                    format!(
                        "{} is {} here, {theirs} at stripe-sim ({id})",
                        row.id, row.status
                    ),
                ));
            } else if row.amount_refunded != refunded {
                out.push(v(
                    Some(order),
                    format!(
                        "{} has {} refunded here, {} at stripe-sim",
                        row.id,
                        cents(row.amount_refunded),
                        cents(refunded)
                    ),
                ));
            }
        }
    }
    for row in e.snap.payments.values() {
        let known = row.provider_id.as_ref().is_some_and(|id| {
            e.snap
                .intents
                .values()
                .flatten()
                .any(|pi| pi["id"] == id.as_str())
        });
        if row.provider_id.is_some() && !known {
            out.push(v(
                Some(&row.order_id),
                format!(
                    "{} names {:?}, which stripe-sim does not have",
                    row.id, row.provider_id
                ),
            ));
        } else if row.provider_id.is_none() && class(&row.status) == "paid" {
            out.push(v(
                Some(&row.order_id),
                format!("{} is {} without a PaymentIntent", row.id, row.status),
            ));
        }
    }
    Check {
        name: "payment rows (status, amount_refunded, provider_id) agree with stripe-sim",
        summary: format!(
            "{} payment rows, {compared} compared with their intents",
            e.snap.payments.len()
        ),
        violations: out,
    }
}

/// The invariant of the same name in the report.
pub fn dead_letters(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let none = Vec::new();
    for job in &e.snap.dead {
        let label = format!(
            "{}.jobs #{} {} (last error: {})",
            job.queue,
            job.id,
            job.kind,
            job.last_error.as_deref().unwrap_or("none")
        );
        let Some(order) = e.snap.order_of(job) else {
            out.push(v(
                None,
                format!("{label} names no order we can find: {}", job.payload),
            ));
            continue;
        };
        match e.snap.orders.get(&order) {
            None => out.push(v(Some(&order), format!("{label}: no such order"))),
            Some(o) if !is_final(&o.status) => {
                out.push(v(Some(&order), format!("{label}: order left {}", o.status)))
            }
            Some(o) => {
                if let Err(why) = money_rule(o, e.snap.intents.get(&order).unwrap_or(&none)) {
                    out.push(v(Some(&order), format!("{label}: {why}")));
                }
            }
        }
    }
    let orders = e.snap.dead.iter().filter(|j| j.queue == "orders").count();
    Check {
        name: "every dead letter was compensated (its order final, its money rule holding)",
        summary: format!(
            "{} dead letters ({orders} orders, {} payments)",
            e.snap.dead.len(),
            e.snap.dead.len() - orders
        ),
        violations: out,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order(status: &str, total: i64) -> OrderRow {
        OrderRow {
            id: "ord_1".into(),
            status: status.into(),
            stock: "none".into(),
            total,
            failure_reason: None,
            payment_id: None,
            cart_id: "crt_1".into(),
            payment_status: None,
        }
    }

    fn intent(status: &str, received: i64, refunded: i64) -> Value {
        json!({ "id": "pi_1", "status": status, "amount_received": received, "amount_refunded": refunded })
    }

    #[test]
    fn a_confirmed_order_must_hold_its_total_and_no_more() {
        assert!(money_rule(&order("confirmed", 1500), &[intent("succeeded", 1500, 0)]).is_ok());
        assert!(money_rule(&order("confirmed", 1500), &[]).is_err());
        assert!(
            money_rule(
                &order("confirmed", 1500),
                &[intent("succeeded", 1500, 0), intent("succeeded", 1500, 0)]
            )
            .is_err()
        );
    }

    #[test]
    fn an_order_that_did_not_confirm_may_keep_nothing() {
        assert!(
            money_rule(
                &order("failed", 1500),
                &[intent("requires_payment_method", 0, 0)]
            )
            .is_ok()
        );
        assert!(
            money_rule(
                &order("cancelled", 1500),
                &[intent("succeeded", 1500, 1500)]
            )
            .is_ok()
        );
        let kept = money_rule(&order("cancelled", 1500), &[intent("succeeded", 1500, 500)]);
        assert_eq!(
            kept.unwrap_err(),
            "cancelled order of $15.00: stripe-sim holds $10.00 (captured − refunded), expected $0.00"
        );
    }

    #[test]
    fn statuses_compare_by_what_they_mean_for_money() {
        assert_eq!(class("refunded"), class("succeeded"));
        assert_eq!(class("failed"), class("requires_payment_method"));
        assert_ne!(class("failed"), class("succeeded"));
        assert_ne!(class("failed"), class("canceled"));
    }
}
