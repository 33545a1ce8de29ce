//! Who looks at the map, counted in memory and written to the store every few seconds (and once
//! more at shutdown):
//!
//! - **Usage demand.** Which areas (H3 cells at the policy's usage resolution) the public map
//!   endpoints are asked about, by whom, per epoch. A looker counts once per epoch and area: a
//!   consumer key, or an anonymous client network (its address; an IPv6 address's /64, what one
//!   host is given). An area's count is its consumer keys plus its anonymous networks up to
//!   [`ANONYMOUS_LOOKERS_CAP`], so refreshing cannot raise it, and neither can a farm of
//!   addresses: addresses are cheap, keys are issued by admins. The next epoch's demand
//!   multipliers read the counts, as stored per epoch and area.
//! - **Consumers' requests.** Each request with a consumer key, per key and UTC day (what its
//!   quota is checked against, read back from the store after a restart) and per area looked at.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use covermap_domain::{BoundingBox, Cell};
use covermap_scoring::RewardPolicy;
use covermap_store::{ConsumerAreaRequests, ConsumerRequests, Look, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Boxes wider or taller than this (degrees) look at a region, not an area: not counted.
const MAX_SPAN_DEG: f64 = 0.5;

/// Anonymous networks counted per area and epoch at most. With the shipped policy (+0.1 per
/// doubling of lookers) anonymous lookers alone can add at most ⌊log2(1 + 3)⌋ × 0.1 = 0.2 to an
/// area's multiplier, however many addresses a script has; beyond that only consumer keys,
/// which admins issue, raise it.
pub const ANONYMOUS_LOOKERS_CAP: u64 = 3;

/// Who is asking: set by the public endpoints' gate for the request it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looker {
    /// A consumer key, by id.
    Consumer(i64),
    /// Anyone else, by client address (unknown where the server was not told the peer).
    Anonymous(Option<IpAddr>),
}

tokio::task_local! {
    /// The looker of the request being answered. The areas a request looks at are found deep in
    /// the handlers (a box, a tile), after the gate decided who asks: this is how they meet.
    static LOOKER: Looker;
}

/// Runs `answer` (the rest of a request's handling) as `looker`'s.
pub(crate) async fn looking_as<F: Future>(looker: Looker, answer: F) -> F::Output {
    LOOKER.scope(looker, answer).await
}

/// Past its quota: when the quota is new again (the next UTC midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub quota: u64,
    pub resets_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct UsageMeter {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Lookers this process has seen (and sent once) per epoch and area.
    seen: HashSet<Look>,
    /// Anonymous lookers seen per epoch and area, up to the cap.
    anonymous: HashMap<(u64, Cell), u64>,
    /// Lookers not yet written.
    looks: Vec<Look>,
    /// Consumers' requests not yet written, per key and day, and per key, day and area.
    requests: HashMap<(i64, NaiveDate), u64>,
    area_requests: HashMap<(i64, NaiveDate, Cell), u64>,
    /// Each key's requests of a day as the store last said (other processes' included).
    stored: HashMap<(i64, NaiveDate), u64>,
}

impl UsageMeter {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counts stay consistent whatever panicked while holding them: plain additions.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one request with consumer key `key_id` against its `quota` for the UTC day of
    /// `now`, or refuses it. The first request of a key on a day this process answers reads
    /// the day's requests back from the store, so a restart gives no quota back.
    pub async fn admit(
        &self,
        store: &dyn Store,
        key_id: i64,
        quota: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), QuotaExceeded>, StoreError> {
        let day = now.date_naive();
        let known = self.counts().stored.contains_key(&(key_id, day));
        if !known {
            let stored = store.consumer_requests(key_id, day).await?;
            self.counts().stored.entry((key_id, day)).or_insert(stored);
        }
        let mut c = self.counts();
        let used = c.stored.get(&(key_id, day)).copied().unwrap_or(0)
            + c.requests.get(&(key_id, day)).copied().unwrap_or(0);
        if used >= quota {
            return Ok(Err(QuotaExceeded {
                quota,
                resets_at: next_midnight(now),
            }));
        }
        *c.requests.entry((key_id, day)).or_default() += 1;
        Ok(Ok(()))
    }

