//! A generated town, so a fresh machine can run the demo with no map data at all.

use std::collections::HashMap;

use covermap_domain::LatLon;

use crate::network::{RoadNetwork, Way, WayRules};

/// A grid of `blocks` × `blocks` city blocks, `block_m` metres a side, centred on `center`:
/// numbered streets run east–west, lettered avenues north–south, every third street one way, and
/// a primary road closes the ring. Node ids count from 1; way ids from 1.
pub fn generate(center: LatLon, blocks: usize, block_m: f64) -> RoadNetwork {
    let n = blocks + 1;
    let m_per_deg_lat = 111_320.0;
    let m_per_deg_lon = m_per_deg_lat * center.lat.to_radians().cos();
    let half = blocks as f64 * block_m / 2.0;
    let node = |row: usize, col: usize| (row * n + col + 1) as i64;
    let mut positions = HashMap::new();
    for row in 0..n {
        for col in 0..n {
            let north = row as f64 * block_m - half;
            let east = col as f64 * block_m - half;
            if let Ok(p) = LatLon::new(
                center.lat + north / m_per_deg_lat,
                center.lon + east / m_per_deg_lon,
            ) {
                positions.insert(node(row, col), p);
            }
        }
    }
    let mut ways = Vec::new();
    let mut way = |rules: WayRules, nodes: Vec<i64>| {
        let id = ways.len() as i64 + 1;
        ways.push(Way { id, rules, nodes });
    };
    for row in 0..n {
        let ring = row == 0 || row == blocks;
        way(
            WayRules {
                highway: if ring { "primary" } else { "residential" }.into(),
                name: Some(if ring {
                    "Ring Road".to_owned()
                } else {
                    format!("{} Street", ordinal(row))
                }),
                oneway: (!ring && row % 3 == 0).then_some(row % 2 == 0),
            },
            (0..n).map(|col| node(row, col)).collect(),
        );
    }
    for col in 0..n {
        let ring = col == 0 || col == blocks;
        way(
            WayRules {
                highway: if ring { "primary" } else { "tertiary" }.into(),
                name: Some(if ring {
                    "Ring Road".to_owned()
                } else {
                    format!("Avenue {}", avenue_letter(col))
                }),
                oneway: None,
            },
            (0..n).map(|row| node(row, col)).collect(),
        );
    }
    RoadNetwork::from_ways(&ways, &positions)
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn avenue_letter(col: usize) -> String {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let c = letters[(col - 1) % letters.len()] as char;
    if col > letters.len() {
        format!("{c}{}", (col - 1) / letters.len())
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_town_has_every_block_edge_once() {
        let center = LatLon::new(52.0, 5.0).unwrap();
        let net = generate(center, 6, 120.0);
        // 7 streets and 7 avenues, each split into 6 segments at the crossings.
        assert_eq!(net.segments.len(), 2 * 7 * 6);
        let total = net.total_length_m();
        assert!((total - 84.0 * 120.0).abs() < 84.0 * 2.0, "{total}");
        assert!(net.segments.iter().any(|s| s.oneway));
        assert!(
            net.segments
                .iter()
                .any(|s| s.name.as_deref() == Some("3rd Street"))
        );
        assert!(
            net.segments
                .iter()
                .any(|s| s.name.as_deref() == Some("Avenue B"))
        );
        let dep = net.departures();
        assert!(dep.values().all(|d| !d.is_empty()));
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(23), "23rd");
    }
}
