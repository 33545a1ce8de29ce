//! A drive's fixes, checked one by one against the plausibility rules.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use covermap_domain::{Fix, LatLon};
use serde::Serialize;

use crate::IngestError;

/// The rules a fix must pass to count. One struct, so every parser applies the same ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestPolicy {
    /// Faster than this between two fixes is a GNSS jump or a spoof, not a car (60 m/s = 216 km/h).
    /// When more than half of a track's timed fixes break it, the whole track is refused.
    pub max_speed_mps: f64,
    /// A device clock may run this far ahead of the server's before its fixes are "in the future".
    pub max_future_skew: Duration,
    /// Drives recorded longer ago than this are no longer news about the road.
    pub max_age: Duration,
    /// Moving faster than `max_speed_mps` this long, step after step, is no GNSS glitch: the
    /// whole track is refused (an aircraft log, a train, a spoof).
    pub max_fast: Duration,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        Self {
            max_speed_mps: 60.0,
            max_future_skew: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_fast: Duration::from_secs(5),
        }
    }
}

pub use covermap_domain::FixRejection;

/// A point as a parser found it, before any rule was applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawPoint {
    pub lat: f64,
    pub lon: f64,
    pub time: Option<DateTime<Utc>>,
}

/// The usable fixes of an upload, in time order, and what was left out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub fixes: Vec<Fix>,
    /// Index of the point in the upload, and why it was left out.
    pub rejected: Vec<(usize, FixRejection)>,
    /// The points left out as implausible jumps, where they were: the trust stage tells a GNSS
    /// glitch (away and back) from two drives spliced together (away for good) by them.
    pub jumps: Vec<Fix>,
    /// Where each left-out point was, for those with a position in range (index in the upload,
    /// position): the driver's map of a drive shows them.
    pub rejected_at: Vec<(usize, LatLon)>,
}

/// A track in a few numbers, for the uploader's receipt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackSummary {
    pub points: usize,
    pub accepted: usize,
    pub rejected: BTreeMap<&'static str, usize>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl Track {
    pub fn summary(&self) -> TrackSummary {
        let mut rejected = BTreeMap::new();
        for (_, why) in &self.rejected {
            *rejected.entry(why.as_str()).or_insert(0) += 1;
        }
        TrackSummary {
            points: self.fixes.len() + self.rejected.len(),
            accepted: self.fixes.len(),
            rejected,
            start: self.fixes.first().map(|f| f.at),
            end: self.fixes.last().map(|f| f.at),
        }
    }

    /// Applies the policy to each point in upload order.
    pub(crate) fn check(
        points: impl IntoIterator<Item = RawPoint>,
        received_at: DateTime<Utc>,
        policy: &IngestPolicy,
    ) -> Result<Track, IngestError> {
        let latest = received_at + policy.max_future_skew;
        let earliest = received_at - policy.max_age;
        let mut track = Track {
            fixes: Vec::new(),
            rejected: Vec::new(),
            jumps: Vec::new(),
            rejected_at: Vec::new(),
        };
        let points: Vec<RawPoint> = points.into_iter().collect();
        if let Some((seconds, speed_mps)) = sustained_speed(&points, policy) {
            return Err(IngestError::SustainedSpeed { seconds, speed_mps });
        }
        for (i, p) in points.into_iter().enumerate() {
            match check_one(p, track.fixes.last(), latest, earliest, policy) {
                Ok(fix) => track.fixes.push(fix),
                Err(why) => {
                    if let Ok(pos) = LatLon::new(p.lat, p.lon) {
                        track.rejected_at.push((i, pos));
                        if why == FixRejection::ImplausibleJump
                            && let Some(at) = p.time
                        {
                            track.jumps.push(Fix {
                                at,
                                pos,
                                accuracy_m: None,
                            });
                        }
                    }
                    track.rejected.push((i, why));
                }
            }
        }
        if track.fixes.is_empty() {
            let total = track.rejected.len();
            if total == 0 {
                return Err(IngestError::NoPoints);
            }
            let summary = track
                .summary()
                .rejected
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(IngestError::NoUsableFixes { total, summary });
        }
        // A few jumps are GNSS noise; a track that is mostly jumps is a plane, a train or a spoof.
        let untimed =
            |why: &FixRejection| matches!(why, FixRejection::BadPosition | FixRejection::NoTime);
        let timed = track.fixes.len() + track.rejected.iter().filter(|r| !untimed(&r.1)).count();
        let jumps = track
            .rejected
            .iter()
            .filter(|r| r.1 == FixRejection::ImplausibleJump)
            .count();
        if 2 * jumps > timed {
            return Err(IngestError::ImplausibleTrack {
                rejected: jumps,
                total: timed,
                max_speed_mps: policy.max_speed_mps,
            });
        }
        Ok(track)
    }
}

