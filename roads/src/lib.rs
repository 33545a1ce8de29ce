//! covermap roads: the drivable road network and where on it, and in which H3 cells, a drive was.
//!
//! It owns reading OSM ([`osm::read_pbf`]), the rules for which ways are drivable
//! ([`network::WayRules`]), the road network as segments split at junctions ([`RoadNetwork`]), a
//! generated town for a data-less demo ([`town::generate`]), and H3 indexing ([`cells`]; drawn
//! areas in [`area`]).
//! Pure: no database, no HTTP; the only I/O is reading an OSM file.

pub mod area;
pub mod cells;
pub mod matching;
pub mod network;
pub mod osm;
pub mod osm_xml;
pub mod town;

pub use cells::{
    CellStretch, DEFAULT_RESOLUTION, cell_of, cut_matched, index_fixes, matched_stretches,
    road_length_per_cell,
};
pub use network::{RoadNetwork, WayRules};

/// Why a road network could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RoadsError {
    #[error("cannot read OSM file {path}: {message}")]
    Read { path: String, message: String },
    #[error("OSM file {path} has no drivable roads")]
    Empty { path: String },
}
