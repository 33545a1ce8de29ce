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
use rustc_hash::FxHashMap;
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
const SPREAD_FLOOR_SHARE: f64 = 0.5;
const SPREAD_MIN_SIGHTINGS: usize = 5;
/// A reading is compared with what other contributors heard within this distance of it.
const LOCAL_RADIUS_M: f64 = 200.0;
/// Once others' readings of its emitter there number this many.
const LOCAL_MIN_SAME: usize = 3;
/// Or, for a cell none of them heard there, once their readings of its operator's cells (same
/// technology) there number this many: a cell loud enough to serve a phone there is in them.
const LOCAL_MIN_OPERATOR: usize = 10;

/// The farthest a reading can be from its emitter's site: where free space from `eirp_dbm` at
/// `frequency_mhz` leaves `signal_dbm` (inverse of [`free_space_path_loss_db`]), metres.
pub fn free_space_reach_m(eirp_dbm: f64, signal_dbm: f64, frequency_mhz: f64) -> f64 {
    let db = eirp_dbm - signal_dbm - 32.44 - 20.0 * frequency_mhz.max(1.0).log10();
    1000.0 * 10f64.powf(db / 20.0)
}

/// Two positions of one reading may each be off by this much (GNSS error, the scan's lag).
const POSITION_SLACK_M: f64 = 50.0;
/// A reading is compared with its batch's this many strongest readings of the same cell.
const CONTRADICTION_REFERENCES: usize = 3;

/// Batches that contradict themselves: one cell heard so loud at places so far apart that no
/// single site could serve both under free space from the technology's strongest emitter.
///
/// Each reading bounds where its cell's site can be — within the free-space reach of its
/// signal — and a batch's readings of one cell must share a site. This needs no other
/// contributor: a batch that reports a far cell as if beside the phone, or drags one cell along
/// a drive, is caught on its own readings. Only cells count (they stand still; a Wi-Fi or
/// Bluetooth emitter may ride in the same bus). A reading contradicts when it lies farther from
/// one of its batch's strongest readings of the same cell than their two reaches (and the
/// position slack) together; a batch with `site_violations` such readings, and that share of
/// its cell readings, is flagged.
pub fn contradictions(
    samples: &[RadioSample],
    eligible: &[bool],
    rules: &RadioTrustRules,
    max_eirp_dbm: f64,
) -> BTreeMap<i64, Vec<Finding>> {
    // Per batch and cell: (signal, position) of its readings with a signal.
    let mut by_cell: BTreeMap<(i64, &str), Vec<(i32, covermap_domain::LatLon)>> = BTreeMap::new();
    let mut cell_readings: BTreeMap<i64, u32> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if !eligible.get(i).copied().unwrap_or(false)
            || matches!(s.technology.as_str(), "wifi" | "bluetooth")
        {
            continue;
        }
        let Some(sig) = s.signal_dbm else { continue };
        *cell_readings.entry(s.upload_id).or_default() += 1;
        by_cell
            .entry((s.upload_id, s.emitter.as_str()))
            .or_default()
            .push((
                sig,
                covermap_domain::LatLon {
                    lat: s.lat,
                    lon: s.lon,
                },
            ));
    }
    let mut bad: BTreeMap<i64, (u32, &str)> = BTreeMap::new();
    for ((upload, emitter), mut readings) in by_cell {
        if readings.len() < 2 {
            continue;
        }
        let technology = emitter.split(':').next().unwrap_or_default();
        let eirp = rules
            .max_eirp_dbm
            .get(technology)
            .copied()
            .unwrap_or(max_eirp_dbm);
        let frequency = lowest_band_mhz(technology);
        let reach = |sig: i32| free_space_reach_m(eirp, f64::from(sig), frequency);
        // Strongest first, in a fixed order.
        readings.sort_by(|a, b| {
            (b.0, a.1.lat, a.1.lon)
                .partial_cmp(&(a.0, b.1.lat, b.1.lon))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let plane = Plane::around(readings[0].1);
        let xy: Vec<[f64; 2]> = readings.iter().map(|r| plane.xy(r.1)).collect();
        let refs = CONTRADICTION_REFERENCES.min(readings.len());
        let mut contradicting = 0;
        for (i, r) in readings.iter().enumerate() {
            let out = (0..refs).filter(|&j| j != i).any(|j| {
                dist(xy[i], xy[j]) > reach(r.0) + reach(readings[j].0) + 2.0 * POSITION_SLACK_M
            });
            contradicting += u32::from(out);
        }
        if contradicting > 0 {
            let e = bad.entry(upload).or_insert((0, emitter));
            e.0 += contradicting;
        }
    }
    let mut findings: BTreeMap<i64, Vec<Finding>> = BTreeMap::new();
    for (upload, (n, example)) in bad {
        let of = cell_readings.get(&upload).copied().unwrap_or(0);
        if n >= rules.site_violations && f64::from(n) >= rules.site_violation_share * f64::from(of)
        {
            findings.entry(upload).or_default().push(Finding::new(
                "self_contradiction",
                format!(
                    "{n} of {of} cell readings heard too loud too far apart for one site (free space from the strongest emitter), e.g. {example}"
                ),
            ));
        }
    }
    findings
}

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
    /// The site (base station) part of the cell id where the technology has one: the eNB of an
    /// LTE ECI (id ÷ 256), the gNB of an NR NCI (÷ 4096, the shortest gNB split), the RNC of a
    /// UMTS cell (÷ 65536); GSM's 16-bit cell id has none.
    site: Option<u64>,
}

