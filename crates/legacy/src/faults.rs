//! The monolith's faults: a delay before every business request and a share of them failed
//! with a 503. They are set at start-up (`LEGACY_LATENCY_MS`, `LEGACY_ERROR_RATE`) and changed
//! at run time (`PUT /__legacy/faults`). Failures are spread evenly (every fourth request at
//! 0.25) rather than drawn at random, so a test or a demo sees exactly the share it asked for.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use common::{Problem, problem::ProblemType};
use serde::{Deserialize, Serialize};

/// The longest delay accepted: longer than any caller waits, short enough to end.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// Failures are counted in parts per million.
const PARTS: u64 = 1_000_000;

/// The faults, as settings and as the control endpoint's body.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultSettings {
    /// Added before every business request.
    pub latency: Duration,
    /// The share of business requests answered 503, 0 to 1.
    pub error_rate: f64,
}

impl FaultSettings {
    /// `Err((field, reason))` when a value is out of range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.latency > MAX_LATENCY {
            return Err((
                "latency_ms",
                format!("must be at most {}", MAX_LATENCY.as_millis()),
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(("error_rate", "must be between 0 and 1".to_owned()));
        }
        Ok(())
    }
}

/// `GET` and `PUT /__legacy/faults` body. A field left out is no fault.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsBody {
    /// Milliseconds added before every business request.
    #[serde(default)]
    pub latency_ms: u64,
    /// The share of business requests answered 503, 0 to 1.
    #[serde(default)]
    pub error_rate: f64,
}

impl From<FaultSettings> for FaultsBody {
    fn from(s: FaultSettings) -> Self {
        Self {
            latency_ms: s.latency.as_millis() as u64,
            error_rate: s.error_rate,
        }
    }
}

impl From<&FaultsBody> for FaultSettings {
    fn from(b: &FaultsBody) -> Self {
        Self {
            latency: Duration::from_millis(b.latency_ms),
            error_rate: b.error_rate,
        }
    }
}

/// The faults in force, shared by every request; changing them takes no lock.
#[derive(Debug, Clone)]
pub struct Faults(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    latency_ms: AtomicU64,
    /// The error rate in parts per million.
    failures: AtomicU64,
    /// Business requests seen, for spreading failures.
    seen: AtomicU64,
}

impl Faults {
    /// Faults starting at `settings`, which must have passed [`FaultSettings::check`].
    pub fn new(settings: FaultSettings) -> Self {
        let faults = Self(Arc::new(Inner {
            latency_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        }));
        faults.set(settings);
        faults
    }

    /// Replaces the faults in force.
    pub fn set(&self, settings: FaultSettings) {
        let failures = (settings.error_rate.clamp(0.0, 1.0) * PARTS as f64).round() as u64;
        self.0
            .latency_ms
            .store(settings.latency.as_millis() as u64, Ordering::Relaxed);
        self.0.failures.store(failures, Ordering::Relaxed);
    }

    /// The faults in force.
    pub fn get(&self) -> FaultSettings {
        FaultSettings {
            latency: Duration::from_millis(self.0.latency_ms.load(Ordering::Relaxed)),
            error_rate: self.0.failures.load(Ordering::Relaxed) as f64 / PARTS as f64,
        }
    }

    /// Whether the next business request fails: the n-th request fails when the running
    /// count of failures owed, `n * rate`, passes a whole number.
    fn next_fails(&self) -> bool {
        let rate = self.0.failures.load(Ordering::Relaxed);
        if rate == 0 {
            return false;
        }
        let n = self.0.seen.fetch_add(1, Ordering::Relaxed);
        (n + 1) * rate / PARTS > n * rate / PARTS
    }
}

/// Middleware on the business routes: waits the latency, then fails the request or passes it.
pub async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let latency = faults.get().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if faults.next_fails() {
        metrics::counter!("legacy_injected_failures_total").increment(1);
        return Problem::new(ProblemType::Unavailable)
            .detail("The legacy checkout failed this request (an injected fault)")
            .header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures_in(faults: &Faults, n: usize) -> usize {
        (0..n).filter(|_| faults.next_fails()).count()
    }

    #[test]
    fn failures_are_exactly_the_share_asked_for() {
        for (rate, expected) in [(0.0, 0), (0.25, 25), (0.5, 50), (0.01, 1), (1.0, 100)] {
            let faults = Faults::new(FaultSettings {
                latency: Duration::ZERO,
                error_rate: rate,
            });
            assert_eq!(failures_in(&faults, 100), expected, "rate {rate}");
        }
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let bad_rate = FaultSettings {
            latency: Duration::ZERO,
            error_rate: 1.5,
        };
        assert_eq!(bad_rate.check().unwrap_err().0, "error_rate");
        let nan = FaultSettings {
            latency: Duration::ZERO,
            error_rate: f64::NAN,
        };
        assert_eq!(nan.check().unwrap_err().0, "error_rate");
        let slow = FaultSettings {
            latency: MAX_LATENCY + Duration::from_millis(1),
            error_rate: 0.0,
        };
        assert_eq!(slow.check().unwrap_err().0, "latency_ms");
    }
}
