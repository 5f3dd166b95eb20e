//! The promises a checkout platform is trusted for, checked against the books after the
//! run settles: nothing lost, duplicated or oversold, and every cent accounted for at
//! stripe-sim (those checks are in `money`). A check never bends to make a run pass: each
//! violation names its order so the report can show that order's rows and stripe-sim's
//! objects.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    http::Sample,
    snapshot::Snapshot,
    traffic::{CheckedCart, Checkout},
};

/// A 5xx this long after an outage healed still counts as inside it (clients reconnecting).
const GRACE_SECS: f64 = 5.0;

/// Everything the checks look at.
pub struct Evidence<'a> {
    /// The books.
    pub snap: &'a Snapshot,
    /// Every checkout as its shopper saw it.
    pub checkouts: &'a [Checkout],
    /// Every exchange with the platform.
    pub samples: &'a [Sample],
    /// Outages as `(start, healed)` on the run clock.
    pub outages: Vec<(f64, f64)>,
    /// On-hand stock of each SKU when the load began.
    pub initial_stock: &'a BTreeMap<String, i64>,
    /// Kept carts and their lines at the end (`None`: the cart is gone).
    pub kept_carts: &'a [CheckedCart],
    /// When Redis was killed.
    pub redis_kills: Vec<f64>,
    /// `(process, log line)` of every panic.
    pub panics: Vec<(String, String)>,
    /// `(process, run-clock second, status)` of every exit nobody asked for.
    pub exits: Vec<(String, f64, String)>,
}

/// One broken promise.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The order it concerns, if any.
    pub order: Option<String>,
    /// What is wrong.
    pub what: String,
}

/// One invariant's verdict.
pub struct Check {
    /// The invariant.
    pub name: &'static str,
    /// What was looked at, in figures.
    pub summary: String,
    /// Everything that broke it.
    pub violations: Vec<Violation>,
}

/// A violation about `order`.
pub fn v(order: Option<&str>, what: String) -> Violation {
    Violation {
        order: order.map(str::to_owned),
        what,
    }
}

/// Whether an order status is final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "confirmed" | "failed" | "cancelled")
}

/// Every invariant, in report order.
pub fn check_all(e: &Evidence<'_>) -> Vec<Check> {
    vec![
        final_states(e),
        idempotency(e),
        stock(e),
        super::money::one_charge(e),
        http(e),
        super::money::money(e),
        super::money::payable(e),
        super::money::rows_agree(e),
        super::money::dead_letters(e),
        processes(e),
        carts(e),
    ]
}

fn final_states(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let accepted: Vec<&str> = e
        .checkouts
        .iter()
        .filter_map(|c| c.order.as_deref())
        .collect();
    for id in &accepted {
        match e.snap.orders.get(*id) {
            None => out.push(v(
                Some(id),
                "accepted (2xx) but no such order in the database".into(),
            )),
            Some(o) if !is_final(&o.status) => {
                out.push(v(
                    Some(id),
                    format!("still {} after the settle period", o.status),
                ));
            }
            Some(_) => {}
        }
    }
    let accepted_set: BTreeSet<&str> = accepted.iter().copied().collect();
    for o in e.snap.orders.values() {
        if !is_final(&o.status) && !accepted_set.contains(o.id.as_str()) {
            out.push(v(
                Some(&o.id),
                format!("still {} after the settle period", o.status),
            ));
        }
    }
    Check {
        name: "every accepted order reaches a final state",
        summary: format!(
            "{} accepted, {} orders in the database",
            accepted.len(),
            e.snap.orders.len()
        ),
        violations: out,
    }
}

fn idempotency(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let mut duplicates = 0;
    for c in e.checkouts {
        let ids: BTreeSet<&str> = c
            .answers
            .iter()
            .filter(|(s, _)| (200..300).contains(s))
            .filter_map(|(_, id)| id.as_deref())
            .collect();
        duplicates += c
            .answers
            .iter()
            .filter(|(s, _)| (200..300).contains(s))
            .count()
            .saturating_sub(1);
        if ids.len() > 1 {
            out.push(v(
                c.order.as_deref(),
                format!("key {} answered orders {ids:?}", c.key),
            ));
        }
        for finding in &c.findings {
            out.push(v(c.order.as_deref(), format!("key {}: {finding}", c.key)));
        }
        if let Some(order) = &c.order
            && e.snap.keys.get(&c.key) != Some(order)
        {
            out.push(v(
                Some(order),
                format!("key {} is stored for {:?}", c.key, e.snap.keys.get(&c.key)),
            ));
        }
    }
    let mut per_order: BTreeMap<&str, usize> = BTreeMap::new();
    for order in e.snap.keys.values() {
        *per_order.entry(order.as_str()).or_default() += 1;
    }
    for o in e.snap.orders.keys() {
        match per_order.get(o.as_str()) {
            Some(1) => {}
            n => out.push(v(
                Some(o),
                format!("{} idempotency keys hold this order", n.unwrap_or(&0)),
            )),
        }
    }
    let reuses = e
        .checkouts
        .iter()
        .filter(|c| c.flow == super::flows::Flow::KeyReuse && c.order.is_some())
        .count();
    Check {
        name: "one order per Idempotency-Key; replays answer the same order; reuse with another body is 422",
        summary: format!(
            "{} keys, {duplicates} duplicate submissions answered, {reuses} reuses with another body",
            e.checkouts.len()
        ),
        violations: out,
    }
}

