//! A token bucket per client address for the endpoints anyone may call without a key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// How fast one address may call public endpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests that may come at once after a quiet spell.
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // A map client loads a few dozen tiles or cells at a time while panning.
        Self {
            per_second: 20.0,
            burst: 100.0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`; `Err(seconds)` until one is available.
    pub fn take(&self, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let RateLimit { per_second, burst } = self.limit;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 100_000 {
            // Forget clients whose buckets have filled up again: they are as good as new.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = buckets.entry(client.map(network)).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil() as u64)
        }
    }
}

/// The bucket an address draws from: an IPv4 address alone, an IPv6 address's /64 (one
/// subscriber's whole prefix: the addresses in it cost nothing to change).
pub(crate) fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_prefix_is_one_client() {
        let limiter = Limiter::new(RateLimit {
            per_second: 0.001,
            burst: 1.0,
        });
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.take(Some(a), now).is_ok());
        assert!(limiter.take(Some(b), now).is_err(), "the same /64");
        assert!(limiter.take(Some(other), now).is_ok());
    }
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_client() {
        let l = Limiter::new(RateLimit {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            l.take(a, t0).unwrap();
        }
        assert_eq!(l.take(a, t0), Err(1));
        l.take(b, t0).unwrap();
        l.take(a, t0 + Duration::from_millis(600)).unwrap();
        assert!(l.take(a, t0 + Duration::from_millis(600)).is_err());
    }
}
