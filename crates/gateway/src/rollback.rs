//! Auto-rollback: per group, a sliding window of the new side's outcomes. Only failures the
//! new service caused on requests it accepted are errors (5xx, connect failures, timeouts it
//! caused; the edge decides, see `edge.rs`); 4xx and a client's own slow or broken body are
//! not. Past a minimum sample, an error rate above the threshold trips the group once — and
//! only when failures came from a minimum number of distinct clients, so no single client
//! (one that found a request the service answers with 500) can roll a group back. The
//! window is 30 time buckets, each one atomic word, so recording an answer takes no lock;
//! a failure also notes its client, under a lock, which only failures take.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{clock::Clock, group::Group};

/// Buckets per window: a 30 s window moves in one-second steps.
pub const WINDOW_BUCKETS: usize = 30;

// One bucket is one word: [epoch: 24 bits][requests: 20 bits][errors: 20 bits].
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = (1 << 24) - 1;

/// When a group rolls back.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Error rate (a fraction, 0.01 = 1 %) above which the group rolls back.
    pub max_error_rate: f64,
    /// How far back outcomes count.
    pub window: Duration,
    /// Outcomes the window must hold before the rate is judged.
    pub min_sample: u64,
    /// Distinct clients whose requests failed in the window before the rate is judged.
    pub min_clients: usize,
}

/// Failing clients remembered per group at most: enough to know the minimum is reached.
const MAX_FAILING_CLIENTS: usize = 4096;

/// How one request to a new service went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer below 500.
    Answered,
    /// A 5xx answer, a connect failure or a timeout.
    Failed,
}

/// Requests and errors a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Outcomes recorded.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
}

impl Tally {
    /// Errors as a fraction of requests.
    pub fn error_rate(self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// A sliding window of outcomes in `WINDOW_BUCKETS` time buckets.
#[derive(Debug)]
pub struct Window {
    buckets: [AtomicU64; WINDOW_BUCKETS],
    width_nanos: u64,
    /// The bucket position of the latest error, plus one (0: none since the last reset).
    /// A window without errors cannot break the policy, so an answer recorded in one needs
    /// no tally of the buckets.
    failed_at: AtomicU64,
}

impl Window {
    /// An empty window spanning `span`.
    pub fn new(span: Duration) -> Self {
        let width = span.as_nanos() / WINDOW_BUCKETS as u128;
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            width_nanos: u64::try_from(width).unwrap_or(u64::MAX).max(1),
            failed_at: AtomicU64::new(0),
        }
    }

    fn position(&self, now: Duration) -> u64 {
        u64::try_from(now.as_nanos()).unwrap_or(u64::MAX) / self.width_nanos
    }

    /// Counts one outcome at time `now`.
    pub fn record(&self, now: Duration, failed: bool) {
        let position = self.position(now);
        if failed {
            self.failed_at.fetch_max(position + 1, Ordering::Relaxed);
        }
        let epoch = position & EPOCH_MASK;
        let bucket = &self.buckets[(position % WINDOW_BUCKETS as u64) as usize];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (held_epoch, requests, errors) = unpack(current);
            // A bucket holding another lap is stale: start it afresh.
            let (requests, errors) = if held_epoch == epoch {
                (requests, errors)
            } else {
                (0, 0)
            };
            if requests == COUNT_MAX {
                return;
            }
            let next = pack(epoch, requests + 1, errors + u64::from(failed));
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether an error recorded since the last reset may still be in the window at `now`.
    pub fn may_hold_errors(&self, now: Duration) -> bool {
        match self.failed_at.load(Ordering::Relaxed) {
            0 => false,
            failed_at => self.position(now) < failed_at - 1 + WINDOW_BUCKETS as u64,
        }
    }

    /// What the window holds at time `now`.
    pub fn tally(&self, now: Duration) -> Tally {
        let position = self.position(now);
        let mut tally = Tally::default();
        for back in 0..(WINDOW_BUCKETS as u64).min(position + 1) {
            let wanted = position - back;
            let word =
                self.buckets[(wanted % WINDOW_BUCKETS as u64) as usize].load(Ordering::Relaxed);
            let (epoch, requests, errors) = unpack(word);
            if epoch == wanted & EPOCH_MASK {
                tally.requests += requests;
                tally.errors += errors;
            }
        }
        tally
    }

    /// Forgets every outcome.
    pub fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.failed_at.store(0, Ordering::Relaxed);
    }
}

fn pack(epoch: u64, requests: u64, errors: u64) -> u64 {
    (epoch << (2 * COUNT_BITS)) | (requests << COUNT_BITS) | errors
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

/// The decision to roll a group back, with the reason the audit log records.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// The group to roll back.
    pub group: Group,
    /// What the window held.
    pub tally: Tally,
    /// The audit log's words.
    pub reason: String,
}

/// One window per group and the breaker that trips each group once.
pub struct Rollback {
    policy: Policy,
    clock: Arc<dyn Clock>,
    windows: [Window; 3],
    /// Per group, the clients whose requests failed, with when the latest failed.
    failing: [Mutex<HashMap<IpAddr, Duration>>; 3],
    tripped: [AtomicBool; 3],
}

impl Rollback {
    /// Windows for every group under `policy`, timed by `clock`.
    pub fn new(policy: Policy, clock: Arc<dyn Clock>) -> Self {
        Self {
            policy,
            clock,
            windows: std::array::from_fn(|_| Window::new(policy.window)),
            failing: std::array::from_fn(|_| Mutex::default()),
            tripped: std::array::from_fn(|_| AtomicBool::new(false)),
        }
    }