    /// Counts that the request being answered looked at the area at the centre of `bbox`.
    pub fn look(&self, policy: &RewardPolicy, bbox: &BoundingBox, now: DateTime<Utc>) {
        let Ok(looker) = LOOKER.try_with(|l| *l) else {
            return;
        };
        let Some((epoch, area)) = area_of(policy, bbox, now) else {
            return;
        };
        let mut c = self.counts();
        let look = match looker {
            Looker::Consumer(id) => {
                *c.area_requests
                    .entry((id, now.date_naive(), area))
                    .or_default() += 1;
                Look {
                    epoch,
                    area,
                    looker: format!("key:{id}"),
                    anonymous: false,
                }
            }
            Looker::Anonymous(Some(ip)) => {
                if c.anonymous.get(&(epoch, area)).copied().unwrap_or(0) >= ANONYMOUS_LOOKERS_CAP {
                    return;
                }
                Look {
                    epoch,
                    area,
                    looker: anonymous_looker(epoch, ip),
                    anonymous: true,
                }
            }
            Looker::Anonymous(None) => return,
        };
        if c.seen.insert(look.clone()) {
            if look.anonymous {
                *c.anonymous.entry((epoch, area)).or_default() += 1;
            }
            c.looks.push(look);
        }
    }

    /// Writes what was counted; what could not be written is kept for the next try. Forgets
    /// the lookers of epochs before the latest but one and the stored totals of days before
    /// today.
    pub async fn flush(&self, store: &dyn Store, now: DateTime<Utc>) {
        let (requests, area_requests, looks) = {
            let mut c = self.counts();
            let requests: Vec<_> = c
                .requests
                .drain()
                .map(|((key_id, day), requests)| ConsumerRequests {
                    key_id,
                    day,
                    requests,
                })
                .collect();
            let areas: Vec<_> = c
                .area_requests
                .drain()
                .map(|((key_id, day, area), requests)| ConsumerAreaRequests {
                    key_id,
                    day,
                    area,
                    requests,
                })
                .collect();
            (requests, areas, std::mem::take(&mut c.looks))
        };
        if !requests.is_empty() || !area_requests.is_empty() {
            match store
                .record_consumer_requests(&requests, &area_requests)
                .await
            {
                Ok(totals) => {
                    let mut c = self.counts();
                    for t in totals {
                        c.stored.insert((t.key_id, t.day), t.requests);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "consumers' requests not recorded; retrying later");
                    let mut c = self.counts();
                    for r in requests {
                        *c.requests.entry((r.key_id, r.day)).or_default() += r.requests;
                    }
                    for a in area_requests {
                        *c.area_requests
                            .entry((a.key_id, a.day, a.area))
                            .or_default() += a.requests;
                    }
                }
            }
        }
        if !looks.is_empty()
            && let Err(e) = store.record_looks(&looks, ANONYMOUS_LOOKERS_CAP).await
        {
            tracing::warn!(error = %e, "map usage not recorded; retrying later");
            self.counts().looks.extend(looks);
        }
        let today = now.date_naive();
        let mut c = self.counts();
        let latest_epoch = c.seen.iter().map(|l| l.epoch).max().unwrap_or(0);
        let oldest_epoch = latest_epoch.saturating_sub(1);
        c.seen.retain(|l| l.epoch >= oldest_epoch);
        c.anonymous.retain(|(epoch, _), _| *epoch >= oldest_epoch);
        c.stored.retain(|(_, day), _| *day >= today);
    }
}

/// The epoch and area a box looks at: its centre's cell at the policy's usage resolution;
/// `None` for a box too wide to be about an area, or before the first epoch.
fn area_of(policy: &RewardPolicy, bbox: &BoundingBox, now: DateTime<Utc>) -> Option<(u64, Cell)> {
    if bbox.east - bbox.west > MAX_SPAN_DEG || bbox.north - bbox.south > MAX_SPAN_DEG {
        return None;
    }
    let epoch = policy.epoch_at(now)?;
    let centre = h3o::LatLng::new(
        (bbox.south + bbox.north) / 2.0,
        (bbox.west + bbox.east) / 2.0,
    )
    .ok()?;
    Some((
        epoch,
        Cell(centre.to_cell(policy.rules.demand.usage_resolution())),
    ))
}

