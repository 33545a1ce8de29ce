//! Radio rules: which measurements are physically plausible, which are corroborated by other
//! contributors, and what a cell's measurements add up to per technology and operator.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use covermap_domain::Cell;
use covermap_domain::rewards::RadioSample;
use serde::Serialize;

use crate::policy::RadioRules;

/// Why a radio sample does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Implausible {
    /// The policy knows no signal range for its technology.
    UnknownTechnology,
    /// It carries no signal: it says an emitter exists, not what coverage it gives.
    NoSignal,
    /// Outside the technology's reporting range.
    SignalOutOfRange,
}

/// Free-space path loss (Friis); see `covermap_trust::emitters`, which checks readings against
/// their emitters' sites with it.
pub use covermap_trust::emitters::free_space_path_loss_db;

/// Checks one sample against its technology's reporting range. Whether its emitter is real and
/// the reading fits where that emitter stands is the epoch's to say, over every contributor's
/// sightings (`covermap_trust::emitters::assess`).
pub fn plausibility(sample: &RadioSample, rules: &RadioRules) -> Result<(), Implausible> {
    let Some([lo, hi]) = rules.signal_dbm.get(&sample.technology) else {
        return Err(Implausible::UnknownTechnology);
    };
    let Some(signal) = sample.signal_dbm else {
        return Err(Implausible::NoSignal);
    };
    if signal < *lo || signal > *hi {
        return Err(Implausible::SignalOutOfRange);
    }
    Ok(())
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

/// One cell's network as the radio map shows it: its aggregate of the plausible samples, and
/// how many contributors measured it in or around the cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkCoverage {
    #[serde(flatten)]
    pub aggregate: NetworkAggregate,
    pub corroborating_contributors: u64,
    /// At least `corroboration_k` contributors: it counts in full in the epoch.
    pub corroborated: bool,
}

/// The radio map of `samples` under the epoch's radio rules: each cell's networks from the
/// plausible samples (signal in range), with their corroboration; and how many samples were
/// left out as implausible.
pub fn networks(samples: &[RadioSample], rules: &RadioRules) -> (Vec<NetworkCoverage>, usize) {
    let plausible: Vec<&RadioSample> = samples
        .iter()
        .filter(|s| plausibility(s, rules).is_ok())
        .collect();
    let corroborated = corroboration(
        plausible
            .iter()
            .filter_map(|s| Some((*s, s.contributor.as_deref()?))),
        rules.corroboration_ring,
    );
    let networks = aggregate(plausible.iter().copied())
        .into_iter()
        .map(|n| {
            let k = corroborated
                .get(&(n.cell, n.technology.as_str(), n.operator.as_str()))
                .copied()
                .unwrap_or(0);
            NetworkCoverage {
                aggregate: n,
                corroborating_contributors: k as u64,
                corroborated: k >= rules.corroboration_k as usize,
            }
        })
        .collect();
    (networks, samples.len() - plausible.len())
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
    fn ranges_are_enforced_and_a_reading_needs_a_signal() {
        let p = RewardPolicy::shipped();
        let r = &p.rules.radio;
        assert_eq!(plausibility(&sample("lte", Some(-90)), r), Ok(()));
        assert_eq!(
            plausibility(&sample("lte", None), r),
            Err(Implausible::NoSignal)
        );
        assert_eq!(
            plausibility(&sample("lte", Some(-20)), r),
            Err(Implausible::SignalOutOfRange)
        );
        assert_eq!(
            plausibility(&sample("6g", Some(-90)), r),
            Err(Implausible::UnknownTechnology)
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
    fn the_radio_map_leaves_out_implausible_samples_and_marks_corroboration() {
        let p = RewardPolicy::shipped();
        let a = sample("lte", Some(-90));
        let mut b = sample("lte", Some(-95));
        b.contributor = Some("bob".into());
        let mut lone = sample("nr", Some(-100));
        lone.contributor = Some("carol".into());
        let loud = sample("lte", Some(-20));
        let (map, implausible) = networks(&[a, b, lone, loud], &p.rules.radio);
        assert_eq!(implausible, 1);
        assert_eq!(map.len(), 2);
        let lte = map
            .iter()
            .find(|n| n.aggregate.technology == "lte")
            .unwrap();
        assert_eq!(
            (lte.aggregate.samples, lte.corroborating_contributors),
            (2, 2)
        );
        assert!(lte.corroborated);
        let nr = map.iter().find(|n| n.aggregate.technology == "nr").unwrap();
        assert_eq!(nr.corroborating_contributors, 1);
        assert!(!nr.corroborated);
        let json = serde_json::to_value(lte).unwrap();
        assert_eq!(json["best_dbm"], -90);
        assert_eq!(json["corroborated"], true);
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
