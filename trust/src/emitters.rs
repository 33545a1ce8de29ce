//! Radio emitters over a whole epoch: where each one stands, who heard it, and which readings
//! no real emitter could have produced.
//!
//! A sighting is only as good as its emitter. Like Ichnaea and beaconDB, covermap estimates each
//! emitter's site from the sightings of it (a weighted centroid: a strong signal is usually
//! heard near the site, so it weighs more, amplitude-weighted), carries the estimate from epoch
//! to epoch, and uses it:
//! - an emitter earns once enough independent contributors heard it (a cell id nobody else ever
//!   observed is nobody's coverage);
//! - a reading is checked against the site **the other contributors** place its emitter at —
//!   never against one the reader moved there itself: farther than the technology reaches, far
//!   outside where everyone else hears it, or stronger than free space allows over that
//!   distance, it is a violation;
//! - a batch whose cells nobody else heard, where others do measure the same operator, is
//!   fabricated.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use covermap_domain::Cell;
use covermap_domain::rewards::{KnownEmitter, RadioSample};
use serde::Serialize;

use crate::local::{Plane, dist};
use crate::rules::RadioTrustRules;
use crate::{Finding, round3};

/// A site carried over from earlier epochs weighs as this many of its sightings at −90 dBm, at
/// most.
const PRIOR_SIGHTINGS: u64 = 50;
/// Observers kept per emitter.
const MAX_OBSERVERS: usize = 16;
/// A reading is also out of place beyond this many times the spread of everyone else's
/// sightings (and a share of the technology's range), once they have this many.
const SPREAD_FACTOR: f64 = 5.0;
const SPREAD_FLOOR_SHARE: f64 = 0.3;
const SPREAD_MIN_SIGHTINGS: usize = 5;

/// Free-space path loss in dB over `distance_m` at `frequency_mhz` (Friis:
/// 20·log10(d/km) + 20·log10(f/MHz) + 32.44); distances under a metre count as one metre.
pub fn free_space_path_loss_db(distance_m: f64, frequency_mhz: f64) -> f64 {
    let d_km = distance_m.max(1.0) / 1000.0;
    20.0 * d_km.log10() + 20.0 * frequency_mhz.max(1.0).log10() + 32.44
}

/// The lowest carrier a technology uses in Europe (MHz): where an emitter's own is unknown, the
/// free-space bound assumes it, the most lenient choice (loss grows with frequency).
pub fn lowest_band_mhz(technology: &str) -> f64 {
    match technology {
        "gsm" | "wcdma" => 900.0,
        "lte" | "nr" => 700.0,
        _ => 2400.0,
    }
}

/// The parts of a cell's key `radio:mcc:mnc:area:cid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CellId<'a> {
    radio: &'a str,
    operator: (&'a str, &'a str),
    area: &'a str,
}

fn cell_id(key: &str) -> Option<CellId<'_>> {
    let mut parts = key.split(':');
    let radio = parts.next()?;
    if !matches!(radio, "gsm" | "wcdma" | "lte" | "nr") {
        return None;
    }
    let (mcc, mnc, area) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    Some(CellId {
        radio,
        operator: (mcc, mnc),
        area,
    })
}

/// What an epoch's radio comes to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadioAssessment {
    /// For each input sample, in input order: whether it counts — eligible, its emitter heard
    /// by enough independent contributors, and in place against the others' site.
    pub counts: Vec<bool>,
    /// Findings against uploads, by upload id.
    pub findings: BTreeMap<i64, Vec<Finding>>,
    /// The emitters heard in the epoch with their sites, by emitter: the next epoch's
    /// [`KnownEmitter`]s.
    pub sites: Vec<KnownEmitter>,
}

/// Weighted sums of sightings on a plane.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    w: f64,
    x: f64,
    y: f64,
    /// Σ w·(x² + y²), for the spread.
    xx: f64,
    n: usize,
}

