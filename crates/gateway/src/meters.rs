//! The per-request metrics, each labelled handle registered once and then kept: looking a
//! labelled metric up by name on every request costs more than all the gateway's own
//! bookkeeping for that request.

use std::{sync::OnceLock, time::Duration};

use axum::http::StatusCode;
use metrics::{Counter, Histogram};

use crate::{group::Group, routing::Side};

/// The three groups and "none" (legacy-only paths), times both sides.
const SLOTS: usize = (Group::ALL.len() + 1) * 2;
/// Status codes 100 to 599.
const STATUSES: usize = 500;

/// `gateway_requests_total` and `gateway_request_duration_seconds`, by group and side (and
/// status for the counter).
pub struct RequestMeters {
    durations: [OnceLock<Histogram>; SLOTS],
    totals: Box<[OnceLock<Counter>]>,
}

impl Default for RequestMeters {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestMeters {
    /// Handles are registered on first use.
    pub fn new() -> Self {
        Self {
            durations: std::array::from_fn(|_| OnceLock::new()),
            totals: (0..SLOTS * STATUSES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one answered request and its duration.
    pub fn record(&self, group: Option<Group>, side: Side, status: StatusCode, took: Duration) {
        let slot = group.map_or(Group::ALL.len(), Group::index) * 2 + side as usize;
        let (group, side) = (group.map_or("none", Group::name), side.label());
        self.durations[slot]
            .get_or_init(|| {
                metrics::histogram!("gateway_request_duration_seconds", "group" => group, "side" => side)
            })
            .record(took.as_secs_f64());
        let code = status.as_u16();
        let total = || {
            metrics::counter!(
                "gateway_requests_total",
                "group" => group,
                "side" => side,
                "status" => code.to_string()
            )
        };
        match usize::from(code).checked_sub(100) {
            Some(i) if i < STATUSES => self.totals[slot * STATUSES + i]
                .get_or_init(total)
                .increment(1),
            // Codes above 599 are legal but never seen: no slot, looked up each time.
            _ => total().increment(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_side_and_status_has_its_own_slot() {
        let meters = RequestMeters::new();
        for group in [
            None,
            Some(Group::Cart),
            Some(Group::Orders),
            Some(Group::Payments),
        ] {
            for side in [Side::New, Side::Legacy] {
                for status in [100, 200, 599, 999] {
                    let status = StatusCode::from_u16(status).unwrap();
                    meters.record(group, side, status, Duration::from_millis(1));
                }
            }
        }
        assert_eq!(
            meters
                .durations
                .iter()
                .filter(|d| d.get().is_some())
                .count(),
            SLOTS
        );
        assert_eq!(
            meters.totals.iter().filter(|t| t.get().is_some()).count(),
            SLOTS * 3
        );
    }
}
