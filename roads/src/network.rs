//! Which OSM ways are roads a car drives, and the network they make, split at junctions.

use std::collections::HashMap;

use covermap_domain::{LatLon, RoadSegment};

/// The tags of one way that decide whether and how it is driven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WayRules {
    pub highway: String,
    pub name: Option<String>,
    /// `Some(true)`: one way along the node order; `Some(false)`: against it (`oneway=-1`).
    pub oneway: Option<bool>,
}

const DRIVABLE: [&str; 19] = [
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "unclassified",
    "residential",
    "living_street",
    "service",
    "motorway_link",
    "trunk_link",
    "primary_link",
    "secondary_link",
    "tertiary_link",
    "road",
    "busway",
    "track",
    "escape",
    "raceway",
];

impl WayRules {
    /// Decides from a way's tags; `None` for anything a car does not drive on.
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let tags: HashMap<&str, &str> = tags.into_iter().collect();
        let highway = *tags.get("highway")?;
        // Tracks, busways, escape lanes and raceways are in the list only to be named here.
        if !DRIVABLE.contains(&highway)
            || matches!(highway, "track" | "busway" | "escape" | "raceway")
        {
            return None;
        }
        if highway == "service"
            && matches!(
                tags.get("service").copied(),
                Some("parking_aisle" | "driveway" | "drive-through" | "emergency_access")
            )
        {
            return None;
        }
        let access_no = |k: &str| matches!(tags.get(k).copied(), Some("no" | "private"));
        let motor_yes = matches!(
            tags.get("motor_vehicle").or(tags.get("motorcar")).copied(),
            Some("yes" | "permissive" | "designated" | "destination")
        );
        if (access_no("access") && !motor_yes)
            || access_no("motor_vehicle")
            || access_no("motorcar")
            || tags.get("area") == Some(&"yes")
        {
            return None;
        }
        let oneway = match tags.get("oneway").copied() {
            Some("yes" | "1" | "true") => Some(true),
            Some("-1" | "reverse") => Some(false),
            Some("no" | "0" | "false") => None,
            _ if tags
                .get("junction")
                .is_some_and(|j| matches!(*j, "roundabout" | "circular")) =>
            {
                Some(true)
            }
            _ if highway == "motorway" => Some(true),
            _ => None,
        };
        let name = tags
            .get("name")
            .or(tags.get("ref"))
            .map(std::string::ToString::to_string);
        Some(Self {
            highway: highway.to_owned(),
            name,
            oneway,
        })
    }
}

/// A drivable way as read: its rules and its nodes in OSM order.
#[derive(Debug, Clone)]
pub struct Way {
    pub id: i64,
    pub rules: WayRules,
    pub nodes: Vec<i64>,
}

/// The road network as segments, each between two junctions (or a junction and a dead end).
#[derive(Debug, Clone, Default)]
pub struct RoadNetwork {
    pub segments: Vec<RoadSegment>,
}

impl RoadNetwork {
    /// Splits ways into segments at every node that more than one way uses (or that a way passes
    /// twice). Nodes without a position are skipped; a oneway against node order is reversed, so
    /// every oneway segment runs in its direction of travel.
    pub fn from_ways(ways: &[Way], positions: &HashMap<i64, LatLon>) -> Self {
        let mut uses: HashMap<i64, u32> = HashMap::new();
        for way in ways {
            for (i, n) in way.nodes.iter().enumerate() {
                let end = i == 0 || i + 1 == way.nodes.len();
                *uses.entry(*n).or_insert(0) += if end { 2 } else { 1 };
            }
        }
        let mut segments = Vec::new();
        for way in ways {
            let mut nodes: Vec<(i64, LatLon)> = way
                .nodes
                .iter()
                .filter_map(|n| positions.get(n).map(|p| (*n, *p)))
                .collect();
            if way.rules.oneway == Some(false) {
                nodes.reverse();
            }
            let mut piece = 0;
            let mut start = 0;
            for i in 1..nodes.len() {
                let junction = uses.get(&nodes[i].0).copied().unwrap_or(0) > 1;
                if junction || i + 1 == nodes.len() {
                    let part = &nodes[start..=i];
                    segments.push(RoadSegment {
                        osm_way_id: way.id,
                        piece,
                        osm_node_ids: part.iter().map(|n| n.0).collect(),
                        points: part.iter().map(|n| n.1).collect(),
                        highway: way.rules.highway.clone(),
                        name: way.rules.name.clone(),
                        oneway: way.rules.oneway.is_some(),
                        length_m: part.windows(2).map(|w| w[0].1.distance_m(w[1].1)).sum(),
                    });
                    piece += 1;
                    start = i;
                }
            }
        }
        Self { segments }
    }