impl Sums {
    fn add(&mut self, w: f64, p: [f64; 2]) {
        self.w += w;
        self.x += w * p[0];
        self.y += w * p[1];
        self.xx += w * (p[0] * p[0] + p[1] * p[1]);
        self.n += 1;
    }

    fn minus(&self, o: &Sums) -> Sums {
        Sums {
            w: self.w - o.w,
            x: self.x - o.x,
            y: self.y - o.y,
            xx: self.xx - o.xx,
            n: self.n.saturating_sub(o.n),
        }
    }

    fn centre(&self) -> Option<[f64; 2]> {
        (self.w > 1e-9).then(|| [self.x / self.w, self.y / self.w])
    }

    /// Weighted RMS distance from the centre.
    fn spread(&self) -> f64 {
        match self.centre() {
            Some(c) => (self.xx / self.w - c[0] * c[0] - c[1] * c[1])
                .max(0.0)
                .sqrt(),
            None => 0.0,
        }
    }
}

/// A sighting's weight: its amplitude relative to −100 dBm (a sighting 20 dB stronger weighs ten
/// times more); one without a signal weighs little.
fn weight(signal: Option<i32>) -> f64 {
    match signal {
        Some(s) => 10f64.powf((f64::from(s) + 100.0) / 20.0).clamp(0.1, 1000.0),
        None => 0.1,
    }
}

/// One emitter's sightings of the epoch, by contributor.
struct EmitterTally<'a> {
    plane: Plane,
    by_contributor: BTreeMap<&'a str, Sums>,
    all: Sums,
    prior: Option<(&'a KnownEmitter, Sums)>,
}

/// Assesses an epoch's radio. `eligible[i]` says whether sample `i` may count at all (its upload
/// trusted, its contributor set, its signal in its technology's range); only eligible samples
/// place emitters and witness them.
///
/// Sites are placed twice: once from every eligible sighting, then again without the uploads
/// the first pass caught, so that a fabricator's loud, far-away readings cannot drag a real
/// emitter's site towards themselves and make honest readings look out of place.
pub fn assess(
    samples: &[RadioSample],
    eligible: &[bool],
    previous: &[KnownEmitter],
    rules: &RadioTrustRules,
    max_eirp_dbm: f64,
) -> RadioAssessment {
    let prior: HashMap<&str, &KnownEmitter> =
        previous.iter().map(|e| (e.emitter.as_str(), e)).collect();
    let mut order: Vec<usize> = (0..samples.len())
        .filter(|&i| eligible.get(i).copied().unwrap_or(false) && samples[i].contributor.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&samples[a], &samples[b]);
        (&x.emitter, &x.contributor, x.upload_id, x.seq).cmp(&(
            &y.emitter,
            &y.contributor,
            y.upload_id,
            y.seq,
        ))
    });
    let first = Pass::run(samples, &order, &prior, rules, max_eirp_dbm);
    let caught: BTreeSet<i64> = first.findings.keys().copied().collect();
    let kept: Vec<usize> = order
        .iter()
        .copied()
        .filter(|i| !caught.contains(&samples[*i].upload_id))
        .collect();
    let second = Pass::run(samples, &kept, &prior, rules, max_eirp_dbm);
    let sites = second.sites();
    let mut findings = first.findings;
    for (upload, f) in second.findings {
        findings.entry(upload).or_default().extend(f);
    }
    let mut counts = vec![false; samples.len()];
    for i in kept {
        counts[i] = second.counts.get(&i).copied().unwrap_or(false);
    }
    RadioAssessment {
        counts,
        findings,
        sites,
    }
}

/// One placing of the sites and checking of the readings against them.
struct Pass<'a> {
    tallies: BTreeMap<&'a str, EmitterTally<'a>>,
    observers: BTreeMap<&'a str, BTreeSet<&'a str>>,
    counts: HashMap<usize, bool>,
    findings: BTreeMap<i64, Vec<Finding>>,
}

