//! Reading the drivable network out of an OSM XML file (`.osm`, `.osm.gz`, `.osm.bz2`).
//!
//! The file is streamed: only node positions and the drivable ways are kept, never the document.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use covermap_domain::LatLon;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::RoadsError;
use crate::network::{RoadNetwork, Way, WayRules};

/// Reads `path` (OSM XML, plain or gzip/bzip2-compressed), keeps the drivable ways and splits them
/// at junctions.
pub fn read_osm_xml(path: &Path) -> Result<RoadNetwork, RoadsError> {
    let shown = path.display().to_string();
    let fail = |message: String| RoadsError::Read {
        path: shown.clone(),
        message,
    };
    let (input, compression) = open(path).map_err(|e| fail(e.to_string()))?;
    let (positions, ways) = match scan(input) {
        Ok(found) => found,
        Err(ScanError::Io(e)) => {
            return Err(fail(match compression {
                Compression::None => e.to_string(),
                Compression::Gzip => format!("bad gzip stream: {e}"),
                Compression::Bzip2 => format!("bad bzip2 stream: {e}"),
            }));
        }
        Err(ScanError::At { offset, message }) => {
            return Err(fail(format!("{message} at {}", locate(path, offset))));
        }
    };
    let network = RoadNetwork::from_ways(&ways, &positions);
    if network.segments.is_empty() {
        return Err(RoadsError::Empty { path: shown });
    }
    Ok(network)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
}

/// Opens `path` as a stream of XML bytes, decompressing by extension, or by magic bytes when the
/// extension says nothing.
fn open(path: &Path) -> io::Result<(Box<dyn BufRead>, Compression)> {
    let mut file = BufReader::new(File::open(path)?);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let compression = if name.ends_with(".gz") {
        Compression::Gzip
    } else if name.ends_with(".bz2") {
        Compression::Bzip2
    } else if name.ends_with(".osm") || name.ends_with(".xml") {
        Compression::None
    } else {
        let head = file.fill_buf()?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    };
    // Multi-member decoders: parallel compressors (pigz, pbzip2) write several concatenated
    // streams, and a single-stream decoder would stop silently after the first.
    let input: Box<dyn BufRead> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file))),
        Compression::Bzip2 => Box::new(BufReader::new(bzip2::bufread::MultiBzDecoder::new(file))),
    };
    Ok((input, compression))
}

#[derive(Debug)]
enum ScanError {
    /// Reading or decompressing failed: no position in the XML is meaningful.
    Io(io::Error),
    /// The XML is wrong at this byte offset of the decompressed stream.
    At { offset: u64, message: String },
}

/// A way being read: its id, node references and tags, until its end tag.
#[derive(Debug, Default)]
struct OpenWay {
    id: i64,
    nodes: Vec<i64>,
    tags: Vec<(String, String)>,
}

type Found = (HashMap<i64, LatLon>, Vec<Way>);

