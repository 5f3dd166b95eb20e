//! Edge protection. A per-client rate limit (GCRA: one "theoretical arrival time" per
//! client in a sharded map, so clients rarely contend) answers 429 with `Retry-After`; a
//! global in-flight cap sheds with 503 at once instead of queueing, so an overloaded
//! gateway stays fast for the requests it does take. A client is its address (read behind
//! trusted proxies from `X-Forwarded-For`), never something it merely claims, such as an
//! API key nobody verified. Per client, open connections and event streams are capped too.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::{clock::Clock, forwarding::TrustedProxies};

const SHARDS: usize = 64;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Who a request is counted against: the client's address. A header the client writes
/// (an API key) is not an identity until something verifies it, and a client choosing a
/// fresh one per request would escape every limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(pub IpAddr);

/// A per-client GCRA limiter: `per_second` sustained, `burst` at once.
pub struct RateLimiter {
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
    hasher: RandomState,
    interval: u64,
    tolerance: u64,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    /// A limiter of `per_second` requests sustained and `burst` at once; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32, clock: Arc<dyn Clock>) -> Option<Self> {
        (per_second > 0).then(|| {
            let interval = NANOS_PER_SECOND / u64::from(per_second);
            Self {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                interval,
                tolerance: interval * u64::from(burst.max(1)),
                clock,
            }
        })
    }

    /// Takes one request for `client`; `Err` with the wait before the next is accepted.
    pub fn check(&self, client: ClientKey) -> Result<(), Duration> {
        let hash = self.hasher.hash_one(client);
        let now = nanos(self.clock.now());
        let mut shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        let arrival = shard.get(&hash).copied().unwrap_or(now).max(now);
        let next = arrival + self.interval;
        if next - now > self.tolerance {
            return Err(Duration::from_nanos(next - now - self.tolerance));
        }
        shard.insert(hash, next);
        Ok(())
    }

    /// Forgets clients whose allowance is full again; run now and then to bound memory.
    pub fn sweep(&self) {
        let now = nanos(self.clock.now());
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, arrival| *arrival > now);
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn shard(&self, hash: u64) -> &Mutex<HashMap<u64, u64>> {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A cap on what one client holds open at once (connections, event streams), by address.
pub struct PerClient {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One thing a client holds under a `PerClient` cap; given back when dropped.
pub struct Place {
    cap: Option<Arc<PerClient>>,
    client: IpAddr,
}

impl PerClient {
    /// A cap of `max` per client; 0 means no cap.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::default(),
        })
    }

    /// A place for `client`, or `None` when it already holds `max`.
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Option<Place> {
        if self.max == 0 {
            return Some(Place { cap: None, client });
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Place {
            cap: Some(self.clone()),
            client,
        })
    }

    /// What `client` holds now.
    pub fn held(&self, client: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&client).copied().unwrap_or(0)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(cap) = &self.cap else {
            return;
        };
        let mut held = cap.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// The cap on open connections per client address. A trusted proxy's connections carry
/// many clients and are not capped.
pub struct ConnectionCounts {
    cap: Arc<PerClient>,
    trusted: TrustedProxies,
}

/// A connection's place under the per-client cap.
pub type ConnectionPlace = Place;

impl ConnectionCounts {
    /// `max` connections per address (0: no cap), proxies in `trusted` exempt.
    pub fn new(max: usize, trusted: TrustedProxies) -> Self {
        Self {
            cap: PerClient::new(max),
            trusted,
        }
    }

    /// A place for a new connection from `peer`, or `None` when it is over the cap.
    pub fn open(&self, peer: IpAddr) -> Option<ConnectionPlace> {
        if self.trusted.trusts(peer) {
            return PerClient::new(0).take(peer);
        }
        let place = self.cap.take(peer);
        if place.is_none() {
            metrics::counter!("gateway_connections_refused_total").increment(1);
        }
        place
    }
}

/// The cap on event streams per client, and the gauge of those open.
pub struct StreamCounts {
    cap: Arc<PerClient>,
}

/// An event stream's place: counted in `gateway_event_streams` while it is held.
pub struct StreamPlace(#[allow(dead_code)] Place);

impl StreamCounts {
    /// `max` streams per client; 0 means no cap.
    pub fn new(max: usize) -> Self {
        Self {
            cap: PerClient::new(max),
        }
    }

    /// A place for a stream of `client`, or `None` when it holds its share.
    pub fn open(&self, client: IpAddr) -> Option<StreamPlace> {
        let place = self.cap.take(client)?;
        metrics::gauge!("gateway_event_streams").increment(1.0);
        Some(StreamPlace(place))
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        metrics::gauge!("gateway_event_streams").decrement(1.0);
    }
}

/// The global cap on requests in flight.
pub struct InFlight {
    current: AtomicUsize,
    max: usize,
}

/// One request's place under the cap; released when dropped.
pub struct Permit<'a>(&'a InFlight);

impl InFlight {
    /// A cap of `max` requests; 0 means no cap.
    pub fn new(max: usize) -> Self {
        Self {
            current: AtomicUsize::new(0),
            max: if max == 0 { usize::MAX } else { max },
        }
    }

    /// A place under the cap, or `None` when it is full.
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let before = self.current.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.current.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const IP: ClientKey = ClientKey(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn a_client_gets_its_burst_then_waits_one_interval() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::new(10, 3, clock.clone()).unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(IP), Ok(()));
        }
        assert_eq!(limiter.check(IP), Err(Duration::from_millis(100)));
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.check(IP), Ok(()));
        assert!(limiter.check(IP).is_err());
    }

    #[test]
    fn the_sustained_rate_holds_over_time() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::new(100, 10, clock.clone()).unwrap();
        let mut accepted = 0;
        for _ in 0..10_000 {
            clock.advance(Duration::from_millis(1));
            accepted += u32::from(limiter.check(IP).is_ok());
        }
        // 10 s at 100/s plus the initial burst.
        assert!((1_000..=1_010).contains(&accepted), "{accepted}");
    }

    #[test]
    fn clients_are_limited_separately() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::new(1, 1, clock).unwrap();
        assert!(limiter.check(IP).is_ok());
        assert!(limiter.check(IP).is_err());
        assert!(limiter.check(ClientKey([10, 0, 0, 1].into())).is_ok());
        assert!(limiter.check(ClientKey([10, 0, 0, 2].into())).is_ok());
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let clock = Arc::new(ManualClock::new());
        let limiter = RateLimiter::new(10, 5, clock.clone()).unwrap();
        limiter.check(IP).unwrap();
        assert_eq!(limiter.tracked(), 1);
        clock.advance(Duration::from_secs(1));
        limiter.sweep();
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_places_back() {
        let cap = PerClient::new(2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = cap.take(a).unwrap();
        let _second = cap.take(a).unwrap();
        assert!(cap.take(a).is_none());
        assert!(cap.take(b).is_some());
        drop(first);
        assert_eq!(cap.held(a), 1);
        assert!(cap.take(a).is_some());
    }

    #[test]
    fn the_in_flight_cap_sheds_past_its_maximum() {
        let cap = InFlight::new(2);
        let first = cap.try_acquire().unwrap();
        let _second = cap.try_acquire().unwrap();
        assert!(cap.try_acquire().is_none());
        drop(first);
        assert!(cap.try_acquire().is_some());
    }
}