impl<'a> Pass<'a> {
    fn run(
        samples: &'a [RadioSample],
        order: &[usize],
        prior: &HashMap<&'a str, &'a KnownEmitter>,
        rules: &RadioTrustRules,
        max_eirp_dbm: f64,
    ) -> Self {
        // Sums per emitter and contributor, in a fixed order so every machine adds the same way.
        let mut tallies: BTreeMap<&'a str, EmitterTally<'a>> = BTreeMap::new();
        for &i in order {
            let s = &samples[i];
            let who = s.contributor.as_deref().unwrap_or_default();
            let t = tallies.entry(s.emitter.as_str()).or_insert_with(|| {
                let plane = Plane::around(covermap_domain::LatLon {
                    lat: s.lat,
                    lon: s.lon,
                });
                let prior = prior.get(s.emitter.as_str()).map(|k| {
                    let n = k.samples.clamp(1, PRIOR_SIGHTINGS);
                    let xy = plane.xy(covermap_domain::LatLon {
                        lat: k.lat,
                        lon: k.lon,
                    });
                    let w = weight(Some(-90)) * n as f64;
                    let p = Sums {
                        w,
                        x: w * xy[0],
                        y: w * xy[1],
                        xx: w * (xy[0] * xy[0] + xy[1] * xy[1] + k.radius_m * k.radius_m),
                        n: n as usize,
                    };
                    (*k, p)
                });
                EmitterTally {
                    plane,
                    by_contributor: BTreeMap::new(),
                    all: Sums::default(),
                    prior,
                }
            });
            let p = t.plane.xy(covermap_domain::LatLon {
                lat: s.lat,
                lon: s.lon,
            });
            let w = weight(s.signal_dbm);
            t.by_contributor.entry(who).or_default().add(w, p);
            t.all.add(w, p);
        }

        // Who heard each emitter: earlier epochs' witnesses and this one's.
        let observers: BTreeMap<&'a str, BTreeSet<&'a str>> = tallies
            .iter()
            .map(|(e, t)| {
                let mut who: BTreeSet<&str> = t.by_contributor.keys().copied().collect();
                if let Some((k, _)) = &t.prior {
                    who.extend(k.observers.iter().map(String::as_str));
                }
                (*e, who)
            })
            .collect();
        let min = rules.emitter_min_contributors as usize;
        let verified = |e: &str| observers.get(e).is_some_and(|w| w.len() >= min);

        // Each sample against the site everyone else places its emitter at.
        let mut counts = HashMap::with_capacity(order.len());
        let mut checked: BTreeMap<i64, (u32, u32)> = BTreeMap::new();
        for &i in order {
            let s = &samples[i];
            let who = s.contributor.as_deref().unwrap_or_default();
            let Some(t) = tallies.get(s.emitter.as_str()) else {
                continue;
            };
            let mine = t.by_contributor.get(who).copied().unwrap_or_default();
            let mut others = t.all.minus(&mine);
            if let Some((k, p)) = &t.prior
                && k.observers.iter().any(|o| o != who)
            {
                others.w += p.w;
                others.x += p.x;
                others.y += p.y;
                others.xx += p.xx;
                others.n += p.n;
            }
            let violation = others.centre().map(|c| {
                let r = others.spread();
                let xy = t.plane.xy(covermap_domain::LatLon {
                    lat: s.lat,
                    lon: s.lon,
                });
                let d = (dist(xy, c) - r).max(1.0);
                let range = rules
                    .max_range_m
                    .get(&s.technology)
                    .copied()
                    .unwrap_or(f64::INFINITY);
                let frequency = t
                    .prior
                    .as_ref()
                    .map(|(k, _)| k.frequency_mhz)
                    .filter(|f| *f > 0.0)
                    .unwrap_or_else(|| lowest_band_mhz(&s.technology));
                let too_far = d > range;
                let out_of_place = others.n >= SPREAD_MIN_SIGHTINGS
                    && dist(xy, c) > (SPREAD_FACTOR * r).max(SPREAD_FLOOR_SHARE * range);
                let too_strong = s.signal_dbm.is_some_and(|sig| {
                    f64::from(sig) > max_eirp_dbm - free_space_path_loss_db(d, frequency)
                });
                too_far || out_of_place || too_strong
            });
            if let Some(v) = violation {
                let e = checked.entry(s.upload_id).or_default();
                e.0 += 1;
                e.1 += u32::from(v);
            }
            counts.insert(i, verified(&s.emitter) && violation != Some(true));
        }

        let mut findings: BTreeMap<i64, Vec<Finding>> = BTreeMap::new();
        for (upload, (n, bad)) in &checked {
            if *bad >= rules.site_violations
                && f64::from(*bad) >= rules.site_violation_share * f64::from(*n)
            {
                findings.entry(*upload).or_default().push(Finding::new(
                    "site_violation",
                    format!(
                        "{bad} of {n} readings lie farther from their emitter, or stronger, than the site other contributors place it at allows"
                    ),
                ));
            }
        }
        fabricated(samples, order, &observers, &verified, rules, &mut findings);
        Self {
            tallies,
            observers,
            counts,
            findings,
        }
    }