fn scan(input: Box<dyn BufRead>) -> Result<Found, ScanError> {
    let mut reader = Reader::from_reader(input);
    let mut positions: HashMap<i64, LatLon> = HashMap::new();
    let mut ways = Vec::new();
    let mut way: Option<OpenWay> = None;
    // Open elements, outermost first: the only way to tell a truncated file from a whole one.
    let mut stack: Vec<String> = Vec::new();
    let mut saw_root = false;
    let mut buf = Vec::new();
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(quick_xml::Error::Io(e)) => {
                return Err(ScanError::Io(io::Error::new(e.kind(), e.to_string())));
            }
            Err(e) => {
                return Err(ScanError::At {
                    offset: reader.error_position(),
                    message: e.to_string(),
                });
            }
        };
        let at = |message: String| ScanError::At {
            offset: reader.buffer_position(),
            message,
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(event, Event::Start(_));
                let name = e.name();
                if stack.is_empty() && name.as_ref() != b"osm" {
                    return Err(at(format!(
                        "not OSM XML: the root element is <{}>, not <osm>",
                        String::from_utf8_lossy(name.as_ref())
                    )));
                }
                saw_root = true;
                match name.as_ref() {
                    b"node" => {
                        let node = node(e, &reader).map_err(at)?;
                        if let Some((id, position)) = node {
                            positions.insert(id, position);
                        }
                    }
                    b"way" if is_start => {
                        way = Some(OpenWay {
                            id: number(e, &reader, "id").map_err(at)?,
                            ..OpenWay::default()
                        });
                    }
                    b"nd" => {
                        if let Some(w) = way.as_mut() {
                            w.nodes.push(number(e, &reader, "ref").map_err(at)?);
                        }
                    }
                    b"tag" => {
                        if let Some(w) = way.as_mut() {
                            let k = attribute(e, &reader, "k").map_err(at)?;
                            let v = attribute(e, &reader, "v").map_err(at)?;
                            if let (Some(k), Some(v)) = (k, v) {
                                w.tags.push((k, v));
                            }
                        }
                    }
                    _ => {}
                }
                if is_start {
                    stack.push(String::from_utf8_lossy(name.as_ref()).into_owned());
                }
            }
            Event::End(ref e) => {
                stack.pop();
                if e.name().as_ref() == b"way"
                    && let Some(w) = way.take()
                {
                    let tags = w.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                    if let Some(rules) = WayRules::from_tags(tags) {
                        ways.push(Way {
                            id: w.id,
                            rules,
                            nodes: w.nodes,
                        });
                    }
                }
            }
            Event::Eof => {
                if let Some(inner) = stack.last() {
                    return Err(at(format!("the file ends inside <{inner}>")));
                }
                if !saw_root {
                    return Err(at("not OSM XML: no <osm> element".to_owned()));
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    Ok((positions, ways))
}

/// A node's id and position; `None` for one without a valid position (deleted in a history file,
/// or out of range), which no road can use.
fn node<R>(e: &BytesStart<'_>, reader: &Reader<R>) -> Result<Option<(i64, LatLon)>, String> {
    let id = number(e, reader, "id")?;
    let (Some(lat), Some(lon)) = (attribute(e, reader, "lat")?, attribute(e, reader, "lon")?)
    else {
        return Ok(None);
    };
    let (Ok(lat), Ok(lon)) = (lat.trim().parse::<f64>(), lon.trim().parse::<f64>()) else {
        return Err(format!(
            "node {id} has lat={lat:?} lon={lon:?}, not numbers"
        ));
    };
    Ok(LatLon::new(lat, lon).ok().map(|p| (id, p)))
}

/// A required integer attribute (`id`, `ref`).
fn number<R>(e: &BytesStart<'_>, reader: &Reader<R>, key: &str) -> Result<i64, String> {
    let element = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let value =
        attribute(e, reader, key)?.ok_or_else(|| format!("<{element}> has no {key} attribute"))?;
    value
        .trim()
        .parse()
        .map_err(|_| format!("<{element}> has {key}={value:?}, not an integer"))
}

/// One attribute's value with entities (`&amp;`, `&#1052;`) resolved; `None` if absent.
fn attribute<R>(
    e: &BytesStart<'_>,
    reader: &Reader<R>,
    key: &str,
) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|err| err.to_string())?;
        if a.key.as_ref() == key.as_bytes() {
            return a
                .decode_and_unescape_value(reader.decoder())
                .map(|v| Some(v.into_owned()))
                .map_err(|err| err.to_string());
        }
    }
    Ok(None)
}

