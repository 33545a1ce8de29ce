//! Where in the H3 grid a drive was.
//!
//! Resolution 11 is the default: its hexagons have a mean edge of about 28 m and an area of about
//! 2,150 m² (H3's published resolution table), so a 100–150 m city block spans four to six cells
//! and a cell rarely holds two parallel streets. Coarser cells (10: ~76 m edge) blur a block into
//! one or two cells; finer ones (12: ~11 m) split a single lane and multiply rows tenfold.

use std::collections::BTreeMap;

use covermap_domain::{Cell, CellVisit, Fix};
use h3o::{LatLng, Resolution};

pub const DEFAULT_RESOLUTION: Resolution = Resolution::Eleven;

/// Groups fixes by the cell they fall in, with how many and when; ordered by cell.
pub fn index_fixes(fixes: &[Fix], resolution: Resolution) -> Vec<CellVisit> {
    let mut visits: BTreeMap<Cell, CellVisit> = BTreeMap::new();
    for fix in fixes {
        let Ok(ll) = LatLng::new(fix.pos.lat, fix.pos.lon) else {
            continue;
        };
        let cell = Cell(ll.to_cell(resolution));
        visits
            .entry(cell)
            .and_modify(|v| {
                v.fixes += 1;
                v.first_seen = v.first_seen.min(fix.at);
                v.last_seen = v.last_seen.max(fix.at);
            })
            .or_insert(CellVisit {
                cell,
                fixes: 1,
                first_seen: fix.at,
                last_seen: fix.at,
            });
    }
    visits.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use covermap_domain::LatLon;

    #[test]
    fn fixes_group_by_cell_with_counts_and_times() {
        let t = |s| Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, s).unwrap();
        let fix = |lat, lon, s| Fix {
            at: t(s),
            pos: LatLon::new(lat, lon).unwrap(),
            accuracy_m: None,
        };
        // Two fixes a metre apart share a cell; one 500 m away does not.
        let fixes = [
            fix(43.73840, 7.42460, 0),
            fix(43.73841, 7.42461, 1),
            fix(43.74290, 7.42460, 30),
        ];
        let visits = index_fixes(&fixes, DEFAULT_RESOLUTION);
        assert_eq!(visits.len(), 2);
        let shared = visits.iter().find(|v| v.fixes == 2).unwrap();
        assert_eq!((shared.first_seen, shared.last_seen), (t(0), t(1)));
        assert_eq!(shared.cell.0.resolution(), Resolution::Eleven);
        assert!(visits.windows(2).all(|w| w[0].cell < w[1].cell));
    }
}