    /// Records a new-side outcome for `group` of a request from `client`. `armed` says
    /// whether the group's rollout is above 0; when it is and the window now breaks the
    /// policy, the first caller gets the `Trip` and later callers get nothing until the group
    /// is reset.
    pub fn record(
        &self,
        group: Group,
        outcome: Outcome,
        armed: bool,
        client: IpAddr,
    ) -> Option<Trip> {
        let now = self.clock.now();
        let window = &self.windows[group.index()];
        window.record(now, outcome == Outcome::Failed);
        if outcome == Outcome::Failed {
            self.note_failing(group, client, now);
        }
        if !armed || self.tripped[group.index()].load(Ordering::Relaxed) {
            return None;
        }
        // Only a window holding errors can break the policy: a group answering without them
        // (nearly every request) is not tallied.
        if !window.may_hold_errors(now) {
            return None;
        }
        let tally = window.tally(now);
        if tally.requests < self.policy.min_sample
            || tally.error_rate() <= self.policy.max_error_rate
        {
            return None;
        }
        let clients = self.failing_clients(group, now);
        if clients < self.policy.min_clients {
            return None;
        }
        if self.tripped[group.index()].swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Trip {
            group,
            tally,
            reason: format!(
                "error rate {:.2}% ({} of {} requests, from {} clients) over the last {} s is above {}%",
                tally.error_rate() * 100.0,
                tally.errors,
                tally.requests,
                clients,
                self.policy.window.as_secs_f64(),
                self.policy.max_error_rate * 100.0
            ),
        })
    }