/// "line L, column C" of a byte offset in the decompressed XML, found by reading the file again
/// (only ever on the way to an error, so the common path keeps no line count).
fn locate(path: &Path, offset: u64) -> String {
    let count = || -> io::Result<(u64, u64)> {
        let mut input = open(path)?.0.take(offset);
        let (mut line, mut column) = (1u64, 1u64);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = input.read(&mut chunk)?;
            if n == 0 {
                return Ok((line, column));
            }
            for &byte in &chunk[..n] {
                if byte == b'\n' {
                    line += 1;
                    column = 1;
                } else if byte & 0xC0 != 0x80 {
                    // Columns in characters: UTF-8 continuation bytes do not start one.
                    column += 1;
                }
            }
        }
    };
    match count() {
        Ok((line, column)) => format!("line {line}, column {column} (byte {offset})"),
        Err(_) => format!("byte {offset}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    fn graphhopper(name: &str) -> PathBuf {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/roads/graphhopper")
            .join(name);
        assert!(p.exists(), "test data {} is missing", p.display());
        p
    }

    fn named<'a>(net: &'a RoadNetwork, name: &str) -> Vec<&'a covermap_domain::RoadSegment> {
        net.segments
            .iter()
            .filter(|s| s.name.as_deref() == Some(name))
            .collect()
    }

    /// Writes `bytes` to a file called `name` in a fresh directory kept alive by the caller.
    fn write(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn gzip(xml: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(xml.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn bzip2(xml: &str) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(xml.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    /// Three nodes in a line going north, a residential street against its node order, a footway,
    /// a relation whose tags must not leak into any way, and a node with an impossible latitude.
    const SMALL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
 <bounds minlat="45.0" minlon="19.0" maxlat="45.1" maxlon="19.1"/>
 <node id="1" lat="45.0000" lon="19.0"/>
 <node id="2" lat="45.0010" lon="19.0">
  <tag k="highway" v="traffic_signals"/>
 </node>
 <node id="3" lat="45.0020" lon="19.0"/>
 <node id="4" lat="95.0" lon="19.0"/>
 <way id="100">
  <nd ref="1"/>
  <nd ref="2"/>
  <nd ref="3"/>
  <nd ref="4"/>
  <tag k="highway" v="residential"/>
  <tag k="oneway" v="-1"/>
  <tag k="name" v="Rue &amp; Quai &#1052;&#x438;&quot;"/>
 </way>
 <way id="101">
  <nd ref="1"/>
  <nd ref="3"/>
  <tag k="highway" v="footway"/>
 </way>
 <relation id="7">
  <member type="way" ref="101" role=""/>
  <tag k="highway" v="primary"/>
  <tag k="type" v="route"/>
 </relation>
</osm>
"#;

    #[test]
    fn map_issue13_loads() {
        let net = read_osm_xml(&graphhopper("map-issue13.osm.gz")).unwrap();
        assert!(
            (15..200).contains(&net.segments.len()),
            "{} segments",
            net.segments.len()
        );
        let km = net.total_length_m() / 1000.0;
        assert!((0.5..20.0).contains(&km), "{km} km");
        assert!(net.segments.iter().all(|s| s.points.len() >= 2));
        assert!(net.segments.iter().all(|s| s.highway != "bus_stop"));
    }

    #[test]
    fn issue_70_has_its_serbian_streets() {
        let net = read_osm_xml(&graphhopper("issue-70.osm.gz")).unwrap();
        assert!(
            (20..500).contains(&net.segments.len()),
            "{} segments",
            net.segments.len()
        );
        for street in ["Милана Видака", "Бранка Радичевића", "Здравка Челара"]
        {
            assert!(!named(&net, street).is_empty(), "{street} is missing");
        }
    }

    #[test]
    fn map_issue147_has_the_i90_motorway_oneway() {
        let net = read_osm_xml(&graphhopper("map-issue147.osm.gz")).unwrap();
        assert!(
            (1000..50_000).contains(&net.segments.len()),
            "{} segments",
            net.segments.len()
        );
        // The I 90 ways carry `ref="I 90"` and no name: the name falls back to the ref.
        let i90 = named(&net, "I 90");
        assert!(!i90.is_empty(), "I 90 is missing");
        assert!(i90.iter().all(|s| s.oneway && s.highway == "motorway"));
    }

    #[test]
    fn a_small_file_reverses_oneway_minus_one_and_resolves_entities() {
        let (_dir, path) = write("small.osm", SMALL.as_bytes());
        let net = read_osm_xml(&path).unwrap();
        // The footway is dropped, the relation's tags make no way drivable, and node 4 (latitude
        // 95) has no position, so the street is one segment over nodes 1..3, driven 3 -> 1.
        assert_eq!(net.segments.len(), 1, "{:?}", net.segments);
        let s = &net.segments[0];
        assert_eq!(s.osm_way_id, 100);
        assert_eq!(s.osm_node_ids, vec![3, 2, 1]);
        assert!(s.oneway);
        assert!(s.points[0].lat > s.points[2].lat, "runs south");
        assert_eq!(s.name.as_deref(), Some("Rue & Quai Ми\""));
        assert!((200.0..250.0).contains(&s.length_m), "{} m", s.length_m);
    }

    #[test]
    fn compressed_files_are_read_by_extension() {
        let plain = read_osm_xml(&write("small.osm", SMALL.as_bytes()).1);
        let (_gz_dir, gz) = write("small.osm.gz", &gzip(SMALL));
        let (_bz_dir, bz) = write("small.osm.bz2", &bzip2(SMALL));
        let plain = plain.unwrap();
        for path in [gz, bz] {
            let net = read_osm_xml(&path).unwrap();
            assert_eq!(net.segments, plain.segments, "{}", path.display());
        }
    }

    #[test]
    fn compression_is_sniffed_when_the_extension_says_nothing() {
        let (_gz_dir, gz) = write("extract.download", &gzip(SMALL));
        let (_bz_dir, bz) = write("extract", &bzip2(SMALL));
        let (_plain_dir, plain) = write("extract.txt", SMALL.as_bytes());
        for path in [gz, bz, plain] {
            let net = read_osm_xml(&path).unwrap();
            assert_eq!(net.segments.len(), 1, "{}", path.display());
        }
    }

    #[test]
    fn malformed_xml_names_the_path_and_the_line() {
        let xml = "<osm version=\"0.6\">\n <node id=\"1\" lat=\"45\" lon=\"19\"/>\n <way id=\"2\">\n </node>\n</osm>\n";
        let (_dir, path) = write("broken.osm", xml.as_bytes());
        let err = read_osm_xml(&path).unwrap_err();
        let RoadsError::Read {
            path: shown,
            message,
        } = &err
        else {
            panic!("expected a read error, got {err:?}");
        };
        assert_eq!(shown, &path.display().to_string());
        assert!(message.contains("line 4"), "{message}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_smaller_network() {
        let cut = &SMALL[..SMALL.find("<way id=\"101\">").unwrap()];
        let (_dir, path) = write("cut.osm.gz", &gzip(cut));
        let err = read_osm_xml(&path).unwrap_err();
        assert!(
            matches!(&err, RoadsError::Read { message, .. } if message.contains("ends inside <osm>")),
            "{err}"
        );
        // A gzip stream cut short fails in decompression.
        let mut bytes = gzip(SMALL);
        bytes.truncate(bytes.len() / 2);
        let (_dir, path) = write("cut2.osm.gz", &bytes);
        let err = read_osm_xml(&path).unwrap_err();
        assert!(err.to_string().contains("bad gzip stream"), "{err}");
        let (_dir, path) = write("text.osm.bz2", SMALL.as_bytes());
        let err = read_osm_xml(&path).unwrap_err();
        assert!(err.to_string().contains("bad bzip2 stream"), "{err}");
    }

    #[test]
    fn bad_numbers_and_foreign_roots_are_read_errors() {
        let (_dir, path) = write("ids.osm", b"<osm>\n<way id=\"x1\"></way></osm>");
        let err = read_osm_xml(&path).unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
        let (_dir, path) = write("gpx.osm", b"<gpx version=\"1.1\"></gpx>");
        let err = read_osm_xml(&path).unwrap_err();
        assert!(err.to_string().contains("not OSM XML"), "{err}");
        let (_dir, path) = write("empty.osm", b"");
        let err = read_osm_xml(&path).unwrap_err();
        assert!(err.to_string().contains("not OSM XML"), "{err}");
    }

    #[test]
    fn no_drivable_roads_is_empty() {
        let xml = r#"<osm><node id="1" lat="1" lon="1"/><node id="2" lat="1.001" lon="1"/>
            <way id="3"><nd ref="1"/><nd ref="2"/><tag k="highway" v="footway"/></way></osm>"#;
        let (_dir, path) = write("paths.osm", xml.as_bytes());
        let err = read_osm_xml(&path).unwrap_err();
        assert!(matches!(err, RoadsError::Empty { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = read_osm_xml(Path::new("/nonexistent/x.osm.bz2")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.osm.bz2"), "{err}");
    }
}