fn stock(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    let mut held: BTreeMap<&str, i64> = BTreeMap::new();
    for (order, sku, quantity) in &e.snap.lines {
        let Some(o) = e.snap.orders.get(order) else {
            continue;
        };
        if o.status == "confirmed" {
            *sold.entry(sku).or_default() += quantity;
        }
        if o.stock == "reserved" {
            *held.entry(sku).or_default() += quantity;
        }
    }
    for o in e.snap.orders.values() {
        let expected = match o.status.as_str() {
            "confirmed" => &["sold"][..],
            "failed" | "cancelled" => &["released", "none"][..],
            _ => continue,
        };
        if !expected.contains(&o.stock.as_str()) {
            out.push(v(
                Some(&o.id),
                format!("{} order with stock {}", o.status, o.stock),
            ));
        }
    }
    let mut figures = Vec::new();
    for (sku, initial) in e.initial_stock {
        let Some((on_hand, reserved)) = e.snap.inventory.get(sku) else {
            continue;
        };
        let sold = sold.get(sku.as_str()).copied().unwrap_or(0);
        let held = held.get(sku.as_str()).copied().unwrap_or(0);
        if sold > *initial {
            out.push(v(
                None,
                format!("{sku}: oversold, {sold} confirmed of {initial}"),
            ));
        }
        if *on_hand != initial - sold || *reserved != held {
            out.push(v(None, format!(
                "{sku}: on_hand {on_hand}, reserved {reserved}; the orders say on_hand {} (started {initial}, {sold} sold), reserved {held}",
                initial - sold
            )));
        }
        figures.push(format!(
            "{sku} {sold}/{initial} sold, on_hand {on_hand}, reserved {reserved}"
        ));
    }
    Check {
        name: "no oversell; stock counts match the orders",
        summary: figures
            .into_iter()
            .filter(|f| f.starts_with("HOT"))
            .collect::<Vec<_>>()
            .join("; "),
        violations: out,
    }
}

fn inside_outage(e: &Evidence<'_>, s: &Sample) -> bool {
    e.outages
        .iter()
        .any(|(start, end)| s.done >= *start && s.sent <= end + GRACE_SECS)
}

fn http(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let (mut malformed, mut server_errors, mut tolerated) = (0, 0, 0);
    for s in e.samples {
        let failed = s.status.is_none_or(|status| status >= 500);
        if s.malformed {
            malformed += 1;
            match s.status {
                Some(400..=499) if s.problem => {}
                Some(status @ 200..=499) => out.push(v(
                    None,
                    format!(
                        "malformed {} answered {status}{} at {:.1} s",
                        s.what,
                        if s.problem {
                            ""
                        } else {
                            " without problem+json"
                        },
                        s.sent
                    ),
                )),
                _ => {}
            }
        }
        if failed {
            server_errors += 1;
            if inside_outage(e, s) {
                tolerated += 1;
            } else {
                out.push(v(
                    None,
                    format!(
                        "{} answered {} at {:.1}–{:.1} s, outside every fault window",
                        s.what,
                        s.status.map_or("nothing".into(), |c| c.to_string()),
                        s.sent,
                        s.done
                    ),
                ));
            }
        }
    }
    Check {
        name: "4xx problem+json for bad input; 5xx only inside fault windows",
        summary: format!(
            "{} requests, {malformed} malformed; {server_errors} 5xx or unanswered, {tolerated} of them inside {} outages",
            e.samples.len(),
            e.outages.len()
        ),
        violations: out,
    }
}

fn processes(e: &Evidence<'_>) -> Check {
    let mut out: Vec<Violation> = e
        .panics
        .iter()
        .map(|(p, line)| v(None, format!("{p} panicked: {line}")))
        .collect();
    out.extend(e.exits.iter().map(|(p, at, status)| {
        v(
            None,
            format!("{p} exited by itself at {at:.1} s ({status})"),
        )
    }));
    Check {
        name: "no panic in any service's log; no unexpected exit",
        summary: format!(
            "{} panics, {} unexpected exits",
            e.panics.len(),
            e.exits.len()
        ),
        violations: out,
    }
}

fn carts(e: &Evidence<'_>) -> Check {
    let mut out = Vec::new();
    let first_kill = e.redis_kills.iter().copied().fold(f64::INFINITY, f64::min);
    let before = e
        .kept_carts
        .iter()
        .filter(|(c, _)| c.acked < first_kill)
        .count();
    for (cart, now) in e.kept_carts {
        match now {
            None => out.push(v(
                None,
                format!(
                    "cart {} (acknowledged at {:.1} s) is gone",
                    cart.id, cart.acked
                ),
            )),
            Some(lines) if *lines != cart.lines => out.push(v(
                None,
                format!(
                    "cart {} was acknowledged with {:?} at {:.1} s, holds {lines:?}",
                    cart.id, cart.lines, cart.acked
                ),
            )),
            Some(_) => {}
        }
    }
    Check {
        name: "every acknowledged cart write is still there (Redis killed and restarted)",
        summary: format!(
            "{} kept carts, {before} acknowledged before the first Redis kill",
            e.kept_carts.len()
        ),
        violations: out,
    }
}