    /// Every emitter heard, at the site all its sightings (and its earlier site) place it.
    fn sites(&self) -> Vec<KnownEmitter> {
        self.tallies
            .iter()
            .filter_map(|(e, t)| {
                let mut sums = t.all;
                let mut samples_seen = sums.n as u64;
                let mut frequency = 0.0;
                if let Some((k, p)) = &t.prior {
                    sums.w += p.w;
                    sums.x += p.x;
                    sums.y += p.y;
                    sums.xx += p.xx;
                    samples_seen = k.samples + t.all.n as u64;
                    frequency = k.frequency_mhz;
                }
                let c = sums.centre()?;
                let pos = unproject(&t.plane, c);
                let mut who: Vec<String> = self
                    .observers
                    .get(e)
                    .map(|w| w.iter().map(|s| (*s).to_owned()).collect())
                    .unwrap_or_default();
                who.truncate(MAX_OBSERVERS);
                Some(KnownEmitter {
                    emitter: (*e).to_owned(),
                    lat: (pos.0 * 1e7).round() / 1e7,
                    lon: (pos.1 * 1e7).round() / 1e7,
                    frequency_mhz: frequency,
                    samples: samples_seen,
                    observers: who,
                    radius_m: round3(sums.spread()),
                })
            })
            .collect()
    }
}

/// The position of a point of `plane`, as (lat, lon).
fn unproject(plane: &Plane, xy: [f64; 2]) -> (f64, f64) {
    // The plane is linear in latitude and longitude: two reference points give the inverse.
    let o = plane.xy(covermap_domain::LatLon { lat: 0.0, lon: 0.0 });
    let one = plane.xy(covermap_domain::LatLon { lat: 1.0, lon: 1.0 });
    let lon = (xy[0] - o[0]) / (one[0] - o[0]);
    let lat = (xy[1] - o[1]) / (one[1] - o[1]);
    (lat, lon)
}

