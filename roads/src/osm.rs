//! Reading the drivable network out of an OSM PBF extract.

use std::collections::HashMap;
use std::path::Path;

use covermap_domain::LatLon;
use osmpbf::{Element, ElementReader};

use crate::RoadsError;
use crate::network::{RoadNetwork, Way, WayRules};

/// Reads `path` whichever OSM format it is in: PBF when its name ends in `.pbf`, XML
/// (`.osm`, `.osm.gz`, `.osm.bz2`) otherwise.
pub fn read(path: &Path) -> Result<RoadNetwork, RoadsError> {
    let is_pbf = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".pbf"));
    if is_pbf {
        read_pbf(path)
    } else {
        crate::osm_xml::read_osm_xml(path)
    }
}

/// Reads `path` (an `.osm.pbf`), keeps the drivable ways and splits them at junctions.
pub fn read_pbf(path: &Path) -> Result<RoadNetwork, RoadsError> {
    let shown = path.display().to_string();
    let fail = |message: String| RoadsError::Read {
        path: shown.clone(),
        message,
    };
    let reader = ElementReader::from_path(path).map_err(|e| fail(e.to_string()))?;
    let mut positions: HashMap<i64, LatLon> = HashMap::new();
    let mut ways = Vec::new();
    reader
        .for_each(|element| match element {
            Element::DenseNode(n) => {
                if let Ok(p) = LatLon::new(n.lat(), n.lon()) {
                    positions.insert(n.id(), p);
                }
            }
            Element::Node(n) => {
                if let Ok(p) = LatLon::new(n.lat(), n.lon()) {
                    positions.insert(n.id(), p);
                }
            }
            Element::Way(w) => {
                if let Some(rules) = WayRules::from_tags(w.tags()) {
                    ways.push(Way {
                        id: w.id(),
                        rules,
                        nodes: w.refs().collect(),
                    });
                }
            }
            Element::Relation(_) => {}
        })
        .map_err(|e| fail(e.to_string()))?;
    let network = RoadNetwork::from_ways(&ways, &positions);
    if network.segments.is_empty() {
        return Err(RoadsError::Empty { path: shown });
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn monaco() -> PathBuf {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/roads/monaco.osm.pbf");
        assert!(p.exists(), "test data {} is missing", p.display());
        p
    }

    #[test]
    fn monaco_has_its_streets() {
        let net = read_pbf(&monaco()).unwrap();
        assert!(net.segments.len() > 2000, "{}", net.segments.len());
        let km = net.total_length_m() / 1000.0;
        assert!((150.0..2000.0).contains(&km), "{km} km");
        assert!(
            net.segments
                .iter()
                .any(|s| s.name.as_deref() == Some("Boulevard Albert 1er")),
            "a well-known Monaco street is there"
        );
        assert!(net.segments.iter().all(|s| s.points.len() >= 2));
        assert!(net.segments.iter().any(|s| s.oneway));
    }

    #[test]
    fn read_dispatches_on_the_file_name() {
        let pbf = read(&monaco()).unwrap();
        assert!(pbf.segments.len() > 2000, "{}", pbf.segments.len());
        let xml = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/roads/graphhopper/map-issue13.osm.gz");
        assert!(xml.exists(), "test data {} is missing", xml.display());
        assert!(!read(&xml).unwrap().segments.is_empty());
        // A missing XML file is reported by the XML reader, still naming the path.
        let err = read(Path::new("/nonexistent/x.osm")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.osm"), "{err}");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = read_pbf(Path::new("/nonexistent/x.osm.pbf")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.osm.pbf"), "{err}");
    }
}