fn cell_id(key: &str) -> Option<CellId<'_>> {
    let mut parts = key.split(':');
    let radio = parts.next()?;
    if !matches!(radio, "gsm" | "wcdma" | "lte" | "nr") {
        return None;
    }
    let (mcc, mnc, area) = (parts.next()?, parts.next()?, parts.next()?);
    let cid: u64 = parts.next()?.parse().ok()?;
    let site = match radio {
        "lte" => Some(cid >> 8),
        "nr" => Some(cid >> 12),
        "wcdma" => Some(cid >> 16),
        _ => None,
    };
    Some(CellId {
        radio,
        operator: (mcc, mnc),
        area,
        site,
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

impl<'a> EmitterTally<'a> {
    /// An emitter's tally before its first sighting `s` (its plane centred there), with its
    /// earlier epochs' site from `prior` if it has one.
    fn first(s: &RadioSample, prior: &HashMap<&'a str, &'a KnownEmitter>) -> Self {
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
        Self {
            plane,
            by_contributor: BTreeMap::new(),
            all: Sums::default(),
            prior,
        }
    }
}

/// Assesses an epoch's radio. `eligible[i]` says whether sample `i` may count at all (its upload
/// trusted, its contributor set, its signal in its technology's range); only eligible samples
/// place emitters and witness them.
///
/// Sites are placed twice: once from every eligible sighting, then again without the readings
/// the first pass found out of place, so that a fabricator's loud, far-away readings cannot
/// drag a real emitter's site towards themselves and make honest readings look out of place;
/// every reading is then checked against the second placing, and only its findings stand.
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
    let ids = Ids::of(samples);
    let first = Pass::run(samples, &ids, &order, &order, &prior, rules, max_eirp_dbm);
    let kept: Vec<usize> = order
        .iter()
        .copied()
        .filter(|i| !first.violations.contains(i))
        .collect();
    let second = Pass::run(samples, &ids, &kept, &order, &prior, rules, max_eirp_dbm);
    let sites = second.sites();
    let mut counts = vec![false; samples.len()];
    for i in order {
        counts[i] = second.counts.get(&i).copied().unwrap_or(false);
    }
    RadioAssessment {
        counts,
        findings: second.findings,
        sites,
    }
}

/// One placing of the sites and checking of the readings against them.
struct Pass<'a> {
    tallies: BTreeMap<&'a str, EmitterTally<'a>>,
    observers: BTreeMap<&'a str, BTreeSet<&'a str>>,
    counts: HashMap<usize, bool>,
    /// The checked samples found out of place.
    violations: std::collections::HashSet<usize>,
    findings: BTreeMap<i64, Vec<Finding>>,
}

