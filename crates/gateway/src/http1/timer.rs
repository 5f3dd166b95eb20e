//! A coarse timer for the serving threads. Every request arms two deadlines that almost
//! never fire: hyper's wait for the request head and the proxy's wait for the upstream's
//! response head. On tokio's timer wheel each costs a registration and a removal under the
//! driver's lock; here a deadline is a slot in a table of the thread's own, which one task
//! per serving thread (`run`) checks every tick. Arming is a push, disarming a store.
//!
//! Deadlines fire at most a tick or two late, never early. A deadline polled on a thread
//! whose ticks are not running (a test's runtime, a blocking thread) falls back to a tokio
//! sleep, so it always fires.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// How often the thread's deadlines are checked.
pub const TICK: Duration = Duration::from_millis(10);

const TICK_NANOS: u64 = TICK.as_nanos() as u64;

/// In 64 bits, which hold 584 years.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Tells the threads' tables apart.
static TABLES: AtomicU64 = AtomicU64::new(0);

/// One thread's deadlines.
struct Table {
    id: u64,
    /// Ticks count from here.
    start: Instant,
    /// Whether `run` is checking this table.
    running: bool,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// No armed slot is due before this tick.
    earliest: u64,
}

struct Slot {
    due: u64,
    /// Bumped each time the slot is disarmed or fires, so a deadline can tell that its
    /// slot moved on.
    generation: u64,
    /// Set while armed.
    waker: Option<Waker>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        id: TABLES.fetch_add(1, Ordering::Relaxed),
        start: Instant::now(),
        running: false,
        slots: Vec::new(),
        free: Vec::new(),
        earliest: u64::MAX,
    });
}

impl Table {
    /// The first tick at or after `deadline`.
    fn due(&self, deadline: Instant) -> u64 {
        nanos(deadline.saturating_duration_since(self.start)).div_ceil(TICK_NANOS)
    }

    /// The last tick at or before now.
    fn now(&self) -> u64 {
        nanos(self.start.elapsed()) / TICK_NANOS
    }

    fn arm(&mut self, due: u64, waker: Waker) -> Armed {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                due: 0,
                generation: 0,
                waker: None,
            });
            self.slots.len() - 1
        });
        let entry = &mut self.slots[slot];
        entry.due = due;
        entry.waker = Some(waker);
        self.earliest = self.earliest.min(due);
        Armed {
            table: self.id,
            slot,
            generation: entry.generation,
        }
    }

    /// The slot `armed` holds, if it still holds it.
    fn slot(&mut self, armed: Armed) -> Option<&mut Slot> {
        if armed.table != self.id {
            return None;
        }
        self.slots
            .get_mut(armed.slot)
            .filter(|entry| entry.generation == armed.generation)
    }

    fn disarm(&mut self, slot: usize) -> Option<Waker> {
        let entry = &mut self.slots[slot];
        entry.generation += 1;
        self.free.push(slot);
        entry.waker.take()
    }

    /// Disarms every slot due by tick `now` and answers their wakers.
    fn fire(&mut self, now: u64) -> Vec<Waker> {
        if now < self.earliest {
            return Vec::new();
        }
        let mut fired = Vec::new();
        let mut earliest = u64::MAX;
        for slot in 0..self.slots.len() {
            let entry = &self.slots[slot];
            if entry.waker.is_none() {
                continue;
            }
            if entry.due <= now {
                fired.extend(self.disarm(slot));
            } else {
                earliest = earliest.min(entry.due);
            }
        }
        self.earliest = earliest;
        fired
    }
}

/// Checks this thread's deadlines every tick, for as long as it is polled. Spawn it once on
/// each serving thread's runtime.
pub async fn run() {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            // Armed deadlines would never fire now: wake them to fall back to tokio's timer.
            let wakers = TABLE.with_borrow_mut(|table| {
                table.running = false;
                table.fire(u64::MAX)
            });
            wakers.into_iter().for_each(Waker::wake);
        }
    }
    TABLE.with_borrow_mut(|table| table.running = true);
    let _stop = Stop;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let fired = TABLE.with_borrow_mut(|table| table.fire(table.now()));
        fired.into_iter().for_each(Waker::wake);
    }
}

/// A future that is ready once `deadline` has passed.
pub struct Sleep {
    deadline: Instant,
    state: State,
}

enum State {
    /// Not polled yet.
    Unarmed,
    /// In a thread's table.
    Armed(Armed),
    /// On tokio's timer: no ticks run on this thread.
    Fallback(Pin<Box<tokio::time::Sleep>>),
    Elapsed,
}

/// A deadline's place in a thread's table.
#[derive(Debug, Clone, Copy)]
struct Armed {
    table: u64,
    slot: usize,
    generation: u64,
}

