//! The cap on calls to the payment provider. Each call takes the next free slot of a GCRA
//! schedule (slots `1/N` s apart) and waits for it: once in this process, once in a schedule
//! shared by every worker through Redis. Slots are spaced, so the cap holds over any sliding
//! one-second window, not only aligned ones, and a backlog drains at the provider's pace.
//!
//! A slot is a plan: a worker that wakes late for its slot (a busy runtime) would send its call
//! closer to the next ones than planned. So right before the call, the shared limiter also
//! checks a log of the calls actually started in the last window and waits while it holds N.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use common::redis::Connection;
use redis::Script;

/// Slots are spaced, and the log's window is, this much wider than the cap's one second, so
/// up to 50 ms of delay between a call's start and its arrival at the provider (network, a
/// busy sender) cannot pull an extra call into a window. A backlog drains at 95 % of the cap.
const SPACING_MARGIN: f64 = 1.05;

/// A limiter that is off, local, shared, or both.
pub struct PaymentLimiter {
    local: Option<LocalSchedule>,
    shared: Option<SharedSchedule>,
}

impl PaymentLimiter {
    /// Caps of `per_worker` and `global` calls per second; 0 turns a cap off.
    pub fn new(per_worker: u32, global: u32, redis: Connection, key: String) -> Self {
        Self {
            local: (per_worker > 0).then(|| LocalSchedule::new(interval(per_worker))),
            shared: (global > 0).then(|| SharedSchedule::new(global, redis, key)),
        }
    }

    /// Waits for this process's slot, then the shared one.
    pub async fn acquire(&self) -> Result<(), redis::RedisError> {
        let started = std::time::Instant::now();
        self.wait_for_slot().await?;
        // What the cap costs a checkout: the dashboard's rate-cap wait.
        metrics::histogram!("orders_payment_rate_wait_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn wait_for_slot(&self) -> Result<(), redis::RedisError> {
        if let Some(local) = &self.local {
            tokio::time::sleep(local.reserve()).await;
        }
        if let Some(shared) = &self.shared {
            let wait = shared.reserve().await?;
            tokio::time::sleep(wait).await;
            loop {
                let wait = shared.start().await?;
                if wait.is_zero() {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

fn interval(per_second: u32) -> Duration {
    Duration::from_secs_f64(SPACING_MARGIN / f64::from(per_second))
}

/// GCRA in memory: the theoretical arrival time of the next slot.
struct LocalSchedule {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl LocalSchedule {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Books the next slot; answers how long to wait for it.
    fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut next = self
            .next
            .lock()
            .expect("the schedule lock is never poisoned");
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.interval);
        slot - now
    }
}

/// GCRA in Redis: one key holds the next free slot in microseconds of Redis's clock, so all
/// workers share one schedule and one clock. A second key logs the calls started in the last
/// window (a sorted set scored by start time).
struct SharedSchedule {
    interval_us: u64,
    limit: u32,
    window_us: u64,
    redis: Connection,
    key: String,
    log_key: String,
    script: Script,
    start: Script,
}

const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local next = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], next, 'PX', math.floor((next - now) / 1000) + 1000)
return slot - now
";

/// Records a call start when fewer than `ARGV[2]` started in the last `ARGV[1]` µs and answers
/// 0; otherwise answers the µs until the oldest leaves the window.
const START: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
  return 0
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
return math.max(oldest + window - now, 1)
";

impl SharedSchedule {
    fn new(limit: u32, redis: Connection, key: String) -> Self {
        Self {
            interval_us: interval(limit).as_micros() as u64,
            limit,
            window_us: (1_000_000.0 * SPACING_MARGIN) as u64,
            redis,
            log_key: format!("{key}:started"),
            key,
            script: Script::new(RESERVE),
            start: Script::new(START),
        }
    }

    /// Logs a call starting now, or answers how long to wait before asking again.
    async fn start(&self) -> Result<Duration, redis::RedisError> {
        let mut conn = self.redis.clone();
        let wait_us: i64 = self
            .start
            .key(&self.log_key)
            .arg(self.window_us)
            .arg(self.limit)
            .arg(common::id::new_id("call"))
            .invoke_async(&mut conn)
            .await?;
        Ok(Duration::from_micros(wait_us.max(0) as u64))
    }

    async fn reserve(&self) -> Result<Duration, redis::RedisError> {
        let mut conn = self.redis.clone();
        let wait_us: i64 = self
            .script
            .key(&self.key)
            .arg(self.interval_us)
            .invoke_async(&mut conn)
            .await?;
        Ok(Duration::from_micros(wait_us.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_slots_are_spaced_by_the_interval() {
        let schedule = LocalSchedule::new(Duration::from_millis(10));
        let waits: Vec<Duration> = (0..5).map(|_| schedule.reserve()).collect();
        assert_eq!(waits[0], Duration::ZERO);
        for pair in waits.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            assert!(
                gap <= Duration::from_millis(10) && gap >= Duration::from_millis(9),
                "{gap:?}"
            );
        }
    }
}