impl<'a> Pass<'a> {
    /// Places sites from the sightings of `tally` and checks those of `check` against them.
    fn run(
        samples: &'a [RadioSample],
        ids: &Ids,
        tally: &[usize],
        check: &[usize],
        prior: &HashMap<&'a str, &'a KnownEmitter>,
        rules: &RadioTrustRules,
        max_eirp_dbm: f64,
    ) -> Self {
        // Sums per emitter and contributor, in a fixed order so every machine adds the same way.
        // The sightings come in emitter order: each emitter's tally is looked up once for its
        // run of sightings (taken out of the map while they are added, so an emitter met again
        // later goes on where it stopped).
        let mut tallies: BTreeMap<&'a str, EmitterTally<'a>> = BTreeMap::new();
        let mut current: Option<(&'a str, EmitterTally<'a>)> = None;
        for &i in tally {
            let s = &samples[i];
            let who = s.contributor.as_deref().unwrap_or_default();
            let emitter = s.emitter.as_str();
            if current.as_ref().is_none_or(|(e, _)| *e != emitter) {
                if let Some((e, t)) = current.take() {
                    tallies.insert(e, t);
                }
                let t = tallies
                    .remove(emitter)
                    .unwrap_or_else(|| EmitterTally::first(s, prior));
                current = Some((emitter, t));
            }
            let Some((_, t)) = current.as_mut() else {
                continue;
            };
            let p = t.plane.xy(covermap_domain::LatLon {
                lat: s.lat,
                lon: s.lon,
            });
            let w = weight(s.signal_dbm);
            t.by_contributor.entry(who).or_default().add(w, p);
            t.all.add(w, p);
        }
        if let Some((e, t)) = current {
            tallies.insert(e, t);
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

        // Everyone's sightings on a grid, to compare a reading with what others heard there.
        let grid_plane = tally.first().map(|&i| {
            Plane::around(covermap_domain::LatLon {
                lat: samples[i].lat,
                lon: samples[i].lon,
            })
        });
        let cell_of = |s: &RadioSample| {
            grid_plane.map(|g| {
                let p = g.xy(covermap_domain::LatLon {
                    lat: s.lat,
                    lon: s.lon,
                });
                (
                    (p[0] / LOCAL_RADIUS_M).floor() as i64,
                    (p[1] / LOCAL_RADIUS_M).floor() as i64,
                )
            })
        };
        let mut grid = LocalGrid::default();
        for &i in tally {
            if let Some(k) = cell_of(&samples[i]) {
                grid.add(k, &samples[i], i, ids);
            }
        }

        // Each sample against the site everyone else places its emitter at.
        let mut counts = HashMap::with_capacity(check.len());
        let mut violations = std::collections::HashSet::new();
        let mut checked: BTreeMap<i64, (u32, u32)> = BTreeMap::new();
        // In emitter order too: an emitter's tally and whether it is verified, once a run.
        let mut run: Option<(&str, Option<&EmitterTally<'a>>, bool)> = None;
        for &i in check {
            let s = &samples[i];
            let who = s.contributor.as_deref().unwrap_or_default();
            let local = local_check(s, i, ids, &grid, cell_of(s), samples, rules);
            let emitter = s.emitter.as_str();
            let (tally_of, is_verified) = match run {
                Some((e, t, v)) if e == emitter => (t, v),
                _ => {
                    let found = (tallies.get(emitter), verified(emitter));
                    run = Some((emitter, found.0, found.1));
                    found
                }
            };
            let Some(t) = tally_of else {
                if local == Some(true) {
                    violations.insert(i);
                }
                if let Some(v) = local {
                    let e = checked.entry(s.upload_id).or_default();
                    e.0 += 1;
                    e.1 += u32::from(v);
                }
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
                let eirp = rules
                    .max_eirp_dbm
                    .get(&s.technology)
                    .copied()
                    .unwrap_or(max_eirp_dbm);
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
                // One or two sightings of an access point place it poorly; a cell's site is
                // wide enough that one other contributor's sightings do.
                let enough =
                    others.n >= 3 || !matches!(s.technology.as_str(), "wifi" | "bluetooth");
                let too_far = enough && d > range;
                let out_of_place = others.n >= SPREAD_MIN_SIGHTINGS
                    && dist(xy, c) > (SPREAD_FACTOR * r).max(SPREAD_FLOOR_SHARE * range);
                let too_strong = enough
                    && s.signal_dbm.is_some_and(|sig| {
                        f64::from(sig) > eirp - free_space_path_loss_db(d, frequency)
                    });
                too_far || out_of_place || too_strong
            });
            let violation = match (violation, local) {
                (None, l) => l,
                (Some(v), None) => Some(v),
                (Some(v), Some(l)) => Some(v || l),
            };
            if violation == Some(true) {
                violations.insert(i);
            }
            if let Some(v) = violation {
                let e = checked.entry(s.upload_id).or_default();
                e.0 += 1;
                e.1 += u32::from(v);
            }
            counts.insert(i, is_verified && violation != Some(true));
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
        fabricated(
            samples,
            tally,
            check,
            &observers,
            &verified,
            rules,
            &mut findings,
        );
        Self {
            tallies,
            observers,
            counts,
            violations,
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

/// A reading against what other contributors heard within [`LOCAL_RADIUS_M`] of it: louder
/// than all their readings of its emitter there by more than `local_margin_db` (shadow fading
/// moves a signal by 6 to 8 dB, not 30); or, for a cell at `local_strong_dbm` or stronger, one
/// none of them heard there although they heard plenty of its operator's cells. `None` where
/// there is too little to compare with.
/// Everyone's sightings on a grid of [`LOCAL_RADIUS_M`] squares, by emitter and (for cells) by
/// operator and technology, so a reading meets only the sightings that can matter to it.
#[derive(Default)]
struct LocalGrid {
    /// By square and emitter ([`Ids::emitter`]).
    by_emitter: FxHashMap<(Square, u32), Vec<usize>>,
    /// By square, technology and operator ([`Ids::operator`]).
    by_operator: FxHashMap<(Square, u32), Vec<usize>>,
}

/// Each sample's emitter, contributor, and technology and operator, numbered (by first
/// appearance; equal names, equal numbers): the local check looks up and compares each
/// sample's neighbours by these, not by their text.
struct Ids {
    emitter: Vec<u32>,
    /// `u32::MAX` for a sample with no contributor.
    contributor: Vec<u32>,
    operator: Vec<u32>,
}

impl Ids {
    fn of(samples: &[RadioSample]) -> Self {
        let mut emitters: FxHashMap<&str, u32> = FxHashMap::default();
        let mut contributors: FxHashMap<&str, u32> = FxHashMap::default();
        let mut operators: FxHashMap<(&str, &str), u32> = FxHashMap::default();
        let mut ids = Self {
            emitter: Vec::with_capacity(samples.len()),
            contributor: Vec::with_capacity(samples.len()),
            operator: Vec::with_capacity(samples.len()),
        };
        for s in samples {
            let n = emitters.len() as u32;
            ids.emitter
                .push(*emitters.entry(s.emitter.as_str()).or_insert(n));
            let n = contributors.len() as u32;
            ids.contributor.push(
                s.contributor
                    .as_deref()
                    .map_or(u32::MAX, |c| *contributors.entry(c).or_insert(n)),
            );
            let n = operators.len() as u32;
            ids.operator.push(
                *operators
                    .entry((s.technology.as_str(), s.operator.as_str()))
                    .or_insert(n),
            );
        }
        ids
    }
}

/// A square of the local grid.
type Square = (i64, i64);

impl LocalGrid {
    /// Files sample `i`, `s`, in square `at`.
    fn add(&mut self, at: (i64, i64), s: &RadioSample, i: usize, ids: &Ids) {
        self.by_emitter
            .entry((at, ids.emitter[i]))
            .or_default()
            .push(i);
        if !matches!(s.technology.as_str(), "wifi" | "bluetooth") {
            self.by_operator
                .entry((at, ids.operator[i]))
                .or_default()
                .push(i);
        }
    }
}

/// Checks sample `i`, `s`, against what others heard around it (`at`, its square).
fn local_check(
    s: &RadioSample,
    i: usize,
    ids: &Ids,
    grid: &LocalGrid,
    at: Option<(i64, i64)>,
    samples: &[RadioSample],
    rules: &RadioTrustRules,
) -> Option<bool> {
    let (gx, gy) = at?;
    let sig = s.signal_dbm?;
    let here = covermap_domain::LatLon {
        lat: s.lat,
        lon: s.lon,
    };
    // Another contributor's sighting within the radius (every sample assessed has one: two
    // without would be numbered alike, where their names, both none, never matched).
    let who = ids.contributor[i];
    debug_assert!(who != u32::MAX, "sample {i} has no contributor");
    let near = |k: usize| {
        let o = &samples[k];
        ids.contributor[k] != who
            && here.distance_m(covermap_domain::LatLon {
                lat: o.lat,
                lon: o.lon,
            }) <= LOCAL_RADIUS_M
    };
    let squares = || (-1..=1).flat_map(move |dx| (-1..=1).map(move |dy| (gx + dx, gy + dy)));
    let mut same: Option<i32> = None;
    let mut same_n = 0usize;
    for sq in squares() {
        for &k in grid
            .by_emitter
            .get(&(sq, ids.emitter[i]))
            .into_iter()
            .flatten()
        {
            if !near(k) {
                continue;
            }
            let o = &samples[k];
            same_n += 1;
            if let Some(x) = o.signal_dbm {
                same = Some(same.map_or(x, |m: i32| m.max(x)));
            }
        }
    }
    if same_n >= LOCAL_MIN_SAME {
        let loudest = same?;
        return Some(f64::from(sig) > f64::from(loudest) + rules.local_margin_db);
    }
    let cellular = !matches!(s.technology.as_str(), "wifi" | "bluetooth");
    if !cellular || same_n > 0 {
        return None;
    }
    let mut operator_n = 0usize;
    for sq in squares() {
        for &k in grid
            .by_operator
            .get(&(sq, ids.operator[i]))
            .into_iter()
            .flatten()
        {
            if near(k) {
                operator_n += 1;
                if operator_n >= LOCAL_MIN_OPERATOR {
                    return Some(f64::from(sig) >= rules.local_strong_dbm);
                }
            }
        }
    }
    None
}

/// Cells nobody else heard where others do measure their operator.
fn fabricated(
    samples: &[RadioSample],
    tally: &[usize],
    check: &[usize],
    observers: &BTreeMap<&str, BTreeSet<&str>>,
    verified: &dyn Fn(&str) -> bool,
    rules: &RadioTrustRules,
    findings: &mut BTreeMap<i64, Vec<Finding>>,
) {
    let resolution =
        h3o::Resolution::try_from(rules.area_resolution).unwrap_or(h3o::Resolution::Six);
    let area_of = |c: Cell| c.0.parent(resolution);
    // (radio, operator, area) → who heard verified cells of it there, their area codes and
    // their sites.
    type Key<'a> = (&'a str, (&'a str, &'a str), h3o::CellIndex);
    type Seen<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>, BTreeSet<u64>);
    let mut around: BTreeMap<Key<'_>, Seen<'_>> = BTreeMap::new();
    for &i in tally {
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
        e.2.extend(id.site);
    }
    // Per upload: its distinct cells where others measure the operator, which of them nobody
    // else heard, and which do not fit the operator's numbering there: an area code none of
    // the others' cells carries, or a site id far from every site id of theirs.
    let mut tally: BTreeMap<i64, BTreeMap<&str, (bool, bool)>> = BTreeMap::new();
    for &i in check {
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
        let mut sites: BTreeSet<u64> = BTreeSet::new();
        for a in area.grid_disk::<Vec<_>>(1) {
            if let Some((who_there, area_codes, site_ids)) = around.get(&(id.radio, id.operator, a))
                && who_there.iter().any(|w| *w != who)
            {
                others_here = true;
                codes.extend(area_codes.iter().copied());
                sites.extend(site_ids.iter().copied());
            }
        }
        if !others_here {
            continue;
        }
        let unknown = observers
            .get(s.emitter.as_str())
            .is_none_or(|o| o.iter().all(|w| *w == who));
        let far_site = id.site.is_some_and(|site| {
            !sites.is_empty()
                && sites
                    .range(
                        site.saturating_sub(rules.site_id_gap)
                            ..=site.saturating_add(rules.site_id_gap),
                    )
                    .next()
                    .is_none()
        });
        let misfit = !codes.contains(id.area) || far_site;
        tally
            .entry(s.upload_id)
            .or_default()
            .insert(s.emitter.as_str(), (unknown, misfit));
    }
    for (upload, cells) in tally {
        let n = cells.len() as u32;
        let unknown = cells.values().filter(|c| c.0).count() as u32;
        let misfit = cells.values().filter(|c| c.0 && c.1).count() as u32;
        if misfit >= rules.fabricated_cells
            && f64::from(misfit) >= rules.fabricated_share * f64::from(n)
        {
            findings.entry(upload).or_default().push(Finding::new(
                "fabricated_cells",
                format!(
                    "{misfit} of its {n} cells were heard by nobody else where others measure the same operators, with ids that fit none of that operator's there ({unknown} heard by nobody else in all)"
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
    fn a_batch_hearing_one_cell_loud_kilometres_apart_contradicts_itself() {
        let rules = RadioTrustRules::default();
        let eirp = rules.max_eirp_dbm["lte"];
        // LTE at −55 dBm reaches at most ~1.1 km in free space from 35 dBm at 700 MHz.
        let reach = free_space_reach_m(eirp, -55.0, 700.0);
        assert!((900.0..1400.0).contains(&reach), "{reach}");
        let loss = free_space_path_loss_db(reach, 700.0);
        assert!(
            (eirp - loss + 55.0).abs() < 1e-6,
            "reach inverts the path loss"
        );

        // Honest: the drive passes the site; loud near it, fading with distance.
        let mut v = honest();
        // Mallory's batch: one real cell "beside the phone" along 8 km of road.
        for i in 0..12 {
            v.push(sample(
                "mallory",
                3,
                i,
                "lte:208:1:100:25601",
                43.70 + f64::from(i) * 0.0065,
                7.42,
                -55 - (i % 3),
            ));
        }
        let all = vec![true; v.len()];
        let f = contradictions(&v, &all, &rules, 65.0);
        assert_eq!(f.keys().copied().collect::<Vec<_>>(), vec![3], "{f:?}");
        assert_eq!(f[&3][0].code, "self_contradiction");

        // Wi-Fi may ride along (a bus's hotspot): never a contradiction.
        let wifi: Vec<RadioSample> = (0..12)
            .map(|i| {
                let mut s = sample(
                    "carol",
                    4,
                    i,
                    "wifi:aa:bb:cc:dd:ee:ff",
                    43.70 + f64::from(i) * 0.0065,
                    7.42,
                    -40,
                );
                s.technology = "wifi".into();
                s
            })
            .collect();
        assert!(contradictions(&wifi, &vec![true; wifi.len()], &rules, 65.0).is_empty());
        // Readings not eligible are not looked at.
        assert!(contradictions(&v, &vec![false; v.len()], &rules, 65.0).is_empty());
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
        assert!(
            a.findings[&3][0].detail.starts_with("5 of its 5 cells"),
            "{:?}",
            a.findings
        );
        // A real cell nobody else heard yet, under the operator's area code and next to its
        // sites, is unpaid but not fabricated.
        let mut v = honest();
        for i in 0..5 {
            v.push(sample(
                "carol",
                4,
                i,
                &format!("lte:208:1:100:{}", 100 * 256 + 1 + i),
                43.731,
                7.42,
                -90,
            ));
        }
        let ok = vec![true; v.len()];
        let a = assess(&v, &ok, &[], &rules, 65.0);
        assert!(!a.findings.contains_key(&4), "{:?}", a.findings);
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
    fn equal_names_get_equal_numbers_and_different_ones_different() {
        let mut samples = vec![
            sample("alice", 1, 0, "lte:208-1:1", 43.73, 7.42, -80),
            sample("bob", 2, 0, "lte:208-1:2", 43.73, 7.42, -80),
            sample("alice", 3, 0, "lte:208-1:2", 43.73, 7.42, -80),
            sample("carol", 4, 0, "wifi:aa", 43.73, 7.42, -80),
        ];
        samples[1].operator = "208-10".into();
        samples[3].contributor = None;
        let ids = Ids::of(&samples);
        assert_eq!(ids.emitter, [0, 1, 1, 2]);
        assert_eq!(
            ids.contributor,
            [0, 1, 0, u32::MAX],
            "no contributor, no number"
        );
        // Technology and operator together: lte 208-1, lte 208-10, lte 208-1, wifi 208-1.
        assert_eq!(ids.operator, [0, 1, 0, 2]);
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