    fn note_failing(&self, group: Group, client: IpAddr, now: Duration) {
        let window = self.policy.window;
        let mut failing = self.failing[group.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failing.len() >= MAX_FAILING_CLIENTS && !failing.contains_key(&client) {
            failing.retain(|_, at| now.saturating_sub(*at) < window);
            if failing.len() >= MAX_FAILING_CLIENTS {
                return;
            }
        }
        failing.insert(client, now);
    }

    /// Distinct clients with a failure in `group`'s window at `now`.
    fn failing_clients(&self, group: Group, now: Duration) -> usize {
        let window = self.policy.window;
        let failing = self.failing[group.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failing
            .values()
            .filter(|at| now.saturating_sub(**at) < window)
            .count()
    }

    /// Forgets `group`'s outcomes and re-arms its breaker (after a flag change).
    pub fn reset(&self, group: Group) {
        self.windows[group.index()].reset();
        self.failing[group.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.tripped[group.index()].store(false, Ordering::Release);
    }

    /// What `group`'s window holds now.
    pub fn tally(&self, group: Group) -> Tally {
        self.windows[group.index()].tally(self.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const SECOND: Duration = Duration::from_secs(1);

    /// The policy of most tests: any number of failing clients is enough.
    fn rollback(clock: &Arc<ManualClock>) -> Rollback {
        rollback_with(clock, 1)
    }

    fn rollback_with(clock: &Arc<ManualClock>, min_clients: usize) -> Rollback {
        let policy = Policy {
            max_error_rate: 0.01,
            window: Duration::from_secs(30),
            min_sample: 100,
            min_clients,
        };
        Rollback::new(policy, clock.clone())
    }

    /// The `i`-th of ten clients.
    fn client(i: u64) -> IpAddr {
        IpAddr::from([10, 0, 0, (i % 10) as u8])
    }

    /// Sends `n` outcomes, every `every`-th of them failed; answers the trips seen.
    fn send(rollback: &Rollback, n: u64, every: u64) -> Vec<Trip> {
        (1..=n)
            .filter_map(|i| {
                let outcome = if every > 0 && i % every == 0 {
                    Outcome::Failed
                } else {
                    Outcome::Answered
                };
                rollback.record(Group::Cart, outcome, true, client(i))
            })
            .collect()
    }

    #[test]
    fn two_percent_errors_past_the_minimum_sample_trip_once() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        let trips = send(&rollback, 200, 50);
        assert_eq!(trips.len(), 1);
        assert_eq!(
            trips[0].tally,
            Tally {
                requests: 100,
                errors: 2
            }
        );
        assert!(trips[0].reason.contains("2.00%"), "{}", trips[0].reason);
    }

    #[test]
    fn failures_from_fewer_clients_than_the_minimum_do_not_trip() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback_with(&clock, 5);
        let one = IpAddr::from([192, 0, 2, 1]);
        for i in 0..1000 {
            let outcome = if i % 2 == 0 {
                Outcome::Failed
            } else {
                Outcome::Answered
            };
            assert_eq!(rollback.record(Group::Cart, outcome, true, one), None);
        }
        // Three more failing clients make four: still one short.
        for i in 0..3 {
            assert_eq!(
                rollback.record(Group::Cart, Outcome::Failed, true, client(i)),
                None
            );
        }
        let trip = rollback.record(Group::Cart, Outcome::Failed, true, client(3));
        assert!(trip.is_some_and(|t| t.reason.contains("from 5 clients")));
    }

    #[test]
    fn half_a_percent_does_not_trip() {
        let clock = Arc::new(ManualClock::new());
        assert!(send(&rollback(&clock), 400, 200).is_empty());
    }

    #[test]
    fn fewer_than_the_minimum_sample_does_not_trip() {
        let clock = Arc::new(ManualClock::new());
        assert!(send(&rollback(&clock), 99, 2).is_empty());
    }

    #[test]
    fn errors_recorded_early_trip_when_answers_bring_the_sample_to_the_minimum() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        for i in 0..5 {
            assert_eq!(
                rollback.record(Group::Cart, Outcome::Failed, true, client(i)),
                None
            );
        }
        let trips = send(&rollback, 95, 0);
        assert_eq!(trips.len(), 1);
        assert_eq!(
            trips[0].tally,
            Tally {
                requests: 100,
                errors: 5
            }
        );
    }

    #[test]
    fn a_window_holds_an_error_until_the_error_leaves_it() {
        let clock = Arc::new(ManualClock::new());
        let window = Window::new(Duration::from_secs(30));
        assert!(!window.may_hold_errors(clock.now()));
        window.record(clock.now(), false);
        assert!(!window.may_hold_errors(clock.now()));
        clock.advance(5 * SECOND);
        window.record(clock.now(), true);
        clock.advance(29 * SECOND);
        assert!(window.may_hold_errors(clock.now()));
        assert_eq!(window.tally(clock.now()).errors, 1);
        clock.advance(SECOND);
        assert!(!window.may_hold_errors(clock.now()));
        assert_eq!(window.tally(clock.now()).errors, 0);
        window.record(clock.now(), true);
        window.reset();
        assert!(!window.may_hold_errors(clock.now()));
    }

    #[test]
    fn a_disarmed_group_counts_but_does_not_trip() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        for _ in 0..200 {
            assert_eq!(
                rollback.record(Group::Orders, Outcome::Failed, false, client(0)),
                None
            );
        }
        assert_eq!(rollback.tally(Group::Orders).errors, 200);
    }

    #[test]
    fn outcomes_leave_the_window_as_time_passes() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        for _ in 0..10 {
            rollback.record(Group::Cart, Outcome::Failed, false, client(0));
        }
        clock.advance(10 * SECOND);
        for _ in 0..5 {
            rollback.record(Group::Cart, Outcome::Answered, false, client(0));
        }
        assert_eq!(
            rollback.tally(Group::Cart),
            Tally {
                requests: 15,
                errors: 10
            }
        );
        clock.advance(25 * SECOND);
        assert_eq!(
            rollback.tally(Group::Cart),
            Tally {
                requests: 5,
                errors: 0
            }
        );
        clock.advance(5 * SECOND);
        assert_eq!(rollback.tally(Group::Cart), Tally::default());
    }

    #[test]
    fn old_errors_do_not_trip_a_recovered_group() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        send(&rollback, 50, 2);
        clock.advance(31 * SECOND);
        assert!(send(&rollback, 200, 0).is_empty());
    }

    #[test]
    fn a_reset_forgets_outcomes_and_re_arms() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        assert_eq!(send(&rollback, 200, 10).len(), 1);
        rollback.reset(Group::Cart);
        assert_eq!(rollback.tally(Group::Cart), Tally::default());
        assert_eq!(send(&rollback, 200, 10).len(), 1);
    }

    #[test]
    fn groups_have_their_own_windows() {
        let clock = Arc::new(ManualClock::new());
        let rollback = rollback(&clock);
        send(&rollback, 200, 0);
        assert_eq!(rollback.tally(Group::Payments), Tally::default());
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let clock = Arc::new(ManualClock::new());
        let rollback = Arc::new(rollback(&clock));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rollback = rollback.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        let outcome = if i % 4 == 0 {
                            Outcome::Failed
                        } else {
                            Outcome::Answered
                        };
                        rollback.record(Group::Cart, outcome, false, client(u64::from(i)));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(
            rollback.tally(Group::Cart),
            Tally {
                requests: 40_000,
                errors: 10_000
            }
        );
    }
}