    pub fn total_length_m(&self) -> f64 {
        self.segments.iter().map(|s| s.length_m).sum()
    }

    /// For each node at a segment's end, the segments that can be driven away from it:
    /// `(segment index, forward)`. A oneway segment leaves only from its first node.
    pub fn departures(&self) -> HashMap<i64, Vec<(usize, bool)>> {
        let mut out: HashMap<i64, Vec<(usize, bool)>> = HashMap::new();
        for (i, s) in self.segments.iter().enumerate() {
            let (Some(first), Some(last)) = (s.osm_node_ids.first(), s.osm_node_ids.last()) else {
                continue;
            };
            out.entry(*first).or_default().push((i, true));
            if !s.oneway {
                out.entry(*last).or_default().push((i, false));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(tags: &[(&str, &str)]) -> Option<WayRules> {
        WayRules::from_tags(tags.iter().copied())
    }

    #[test]
    fn drivable_classes_and_exclusions() {
        assert!(rules(&[("highway", "residential")]).is_some());
        assert!(rules(&[("highway", "primary_link")]).is_some());
        assert!(rules(&[("highway", "footway")]).is_none());
        assert!(rules(&[("highway", "cycleway")]).is_none());
        assert!(rules(&[("highway", "track")]).is_none());
        assert!(rules(&[("highway", "service"), ("service", "parking_aisle")]).is_none());
        assert!(rules(&[("highway", "service"), ("service", "driveway")]).is_none());
        assert!(rules(&[("highway", "service"), ("service", "alley")]).is_some());
        assert!(rules(&[("highway", "residential"), ("access", "private")]).is_none());
        assert!(rules(&[("highway", "residential"), ("access", "no")]).is_none());
        assert!(
            rules(&[
                ("highway", "residential"),
                ("access", "no"),
                ("motor_vehicle", "yes")
            ])
            .is_some()
        );
        assert!(rules(&[("building", "yes")]).is_none());
    }

    #[test]
    fn oneway_rules() {
        let ow = |t: &[(&str, &str)]| rules(t).unwrap().oneway;
        assert_eq!(ow(&[("highway", "primary"), ("oneway", "yes")]), Some(true));
        assert_eq!(ow(&[("highway", "primary"), ("oneway", "-1")]), Some(false));
        assert_eq!(
            ow(&[("highway", "primary"), ("junction", "roundabout")]),
            Some(true)
        );
        assert_eq!(ow(&[("highway", "motorway")]), Some(true));
        assert_eq!(ow(&[("highway", "motorway"), ("oneway", "no")]), None);
        assert_eq!(ow(&[("highway", "primary")]), None);
    }

    #[test]
    fn names_fall_back_to_refs() {
        let r = rules(&[("highway", "primary"), ("ref", "D 6007")]).unwrap();
        assert_eq!(r.name.as_deref(), Some("D 6007"));
    }

    #[test]
    fn ways_split_at_shared_nodes_and_reverse_oneways() {
        let pos: HashMap<i64, LatLon> = (1..=5)
            .map(|i| (i, LatLon::new(43.0 + i as f64 * 0.001, 7.0).unwrap()))
            .collect();
        let way = |id, nodes: Vec<i64>, oneway| Way {
            id,
            rules: WayRules {
                highway: "residential".into(),
                name: None,
                oneway,
            },
            nodes,
        };
        let net = RoadNetwork::from_ways(
            &[
                way(10, vec![1, 2, 3, 4], None),
                way(11, vec![5, 3], Some(false)),
            ],
            &pos,
        );
        let nodes: Vec<_> = net
            .segments
            .iter()
            .map(|s| s.osm_node_ids.clone())
            .collect();
        assert_eq!(nodes, vec![vec![1, 2, 3], vec![3, 4], vec![3, 5]]);
        assert_eq!(net.segments[1].piece, 1);
        assert!(net.segments[2].oneway);
        assert!((net.segments[0].length_m - 222.4).abs() < 1.0);
        let dep = net.departures();
        assert_eq!(
            dep[&3].len(),
            3,
            "two ends of way 10 and the oneway's start"
        );
        assert!(
            !dep.contains_key(&5),
            "the oneway cannot be driven from its end"
        );
    }
}