/// Cells nobody else heard where others do measure their operator.
fn fabricated(
    samples: &[RadioSample],
    order: &[usize],
    observers: &BTreeMap<&str, BTreeSet<&str>>,
    verified: &dyn Fn(&str) -> bool,
    rules: &RadioTrustRules,
    findings: &mut BTreeMap<i64, Vec<Finding>>,
) {
    let resolution =
        h3o::Resolution::try_from(rules.area_resolution).unwrap_or(h3o::Resolution::Six);
    let area_of = |c: Cell| c.0.parent(resolution);
    // (radio, operator, area) → who heard verified cells of it there, and their area codes.
    type Key<'a> = (&'a str, (&'a str, &'a str), h3o::CellIndex);
    let mut around: BTreeMap<Key<'_>, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for &i in order {
        let s = &samples[i];
        let (Some(id), Some(area), Some(who)) = (
            cell_id(&s.emitter),
            area_of(s.cell),
            s.contributor.as_deref(),
        ) else {
            continue;
        };
        if !verified(&s.emitter) {
            continue;
        }
        let e = around.entry((id.radio, id.operator, area)).or_default();
        e.0.insert(who);
        e.1.insert(id.area);
    }
    // Per upload: its distinct cells where others measure the operator, and which of them
    // nobody else heard, or carry an area code none of the others' carry.
    let mut tally: BTreeMap<i64, BTreeMap<&str, (bool, bool)>> = BTreeMap::new();
    for &i in order {
        let s = &samples[i];
        let (Some(id), Some(area), Some(who)) = (
            cell_id(&s.emitter),
            area_of(s.cell),
            s.contributor.as_deref(),
        ) else {
            continue;
        };
        let mut others_here = false;
        let mut codes: BTreeSet<&str> = BTreeSet::new();
        for a in area.grid_disk::<Vec<_>>(1) {
            if let Some((who_there, area_codes)) = around.get(&(id.radio, id.operator, a))
                && who_there.iter().any(|w| *w != who)
            {
                others_here = true;
                codes.extend(area_codes.iter().copied());
            }
        }
        if !others_here {
            continue;
        }
        let unknown = observers
            .get(s.emitter.as_str())
            .is_none_or(|o| o.iter().all(|w| *w == who));
        let misfit = !codes.contains(id.area);
        tally
            .entry(s.upload_id)
            .or_default()
            .insert(s.emitter.as_str(), (unknown, misfit));
    }
    for (upload, cells) in tally {
        let n = cells.len() as u32;
        let unknown = cells.values().filter(|c| c.0).count() as u32;
        let misfit = cells.values().filter(|c| c.0 && c.1).count() as u32;
        if unknown >= rules.fabricated_cells
            && f64::from(unknown) >= rules.fabricated_share * f64::from(n)
        {
            findings.entry(upload).or_default().push(Finding::new(
                "fabricated_cells",
                format!(
                    "{unknown} of its {n} cells were heard by nobody else where others measure the same operators ({misfit} with an area code none of theirs has)"
                ),
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn sample(
        who: &str,
        upload: i64,
        seq: i32,
        emitter: &str,
        lat: f64,
        lon: f64,
        s: i32,
    ) -> RadioSample {
        let cell = h3o::LatLng::new(lat, lon)
            .unwrap()
            .to_cell(h3o::Resolution::Eleven);
        RadioSample {
            contributor: Some(who.into()),
            upload_id: upload,
            seq,
            cell: Cell(cell),
            technology: emitter.split(':').next().unwrap().into(),
            operator: "208-1".into(),
            emitter: emitter.into(),
            signal_dbm: Some(s),
            observed_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            lat,
            lon,
        }
    }

    /// Alice and Bob drive past a real cell; each hears it around (43.73, 7.42).
    fn honest() -> Vec<RadioSample> {
        let mut v = Vec::new();
        for (u, who) in [(1, "alice"), (2, "bob")] {
            for i in 0..10 {
                let d = f64::from(i) * 0.001;
                v.push(sample(
                    who,
                    u,
                    i,
                    "lte:208:1:100:25601",
                    43.73 + d,
                    7.42,
                    -80 - i,
                ));
                v.push(sample(
                    who,
                    u,
                    100 + i,
                    "lte:208:1:100:25602",
                    43.73 - d,
                    7.42,
                    -85 - i,
                ));
            }
        }
        v
    }

    #[test]
    fn cells_two_contributors_heard_count_and_one_nobody_else_heard_does_not() {
        let rules = RadioTrustRules::default();
        let mut v = honest();
        v.push(sample(
            "mallory",
            3,
            0,
            "lte:208:1:100:999999",
            43.73,
            7.42,
            -70,
        ));
        let ok = vec![true; v.len()];
        let a = assess(&v, &ok, &[], &rules, 65.0);
        assert!(a.counts[..40].iter().all(|c| *c));
        assert!(!a.counts[40]);
        assert_eq!(a.sites.len(), 3);
        let site = a
            .sites
            .iter()
            .find(|s| s.emitter.ends_with("25601"))
            .unwrap();
        assert_eq!(site.observers, vec!["alice", "bob"]);
        assert!((site.lat - 43.7345).abs() < 0.003, "{site:?}");
    }

    #[test]
    fn a_real_cell_claimed_far_from_its_site_or_too_strong_is_a_violation() {
        let rules = RadioTrustRules::default();
        let mut v = honest();
        // 30 km north, and 3 km away at −30 dBm.
        for i in 0..4 {
            v.push(sample(
                "mallory",
                3,
                i,
                "lte:208:1:100:25601",
                44.0,
                7.42,
                -110,
            ));
            v.push(sample(
                "mallory",
                3,
                10 + i,
                "lte:208:1:100:25602",
                43.757,
                7.42,
                -30,
            ));
        }
        let ok = vec![true; v.len()];
        let a = assess(&v, &ok, &[], &rules, 65.0);
        assert!(a.counts[..40].iter().all(|c| *c), "honest readings stay");
        assert!(a.counts[40..].iter().all(|c| !*c));
        let f = &a.findings[&3];
        assert_eq!(f[0].code, "site_violation");
        assert!(!a.findings.contains_key(&1) && !a.findings.contains_key(&2));
    }

    #[test]
    fn invented_cells_where_others_measure_the_operator_are_fabricated() {
        let rules = RadioTrustRules::default();
        let mut v = honest();
        for i in 0..5 {
            v.push(sample(
                "mallory",
                3,
                i,
                &format!("lte:208:1:{}:{}", 7000 + i, 1_000_000 + i),
                43.731,
                7.42,
                -90,
            ));
        }
        let ok = vec![true; v.len()];
        let a = assess(&v, &ok, &[], &rules, 65.0);
        assert_eq!(a.findings[&3][0].code, "fabricated_cells");
        assert!(a.findings[&3][0].detail.contains("5 with an area code"));
        // Where nobody else measures the operator, an unknown cell is only unpaid.
        let far: Vec<RadioSample> = (0..5)
            .map(|i| sample("carol", 4, i, &format!("lte:208:1:9:{i}"), 45.5, 6.0, -90))
            .collect();
        let ok = vec![true; far.len()];
        let a = assess(&far, &ok, &[], &rules, 65.0);
        assert!(a.findings.is_empty() && a.counts.iter().all(|c| !*c));
    }

    #[test]
    fn earlier_witnesses_carry_over_and_the_assessment_ignores_input_order() {
        let rules = RadioTrustRules::default();
        let prior = KnownEmitter {
            emitter: "lte:208:1:100:25601".into(),
            lat: 43.734,
            lon: 7.42,
            frequency_mhz: 0.0,
            samples: 20,
            observers: vec!["bob".into()],
            radius_m: 300.0,
        };
        let v: Vec<RadioSample> = honest().into_iter().filter(|s| s.upload_id == 1).collect();
        let ok = vec![true; v.len()];
        let a = assess(&v, &ok, std::slice::from_ref(&prior), &rules, 65.0);
        // Alice's sightings of the cell Bob heard last epoch count; the other cell waits.
        assert!(
            v.iter()
                .zip(&a.counts)
                .all(|(s, c)| *c == s.emitter.ends_with("25601"))
        );
        let mut rev = v.clone();
        rev.reverse();
        let b = assess(&rev, &ok, std::slice::from_ref(&prior), &rules, 65.0);
        assert_eq!(a.sites, b.sites);
        assert_eq!(a.findings, b.findings);
    }

    #[test]
    fn unproject_inverts_the_plane() {
        let plane = Plane::around(covermap_domain::LatLon {
            lat: 43.7,
            lon: 7.4,
        });
        let xy = plane.xy(covermap_domain::LatLon {
            lat: 43.71,
            lon: 7.43,
        });
        let (lat, lon) = unproject(&plane, xy);
        assert!((lat - 43.71).abs() < 1e-9 && (lon - 7.43).abs() < 1e-9);
    }
}