/// A span of at least `policy.max_fast` (and at most twice that, so sparse tracks are not
/// judged by it) whose start and end lie further apart than the speed limit allows:
/// `(seconds, speed)` of the fastest. Net displacement, not path length: a GNSS glitch jumps
/// away and back and moves the span's ends little, while an aircraft or a train really goes.
fn sustained_speed(points: &[RawPoint], policy: &IngestPolicy) -> Option<(f64, f64)> {
    let min_s = policy.max_fast.as_secs_f64();
    let mut timed: Vec<(LatLon, DateTime<Utc>)> = Vec::with_capacity(points.len());
    for p in points {
        if let (Ok(pos), Some(at)) = (LatLon::new(p.lat, p.lon), p.time)
            && timed.last().is_none_or(|(_, last)| at > *last)
        {
            timed.push((pos, at));
        }
    }
    let mut fastest: Option<(f64, f64)> = None;
    let mut j = 0;
    for (i, (from, t0)) in timed.iter().enumerate() {
        j = j.max(i + 1);
        while j < timed.len() && (timed[j].1 - *t0).as_seconds_f64() < min_s {
            j += 1;
        }
        let Some((to, t1)) = timed.get(j) else {
            break;
        };
        let seconds = (*t1 - *t0).as_seconds_f64();
        if seconds > 2.0 * min_s {
            continue;
        }
        let speed = from.distance_m(*to) / seconds;
        if speed > policy.max_speed_mps && fastest.is_none_or(|(_, v)| speed > v) {
            fastest = Some((seconds, speed));
        }
    }
    fastest
}

fn check_one(
    p: RawPoint,
    previous: Option<&Fix>,
    latest: DateTime<Utc>,
    earliest: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Fix, FixRejection> {
    let pos = LatLon::new(p.lat, p.lon).map_err(|_| FixRejection::BadPosition)?;
    let at = p.time.ok_or(FixRejection::NoTime)?;
    if at > latest {
        return Err(FixRejection::InFuture);
    }
    if at < earliest {
        return Err(FixRejection::TooOld);
    }
    if let Some(prev) = previous {
        if at == prev.at {
            return Err(FixRejection::Duplicate);
        }
        if at < prev.at {
            return Err(FixRejection::OutOfOrder);
        }
        let secs = (at - prev.at).as_seconds_f64();
        if prev.pos.distance_m(pos) / secs > policy.max_speed_mps {
            return Err(FixRejection::ImplausibleJump);
        }
    }
    Ok(Fix {
        at,
        pos,
        accuracy_m: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(s))
    }

    fn now() -> DateTime<Utc> {
        at(3600).unwrap()
    }

    fn p(lat: f64, lon: f64, time: Option<DateTime<Utc>>) -> RawPoint {
        RawPoint { lat, lon, time }
    }

    #[test]
    fn each_rule_rejects_its_fix_and_keeps_the_rest() {
        let points = vec![
            p(43.7384, 7.4246, at(0)),
            p(f64::NAN, 7.4246, at(1)),
            p(43.7384, 200.0, at(1)),
            p(43.7385, 7.4247, None),
            p(43.7385, 7.4247, at(0)),           // same time as the first
            p(43.7386, 7.4248, at(-5)),          // earlier than the last accepted
            p(43.7500, 7.4248, at(2)),           // 1.3 km in 2 s
            p(43.7386, 7.4248, at(7200)),        // an hour past "now"
            p(43.7386, 7.4248, at(-40 * 86400)), // older than 30 days
            p(43.7387, 7.4249, at(3)),
        ];
        let track = Track::check(points, now(), &IngestPolicy::default()).unwrap();
        assert_eq!(track.fixes.len(), 2);
        let why: Vec<_> = track.rejected.iter().map(|r| r.1).collect();
        assert_eq!(
            why,
            vec![
                FixRejection::BadPosition,
                FixRejection::BadPosition,
                FixRejection::NoTime,
                FixRejection::Duplicate,
                FixRejection::OutOfOrder,
                FixRejection::ImplausibleJump,
                FixRejection::InFuture,
                FixRejection::TooOld,
            ]
        );
        let s = track.summary();
        assert_eq!((s.points, s.accepted), (10, 2));
        assert_eq!(s.rejected["bad_position"], 2);
        assert_eq!(s.start, at(0));
        assert_eq!(s.end, at(3));
    }

    #[test]
    fn a_track_with_nothing_usable_is_refused_with_the_reasons() {
        let err = Track::check(
            vec![p(91.0, 0.0, at(0)), p(0.0, 0.0, None)],
            now(),
            &IngestPolicy::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("1 bad_position") && text.contains("1 no_time"),
            "{text}"
        );
        assert!(matches!(
            Track::check(vec![], now(), &IngestPolicy::default()),
            Err(IngestError::NoPoints)
        ));
    }

    #[test]
    fn a_track_that_is_mostly_jumps_is_refused_naming_the_speed() {
        // 0.001 degree of latitude (111 m) a second: 400 km/h, a plane rather than a car.
        let plane: Vec<_> = (0..5i32)
            .map(|i| p(43.7 + 0.001 * f64::from(i), 7.4, at(i.into())))
            .collect();
        let err = Track::check(plane.clone(), now(), &IngestPolicy::default()).unwrap_err();
        assert_eq!(err.code(), "implausible_speed");
        assert!(
            matches!(
                err,
                IngestError::ImplausibleTrack {
                    rejected: 4,
                    total: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("60 m/s (216 km/h)"), "{err}");

        // Half or fewer is noise: the track stands without the jumps.
        let mut noisy = plane[..2].to_vec();
        let noisy_jump = LatLon::new(noisy[1].lat, noisy[1].lon).unwrap();
        noisy.extend((2..5).map(|i| p(43.7, 7.4, at(i))));
        let track = Track::check(noisy, now(), &IngestPolicy::default()).unwrap();
        assert_eq!(track.rejected, vec![(1, FixRejection::ImplausibleJump)]);
        // Where the jump landed is kept, for the driver's map of the drive.
        assert_eq!(track.rejected_at.len(), 1);
        assert_eq!(track.rejected_at[0].0, 1);
        assert_eq!(
            (track.rejected_at[0].1.lat, track.rejected_at[0].1.lon),
            (noisy_jump.lat, noisy_jump.lon)
        );
    }
}