/// How an anonymous looker is kept: a hash of its network (an IPv6 address's /64, which one
/// host is handed; an IPv4 address itself) and the epoch, never the address.
fn anonymous_looker(epoch: u64, ip: IpAddr) -> String {
    let network = crate::ratelimit::network(ip);
    let digest = Sha256::digest(format!("covermap-looker\n{epoch}\n{network}"));
    format!("addr:{}", hex::encode(&digest[..16]))
}

/// When the UTC day of `now` ends.
fn next_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(now + TimeDelta::days(1), |t| t.and_utc())
}

/// Flushes the meter every `every` until `shutdown`, and once more then.
pub async fn run_flusher(
    meter: Arc<UsageMeter>,
    store: Arc<dyn Store>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stop = tokio::select! {
            () = tokio::time::sleep(every) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        meter.flush(store.as_ref(), Utc::now()).await;
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monaco() -> BoundingBox {
        BoundingBox {
            west: 7.41,
            south: 43.72,
            east: 7.43,
            north: 43.74,
        }
    }

    #[tokio::test]
    async fn a_looker_counts_once_per_area_and_anonymous_ones_up_to_the_cap() {
        let meter = UsageMeter::default();
        let policy = RewardPolicy::shipped();
        let now = Utc::now();
        looking_as(Looker::Consumer(7), async {
            for _ in 0..100 {
                meter.look(&policy, &monaco(), now);
            }
        })
        .await;
        for last in 0..10u8 {
            let ip = IpAddr::from([198, 51, 100, last]);
            looking_as(Looker::Anonymous(Some(ip)), async {
                meter.look(&policy, &monaco(), now);
                meter.look(&policy, &monaco(), now);
            })
            .await;
        }
        // Outside any request: nobody to count.
        meter.look(&policy, &monaco(), now);
        let c = meter.counts();
        let keyed = c.looks.iter().filter(|l| !l.anonymous).count();
        let anonymous = c.looks.iter().filter(|l| l.anonymous).count();
        assert_eq!((keyed, anonymous), (1, ANONYMOUS_LOOKERS_CAP as usize));
        let area_requests: u64 = c.area_requests.values().sum();
        assert_eq!(area_requests, 100);
    }

    #[test]
    fn one_ipv6_host_is_one_anonymous_looker() {
        let a = anonymous_looker(3, "2001:db8:1:2::1".parse().unwrap());
        let b = anonymous_looker(3, "2001:db8:1:2:ffff::9".parse().unwrap());
        let c = anonymous_looker(3, "2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, anonymous_looker(4, "2001:db8:1:2::1".parse().unwrap()));
        assert!(!a.contains("2001"));
    }

    #[tokio::test]
    async fn a_quota_holds_across_a_restart_and_resets_the_next_utc_day() {
        use covermap_store::{Access, NewApiKey, SqliteStore};
        let path =
            std::env::temp_dir().join(format!("covermap-usage-{}.sqlite3", uuid::Uuid::new_v4()));
        let store = SqliteStore::open_file(&path).await.unwrap();
        store.migrate().await.unwrap();
        let key = store
            .create_api_key(
                &NewApiKey {
                    key_hash: "h".into(),
                    prefix: "cm_0".into(),
                    role: covermap_domain::Role::Consumer,
                    contributor: None,
                    quota_per_day: Some(3),
                },
                Utc::now(),
            )
            .await
            .unwrap();
        let day1 = DateTime::parse_from_rfc3339("2026-03-01T22:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let meter = UsageMeter::default();
        for _ in 0..3 {
            assert_eq!(meter.admit(&store, key.id, 3, day1).await.unwrap(), Ok(()));
        }
        let refused = meter
            .admit(&store, key.id, 3, day1)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.resets_at.to_rfc3339(), "2026-03-02T00:00:00+00:00");
        meter.flush(&store, day1).await;
        // A new process reads the day's requests back.
        let restarted = UsageMeter::default();
        assert!(
            restarted
                .admit(&store, key.id, 3, day1)
                .await
                .unwrap()
                .is_err()
        );
        let day2 = day1 + TimeDelta::hours(3);
        assert_eq!(
            restarted.admit(&store, key.id, 3, day2).await.unwrap(),
            Ok(())
        );
        drop(store);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn quotas_reset_at_the_next_utc_midnight() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T23:59:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(next_midnight(now).to_rfc3339(), "2026-03-02T00:00:00+00:00");
    }
}
