//! Radio rules: which measurements are physically plausible, which are corroborated by other
//! contributors, and what a cell's measurements add up to per technology and operator.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use covermap_domain::Cell;
use covermap_domain::rewards::{KnownEmitter, RadioSample};
use serde::Serialize;

use crate::policy::RadioRules;

/// Why a radio sample does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Implausible {
    /// The policy knows no signal range for its technology.
    UnknownTechnology,
    /// Outside the technology's reporting range.
    SignalOutOfRange,
    /// Stronger than the strongest emitter could deliver over the distance to its known site.
    AboveFreeSpaceBound,
}

/// Free-space path loss in dB over `distance_m` at `frequency_mhz` (Friis:
/// 20·log10(d/km) + 20·log10(f/MHz) + 32.44); distances under a metre count as one metre.
pub fn free_space_path_loss_db(distance_m: f64, frequency_mhz: f64) -> f64 {
    let d_km = distance_m.max(1.0) / 1000.0;
    20.0 * d_km.log10() + 20.0 * frequency_mhz.max(1.0).log10() + 32.44
}

/// Checks one sample against the technology's range and, where its emitter's site is known,
/// against the free-space bound: no signal can arrive stronger than the highest EIRP minus the
/// free-space loss (real paths only lose more).
pub fn plausibility(
    sample: &RadioSample,
    emitters: &HashMap<&str, &KnownEmitter>,
    rules: &RadioRules,
) -> Result<(), Implausible> {
    let Some([lo, hi]) = rules.signal_dbm.get(&sample.technology) else {
        return Err(Implausible::UnknownTechnology);
    };
    let Some(signal) = sample.signal_dbm else {
        return Ok(());
    };
    if signal < *lo || signal > *hi {
        return Err(Implausible::SignalOutOfRange);
    }
    if let Some(e) = emitters.get(sample.emitter.as_str()) {
        let d = haversine_m(sample.lat, sample.lon, e.lat, e.lon);
        let bound = rules.max_eirp_dbm - free_space_path_loss_db(d, e.frequency_mhz);
        if f64::from(signal) > bound {
            return Err(Implausible::AboveFreeSpaceBound);
        }
    }
    Ok(())
}

fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().asin()
}

/// What one cell's measurements of one network add up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkAggregate {
    pub cell: Cell,
    pub technology: String,
    pub operator: String,
    pub samples: u64,
    pub contributors: u64,
    pub best_dbm: Option<i32>,
    /// The lower median of the samples that carry a signal.
    pub median_dbm: Option<i32>,
}

/// Best and median signal, samples and distinct contributors per cell and (technology,
/// operator), ordered by cell, technology, operator.
pub fn aggregate<'a>(samples: impl IntoIterator<Item = &'a RadioSample>) -> Vec<NetworkAggregate> {
    type Key<'a> = (Cell, &'a str, &'a str);
    let mut groups: BTreeMap<Key<'a>, (u64, BTreeSet<&'a str>, Vec<i32>)> = BTreeMap::new();
    for s in samples {
        let g = groups
            .entry((s.cell, s.technology.as_str(), s.operator.as_str()))
            .or_default();
        g.0 += 1;
        if let Some(c) = &s.contributor {
            g.1.insert(c);
        }
        g.2.extend(s.signal_dbm);
    }
    groups
        .into_iter()
        .map(|((cell, technology, operator), (n, who, mut signals))| {
            signals.sort_unstable();
            NetworkAggregate {
                cell,
                technology: technology.to_owned(),
                operator: operator.to_owned(),
                samples: n,
                contributors: who.len() as u64,
                best_dbm: signals.last().copied(),
                median_dbm: (!signals.is_empty()).then(|| signals[(signals.len() - 1) / 2]),
            }
        })
        .collect()
}

