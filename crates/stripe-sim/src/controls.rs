//! Fault and delivery knobs, changed at run time through `POST /_sim/controls`.
//!
//! They make the simulator misbehave the ways Stripe does under load: slow answers, 500s,
//! lost responses, and webhooks that arrive late, twice, out of order or never.

use serde::{Deserialize, Serialize};

/// Most copies of one event the simulator will send.
const MAX_COPIES: u32 = 10;
/// Longest latency or delay accepted, in milliseconds.
const MAX_DELAY_MS: u64 = 600_000;

/// Current fault and delivery settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Controls {
    /// Added before an API call runs (inside its idempotency window, so a concurrent retry
    /// with the same key sees 409); replays and injected failures answer at once.
    pub latency_ms: u64,
    /// Share (0–1) of API calls answered with a 500 `api_error` before anything happens; the
    /// idempotency key stays free, so a retry can succeed.
    pub failure_share: f64,
    /// Share (0–1) of API calls that run to completion (objects created, events sent, the
    /// result kept under the idempotency key) but answer 500, as if the response were lost.
    pub lost_response_share: f64,
    /// Copies of each event delivered to each endpoint (1 = no duplicates).
    pub webhook_copies: u32,
    /// Events are first attempted no earlier than this long after they happen.
    pub webhook_delay_ms: u64,
    /// When 2 or more, events are held until this many are waiting and then delivered newest
    /// first; `POST /_sim/webhooks/flush` releases a partial window.
    pub webhook_reorder_window: u32,
    /// Share (0–1) of events never delivered (recorded as `dropped`).
    pub webhook_drop_share: f64,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            failure_share: 0.0,
            lost_response_share: 0.0,
            webhook_copies: 1,
            webhook_delay_ms: 0,
            webhook_reorder_window: 0,
            webhook_drop_share: 0.0,
        }
    }
}

/// A partial change of [`Controls`]; absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlsUpdate {
    /// See [`Controls::latency_ms`].
    pub latency_ms: Option<u64>,
    /// See [`Controls::failure_share`].
    pub failure_share: Option<f64>,
    /// See [`Controls::lost_response_share`].
    pub lost_response_share: Option<f64>,
    /// See [`Controls::webhook_copies`].
    pub webhook_copies: Option<u32>,
    /// See [`Controls::webhook_delay_ms`].
    pub webhook_delay_ms: Option<u64>,
    /// See [`Controls::webhook_reorder_window`].
    pub webhook_reorder_window: Option<u32>,
    /// See [`Controls::webhook_drop_share`].
    pub webhook_drop_share: Option<f64>,
}

impl Controls {
    /// These controls with `update` applied, or why the update is invalid.
    pub fn apply(&self, update: &ControlsUpdate) -> Result<Self, String> {
        let share = |name: &str, value: Option<f64>, current: f64| match value {
            Some(v) if !(0.0..=1.0).contains(&v) => Err(format!("{name} must be within 0.0..=1.0")),
            Some(v) => Ok(v),
            None => Ok(current),
        };
        let millis = |name: &str, value: Option<u64>, current: u64| match value {
            Some(v) if v > MAX_DELAY_MS => Err(format!("{name} must be at most {MAX_DELAY_MS}")),
            Some(v) => Ok(v),
            None => Ok(current),
        };
        let webhook_copies = match update.webhook_copies {
            Some(n) if !(1..=MAX_COPIES).contains(&n) => {
                return Err(format!("webhook_copies must be within 1..={MAX_COPIES}"));
            }
            Some(n) => n,
            None => self.webhook_copies,
        };
        Ok(Self {
            latency_ms: millis("latency_ms", update.latency_ms, self.latency_ms)?,
            failure_share: share("failure_share", update.failure_share, self.failure_share)?,
            lost_response_share: share(
                "lost_response_share",
                update.lost_response_share,
                self.lost_response_share,
            )?,
            webhook_copies,
            webhook_delay_ms: millis(
                "webhook_delay_ms",
                update.webhook_delay_ms,
                self.webhook_delay_ms,
            )?,
            webhook_reorder_window: update
                .webhook_reorder_window
                .unwrap_or(self.webhook_reorder_window),
            webhook_drop_share: share(
                "webhook_drop_share",
                update.webhook_drop_share,
                self.webhook_drop_share,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_changes_only_the_fields_it_names() {
        let update = ControlsUpdate {
            failure_share: Some(0.5),
            ..ControlsUpdate::default()
        };
        let next = Controls::default().apply(&update).unwrap();
        assert_eq!(next.failure_share, 0.5);
        assert_eq!(next.webhook_copies, 1);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let bad_share = ControlsUpdate {
            failure_share: Some(1.5),
            ..ControlsUpdate::default()
        };
        assert!(Controls::default().apply(&bad_share).is_err());
        let no_copies = ControlsUpdate {
            webhook_copies: Some(0),
            ..ControlsUpdate::default()
        };
        assert!(Controls::default().apply(&no_copies).is_err());
    }
}