impl Sleep {
    /// Ready once `deadline` has passed.
    pub fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            state: State::Unarmed,
        }
    }

    fn fall_back(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = Box::pin(tokio::time::sleep_until(self.deadline.into()));
        let poll = sleep.as_mut().poll(cx);
        self.state = if poll.is_ready() {
            State::Elapsed
        } else {
            State::Fallback(sleep)
        };
        poll
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &mut this.state {
            State::Elapsed => Poll::Ready(()),
            State::Fallback(sleep) => {
                let poll = sleep.as_mut().poll(cx);
                if poll.is_ready() {
                    this.state = State::Elapsed;
                }
                poll
            }
            State::Unarmed => {
                let armed = TABLE.with_borrow_mut(|table| {
                    table.running.then(|| {
                        let due = table.due(this.deadline);
                        table.arm(due, cx.waker().clone())
                    })
                });
                match armed {
                    Some(armed) => {
                        this.state = State::Armed(armed);
                        Poll::Pending
                    }
                    None => this.fall_back(cx),
                }
            }
            &mut State::Armed(armed) => {
                let pending = TABLE.with_borrow_mut(|table| match table.slot(armed) {
                    Some(entry) => {
                        if entry
                            .waker
                            .as_ref()
                            .is_none_or(|w| !w.will_wake(cx.waker()))
                        {
                            entry.waker = Some(cx.waker().clone());
                        }
                        true
                    }
                    None => false,
                });
                if pending {
                    return Poll::Pending;
                }
                // The slot fired, or the ticks stopped and handed it back (or this is another
                // thread, which serving threads never do).
                if Instant::now() >= this.deadline {
                    this.state = State::Elapsed;
                    Poll::Ready(())
                } else {
                    this.fall_back(cx)
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let State::Armed(armed) = self.state {
            // `try_with`: the thread's table may be gone already when the thread exits.
            let _ = TABLE.try_with(|table| {
                let mut table = table.borrow_mut();
                if table.slot(armed).is_some() {
                    drop(table.disarm(armed.slot));
                }
            });
        }
    }
}

/// `future`'s output, or `Err(Elapsed)` when `duration` passes first. Takes the future
/// pinned where the caller keeps it: a future taken by value would sit in this one's state
/// twice (as the argument and pinned).
pub async fn timeout<F: Future>(
    duration: Duration,
    mut future: Pin<&mut F>,
) -> Result<F::Output, Elapsed> {
    let mut sleep = Sleep::until(Instant::now() + duration);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut sleep).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// A deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// The coarse timer as hyper's: bounds the wait for each request head.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(deadline))
    }
}

impl hyper::rt::Sleep for Sleep {}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed() -> usize {
        TABLE.with_borrow(|table| table.slots.iter().filter(|s| s.waker.is_some()).count())
    }

    #[tokio::test]
    async fn a_deadline_fires_after_it_passes_and_never_before() {
        let ticks = tokio::spawn(run());
        tokio::task::yield_now().await;
        for millis in [0, 1, 15, 40] {
            let deadline = Instant::now() + Duration::from_millis(millis);
            Sleep::until(deadline).await;
            assert!(Instant::now() >= deadline, "{millis} ms fired early");
        }
        assert_eq!(armed(), 0);
        ticks.abort();
    }

    #[tokio::test]
    async fn a_timeout_answers_the_future_or_elapsed() {
        let ticks = tokio::spawn(run());
        tokio::task::yield_now().await;
        let ready = std::pin::pin!(async { 7 });
        assert_eq!(timeout(Duration::from_secs(60), ready).await, Ok(7));
        let never = std::pin::pin!(std::future::pending::<()>());
        assert_eq!(
            timeout(Duration::from_millis(20), never).await,
            Err(Elapsed)
        );
        ticks.abort();
    }

    #[tokio::test]
    async fn dropped_deadlines_give_their_slots_back() {
        let ticks = tokio::spawn(run());
        tokio::task::yield_now().await;
        for _ in 0..3 {
            let waits: Vec<_> = (0..50)
                .map(|_| {
                    tokio::spawn(async {
                        let never = std::pin::pin!(std::future::pending::<()>());
                        timeout(Duration::from_secs(60), never).await
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            assert_eq!(armed(), 50);
            waits.iter().for_each(tokio::task::JoinHandle::abort);
            for wait in waits {
                assert!(wait.await.unwrap_err().is_cancelled());
            }
            assert_eq!(armed(), 0);
        }
        // The slots are reused, not added.
        assert_eq!(TABLE.with_borrow(|table| table.slots.len()), 50);
        ticks.abort();
    }

    #[tokio::test]
    async fn without_ticks_a_deadline_falls_back_to_tokios_timer() {
        let deadline = Instant::now() + Duration::from_millis(20);
        Sleep::until(deadline).await;
        assert!(Instant::now() >= deadline);
        assert_eq!(armed(), 0);
    }

    #[tokio::test]
    async fn deadlines_armed_when_the_ticks_stop_still_fire() {
        let ticks = tokio::spawn(run());
        tokio::task::yield_now().await;
        let deadline = Instant::now() + Duration::from_millis(50);
        let wait = tokio::spawn(Sleep::until(deadline));
        tokio::task::yield_now().await;
        assert_eq!(armed(), 1);
        ticks.abort();
        assert!(ticks.await.unwrap_err().is_cancelled());
        assert_eq!(armed(), 0);
        wait.await.unwrap();
        assert!(Instant::now() >= deadline);
    }
}