/// Distinct contributors who measured each network in each cell or the `ring` cells around it:
/// a sample is corroborated when this reaches the policy's k.
pub fn corroboration<'a>(
    samples: impl IntoIterator<Item = (&'a RadioSample, &'a str)>,
    ring: u32,
) -> HashMap<(Cell, &'a str, &'a str), usize> {
    let mut by_network: HashMap<(&'a str, &'a str), HashMap<Cell, BTreeSet<&'a str>>> =
        HashMap::new();
    for (s, who) in samples {
        by_network
            .entry((s.technology.as_str(), s.operator.as_str()))
            .or_default()
            .entry(s.cell)
            .or_default()
            .insert(who);
    }
    let mut out = HashMap::new();
    for ((tech, op), cells) in &by_network {
        for cell in cells.keys() {
            let mut near: BTreeSet<&str> = BTreeSet::new();
            for n in cell.0.grid_disk::<Vec<_>>(ring) {
                if let Some(who) = cells.get(&Cell(n)) {
                    near.extend(who.iter().copied());
                }
            }
            out.insert((*cell, *tech, *op), near.len());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RewardPolicy;
    use chrono::{TimeZone, Utc};

    fn sample(tech: &str, signal: Option<i32>) -> RadioSample {
        let cell = h3o::LatLng::new(43.73, 7.42)
            .unwrap()
            .to_cell(h3o::Resolution::Eleven);
        RadioSample {
            contributor: Some("alice".into()),
            upload_id: 1,
            seq: 0,
            cell: Cell(cell),
            technology: tech.into(),
            operator: "208-1".into(),
            emitter: "lte:208:1:1:1".into(),
            signal_dbm: signal,
            observed_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            lat: 43.73,
            lon: 7.42,
        }
    }

    #[test]
    fn free_space_loss_matches_friis() {
        // 1 km at 2400 MHz: 32.44 + 67.60 = 100.04 dB.
        assert!((free_space_path_loss_db(1000.0, 2400.0) - 100.04).abs() < 0.01);
        // Each doubling of distance costs 6.02 dB.
        let d = free_space_path_loss_db(2000.0, 800.0) - free_space_path_loss_db(1000.0, 800.0);
        assert!((d - 6.02).abs() < 0.01);
    }

    #[test]
    fn ranges_and_the_free_space_bound_are_enforced() {
        let p = RewardPolicy::shipped();
        let r = &p.rules.radio;
        let none = HashMap::new();
        assert_eq!(plausibility(&sample("lte", Some(-90)), &none, r), Ok(()));
        assert_eq!(plausibility(&sample("lte", None), &none, r), Ok(()));
        assert_eq!(
            plausibility(&sample("lte", Some(-20)), &none, r),
            Err(Implausible::SignalOutOfRange)
        );
        assert_eq!(
            plausibility(&sample("6g", Some(-90)), &none, r),
            Err(Implausible::UnknownTechnology)
        );
        // A site 10 km away at 800 MHz: loss 110.5 dB, so nothing above 65 − 110.5 = −45.5 dBm.
        let site = KnownEmitter {
            emitter: "lte:208:1:1:1".into(),
            lat: 43.73 + 10_000.0 / 111_195.0,
            lon: 7.42,
            frequency_mhz: 800.0,
        };
        let known = HashMap::from([(site.emitter.as_str(), &site)]);
        assert_eq!(plausibility(&sample("lte", Some(-60)), &known, r), Ok(()));
        let mut near_site = sample("lte", Some(-44));
        near_site.signal_dbm = Some(-44);
        assert_eq!(
            plausibility(&near_site, &known, r),
            Err(Implausible::AboveFreeSpaceBound)
        );
    }

    #[test]
    fn aggregates_give_best_median_and_distinct_contributors() {
        let mut a = sample("lte", Some(-100));
        let mut b = sample("lte", Some(-80));
        let c = sample("lte", Some(-90));
        let d = sample("lte", None);
        b.contributor = Some("bob".into());
        a.seq = 1;
        let out = aggregate([&a, &b, &c, &d]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, 4);
        assert_eq!(out[0].contributors, 2);
        assert_eq!(out[0].best_dbm, Some(-80));
        assert_eq!(out[0].median_dbm, Some(-90));
    }

    #[test]
    fn corroboration_counts_contributors_in_the_ring() {
        let a = sample("lte", Some(-90));
        let mut b = sample("lte", Some(-90));
        let neighbour = a.cell.0.grid_disk::<Vec<_>>(1)[1];
        b.cell = Cell(neighbour);
        let mut far = sample("lte", Some(-90));
        far.cell = Cell(a.cell.0.grid_disk::<Vec<_>>(3).last().copied().unwrap());
        let counts = corroboration([(&a, "alice"), (&b, "bob"), (&far, "carol")], 1);
        assert_eq!(counts[&(a.cell, "lte", "208-1")], 2);
        assert_eq!(counts[&(far.cell, "lte", "208-1")], 1);
    }
}
