//! The run's report: checkouts per flow and outcome, the fault timeline, and every invariant
//! with its verdict; a violation about an order shows that order's rows and stripe-sim's
//! objects, so it can be read without opening a database.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::Value;

use super::{
    faults::Happened,
    http::Sample,
    invariants::Check,
    money::cents,
    snapshot::Snapshot,
    traffic::{CheckedCart, Checkout},
};

/// Violations shown per invariant on the terminal (the report file has them all).
const SHOWN: usize = 5;

/// Counts per flow and outcome.
pub fn flows(
    out: &mut String,
    checkouts: &[Checkout],
    samples: &[Sample],
    kept: &[CheckedCart],
    snap: &Snapshot,
) {
    let mut table: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for c in checkouts {
        let outcome = match &c.order {
            Some(id) => snap
                .orders
                .get(id)
                .map_or("missing".to_owned(), |o| o.status.clone()),
            None => match c.answers.last() {
                Some((status, _)) => format!("refused {status}"),
                None if c.note.is_some() => "no cart".to_owned(),
                None => "no answer".to_owned(),
            },
        };
        *table
            .entry(format!("{:?}", c.flow))
            .or_default()
            .entry(outcome)
            .or_default() += 1;
    }
    for s in samples.iter().filter(|s| s.malformed) {
        let outcome = match s.status {
            Some(status) if s.problem => format!("{status} problem+json"),
            Some(status) => format!("{status}"),
            None => "no answer".to_owned(),
        };
        *table
            .entry("Malformed".to_owned())
            .or_default()
            .entry(outcome)
            .or_default() += 1;
    }
    *table
        .entry("KeptCart".to_owned())
        .or_default()
        .entry("kept".to_owned())
        .or_default() += kept.len();
    let total: usize = checkouts.iter().filter(|c| c.order.is_some()).count();
    let _ = writeln!(
        out,
        "\ncheckouts: {} submitted, {total} accepted\n",
        checkouts.len()
    );
    for (flow, outcomes) in &table {
        let n: usize = outcomes.values().sum();
        let parts: Vec<String> = outcomes.iter().map(|(o, c)| format!("{o} {c}")).collect();
        let _ = writeln!(out, "  {flow:<18} {n:>5}  {}", parts.join(", "));
    }
}

/// The fault timeline, in seconds after the load started.
pub fn timeline(out: &mut String, happened: &[Happened], load_start: f64) {
    let _ = writeln!(out, "\nfault timeline (seconds after the load started):\n");
    let mut happened: Vec<&Happened> = happened.iter().collect();
    happened.sort_by(|a, b| a.start.total_cmp(&b.start));
    for h in happened {
        let _ = writeln!(
            out,
            "  {:>6.1} – {:>6.1}  {}{}",
            h.start - load_start,
            h.end - load_start,
            h.name,
            h.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        );
    }
}

/// Every invariant, each broken one with its violations counted by the flow of their orders;
/// answers how many were broken.
pub fn invariants(
    out: &mut String,
    full: &mut String,
    checks: &[Check],
    snap: &Snapshot,
    checkouts: &[Checkout],
) -> usize {
    let flow_of: BTreeMap<&str, String> = checkouts
        .iter()
        .filter_map(|c| Some((c.order.as_deref()?, format!("{:?}", c.flow))))
        .collect();
    let _ = writeln!(out, "\ninvariants:\n");
    let mut failed = 0;
    for check in checks {
        let verdict = if check.violations.is_empty() {
            "PASS"
        } else {
            failed += 1;
            "FAIL"
        };
        let line = format!(
            "  {verdict}  {}\n        {}{}",
            check.name,
            check.summary,
            if check.violations.is_empty() {
                String::new()
            } else {
                format!("; {} violations", check.violations.len())
            }
        );
        let _ = writeln!(out, "{line}");
        let _ = writeln!(full, "{line}");
        if !check.violations.is_empty() {
            let mut by_flow: BTreeMap<&str, usize> = BTreeMap::new();
            for violation in &check.violations {
                let flow = violation
                    .order
                    .as_deref()
                    .and_then(|o| flow_of.get(o))
                    .map_or("(no flow)", String::as_str);
                *by_flow.entry(flow).or_default() += 1;
            }
            let parts: Vec<String> = by_flow.iter().map(|(f, n)| format!("{f} {n}")).collect();
            let line = format!("        by flow: {}", parts.join(", "));
            let _ = writeln!(out, "{line}");
            let _ = writeln!(full, "{line}");
        }
        for (i, violation) in check.violations.iter().enumerate() {
            let mut text = format!("          - {}", violation.what);
            if let Some(order) = &violation.order {
                text = format!("          - {order}: {}", violation.what);
                text.push_str(&order_detail(snap, order));
            }
            if i < SHOWN {
                let _ = writeln!(out, "{text}");
            }
            let _ = writeln!(full, "{text}");
        }
        if check.violations.len() > SHOWN {
            let _ = writeln!(
                out,
                "          … {} more in the report file",
                check.violations.len() - SHOWN
            );
        }
    }
    failed
}

/// An order's rows and stripe-sim's objects, indented under a violation.
fn order_detail(snap: &Snapshot, order: &str) -> String {
    let mut text = String::new();
    match snap.orders.get(order) {
        Some(o) => {
            let _ = write!(
                text,
                "\n              order: {} total {} stock {} failure_reason {:?} payment {:?} ({:?})",
                o.status,
                cents(o.total),
                o.stock,
                o.failure_reason,
                o.payment_id,
                o.payment_status
            );
        }
        None => text.push_str("\n              order: no row"),
    }
    match snap.payments.get(order) {
        Some(p) => {
            let _ = write!(
                text,
                "\n              payment: {} {} amount {} refunded {} intent {:?}",
                p.id,
                p.status,
                cents(p.amount),
                cents(p.amount_refunded),
                p.provider_id
            );
        }
        None => text.push_str("\n              payment: no row"),
    }
    for pi in snap.intents.get(order).into_iter().flatten() {
        let _ = write!(text, "\n              stripe-sim: {}", intent_line(pi));
    }
    text
}

fn intent_line(pi: &Value) -> String {
    let money = |key: &str| cents(pi[key].as_i64().unwrap_or(0));
    let charges: Vec<String> = pi["charges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} {}{}",
                c["id"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                cents(c["amount"].as_i64().unwrap_or(0)),
                match c["amount_refunded"].as_i64() {
                    Some(r) if r > 0 => format!(" refunded {}", cents(r)),
                    _ => String::new(),
                }
            )
        })
        .collect();
    format!(
        "{} {} amount {} received {} refunded {} charges [{}]",
        pi["id"].as_str().unwrap_or("?"),
        pi["status"].as_str().unwrap_or("?"),
        money("amount"),
        money("amount_received"),
        money("amount_refunded"),
        charges.join(", ")
    )
}
