//! The generated set on Monaco's real roads: deterministic, readable by covermap's own parsers,
//! honest tracks on the roads and honest radio within what phones report.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use covermap_adversary::roads::RoadMap;
use covermap_adversary::{FileKind, FraudType, Label, Scenario, ScenarioConfig, SetSize, generate};
use covermap_domain::LatLon;
use covermap_ingest::radio::{RadioPolicy, parse_geosubmit_v2};
use covermap_ingest::{IngestPolicy, parse_gpx, read_gpx_points};
use covermap_roads::RoadNetwork;
use covermap_roads::matching::{MatchParams, RoadGraph, TracePoint};

fn monaco() -> &'static RoadNetwork {
    static NET: OnceLock<RoadNetwork> = OnceLock::new();
    NET.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/roads/monaco.osm.pbf");
        covermap_roads::osm::read_pbf(&p).unwrap()
    })
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn config(seed: u64) -> ScenarioConfig {
    ScenarioConfig::small(
        seed,
        (t("2026-11-02T00:00:00Z"), t("2026-11-09T00:00:00Z")),
        t("2026-11-10T09:00:00Z"),
    )
}

fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| generate(monaco(), &config(11)).unwrap())
}

fn lenient() -> (IngestPolicy, RadioPolicy) {
    let age = std::time::Duration::from_secs(100_000 * 86_400);
    (
        IngestPolicy {
            max_age: age,
            ..IngestPolicy::default()
        },
        RadioPolicy {
            max_age: age,
            ..RadioPolicy::default()
        },
    )
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
    let a = scenario();
    let b = generate(monaco(), &config(11)).unwrap();
    assert_eq!(a.files.len(), b.files.len());
    for (x, y) in a.files.iter().zip(&b.files) {
        assert_eq!(x.id, y.id);
        assert_eq!(x.bytes, y.bytes, "file {} differs", x.id);
    }
    assert_eq!(a.contributors, b.contributors);
    let c = generate(monaco(), &config(12)).unwrap();
    assert_ne!(a.files[0].bytes, c.files[0].bytes);
}

#[test]
fn the_hour_of_arrival_changes_only_the_times_relative_to_it() {
    let at = |t: &str| {
        let c = ScenarioConfig::for_arrival(SetSize::Small, 5, t.parse().unwrap());
        generate(monaco(), &c).unwrap()
    };
    let (a, b) = (at("2026-12-05T08:00:00Z"), at("2026-12-05T21:30:00Z"));
    assert_eq!(a.files.len(), b.files.len());
    for (x, y) in a.files.iter().zip(&b.files) {
        let relative = matches!(
            x.strength.as_str(),
            "future_hours" | "future_days" | "after_arrival"
        );
        assert!(
            relative || x.bytes == y.bytes,
            "{} {} differs",
            x.id,
            x.label
        );
    }
}

#[test]
fn any_seed_makes_a_whole_set() {
    for seed in 100..106 {
        let s = generate(monaco(), &config(seed)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(s.files.len() > 100, "seed {seed}: {} files", s.files.len());
    }
}

#[test]
fn every_type_and_strength_is_there_and_copies_follow_their_sources() {
    let s = scenario();
    let mut seen: BTreeMap<FraudType, usize> = BTreeMap::new();
    for f in &s.files {
        if let Label::Fraud(t) = f.label {
            *seen.entry(t).or_default() += 1;
            assert!(
                t.strengths().contains(&f.strength.as_str()),
                "{}",
                f.strength
            );
        }
        if let Some(src) = &f.copy_of {
            let pos = |id: &str| s.files.iter().position(|g| g.id == id).unwrap();
            assert!(
                pos(src) < pos(&f.id),
                "{} copies {src}, uploaded later",
                f.id
            );
            let source = &s.files[pos(src)];
            assert_eq!(source.label, Label::Honest);
            assert_eq!(source.kind, f.kind);
        }
        // Labels never leak into what covermap sees.
        assert!(f.contributor.starts_with("mapper-") && !f.device.contains("honest"));
    }
    for t in FraudType::ALL {
        assert!(seen.get(&t).copied().unwrap_or(0) >= 3, "{t}: {seen:?}");
    }
    let honest = s.files.iter().filter(|f| f.label == Label::Honest).count();
    assert!(honest >= 30, "{honest} honest files");
    // Every fraud contributor commits one type only; honest contributors send only honest files.
    for c in &s.contributors {
        for f in s.files.iter().filter(|f| f.contributor == c.name) {
            let own_original = f.label == Label::Honest
                && matches!(
                    c.label,
                    Label::Fraud(FraudType::Replay | FraudType::RadioDuplicate)
                );
            assert!(
                f.label == c.label || own_original,
                "{} {}",
                c.label,
                f.label
            );
        }
    }
}

#[test]
fn every_file_parses_with_covermaps_parsers() {
    let (track_policy, radio_policy) = lenient();
    let arrival = scenario().config.arrival;
    for f in &scenario().files {
        match f.kind {
            FileKind::Gpx => {
                let points = read_gpx_points(&f.bytes).unwrap();
                assert!(points.len() >= 2, "{}", f.id);
                assert!(
                    points.iter().all(|p| p.2.is_some()),
                    "{}: a fix without time",
                    f.id
                );
                if f.label == Label::Honest {
                    let track = parse_gpx(&f.bytes, arrival, &track_policy)
                        .unwrap_or_else(|e| panic!("{}: {e}", f.id));
                    assert!(
                        track.rejected.is_empty(),
                        "{}: honest fixes refused: {:?}",
                        f.id,
                        track.summary().rejected
                    );
                }
            }
            FileKind::Geosubmit => {
                let batch = parse_geosubmit_v2(&f.bytes, arrival, &radio_policy)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.id));
                assert!(batch.items > 0, "{}", f.id);
                if f.label == Label::Honest {
                    assert!(
                        batch.rejected.is_empty(),
                        "{}: honest observations refused: {:?}",
                        f.id,
                        batch.summary().rejected
                    );
                    assert!(
                        batch.corrections.is_empty(),
                        "{}: {:?}",
                        f.id,
                        batch.corrections
                    );
                }
            }
        }
    }
}

#[test]
fn honest_tracks_lie_on_the_roads() {
    let map = RoadMap::new(monaco());
    let graph = RoadGraph::new(monaco().clone());
    let mut matcher = graph.matcher();
    let params = MatchParams::for_sigma(8.0);
    let mut checked = 0;
    for f in scenario()
        .files
        .iter()
        .filter(|f| f.label == Label::Honest && f.kind == FileKind::Gpx)
    {
        let points: Vec<TracePoint> = read_gpx_points(&f.bytes)
            .unwrap()
            .iter()
            .map(|(lat, lon, time)| TracePoint {
                lat: *lat,
                lon: *lon,
                time_s: time.map_or(f64::NAN, |t| t.timestamp_millis() as f64 / 1000.0),
            })
            .collect();
        // Every fix is near a road (GNSS error, the lane, a multipath spike at most) …
        let near = points
            .iter()
            .filter(|p| {
                let pos = map.plane.xy(LatLon {
                    lat: p.lat,
                    lon: p.lon,
                });
                map.distance_to_road(pos, 25.0).is_finite()
            })
            .count();
        assert!(
            near as f64 >= 0.97 * points.len() as f64,
            "{}: {near} of {} fixes near a road",
            f.id,
            points.len()
        );
        // … and covermap's matcher follows the drive: it matches most of the route's length,
        // and the fixes it places lie close to the road. (It leaves out the fixes of a car
        // standing over a minute, at a red light or on an errand: a stop splits its match.)
        let route_m: f64 = f.detail.split(" m in ").next().unwrap().parse().unwrap();
        let result = matcher.match_trace(&points, &params).unwrap();
        assert!(
            result.length_m() >= 0.85 * route_m,
            "{}: {:.0} m matched of a {route_m:.0} m route",
            f.id,
            result.length_m()
        );
        let mut d: Vec<f64> = result
            .snaps
            .iter()
            .flatten()
            .map(|s| s.distance_m)
            .collect();
        d.sort_by(f64::total_cmp);
        let median = d[d.len() / 2];
        assert!(
            median < 8.0,
            "{}: median distance to the road {median:.1} m",
            f.id
        );
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
}

#[test]
fn honest_radio_lies_in_what_phones_report() {
    let (_, radio_policy) = lenient();
    let arrival = scenario().config.arrival;
    let mut emitters: BTreeMap<String, usize> = BTreeMap::new();
    for f in scenario()
        .files
        .iter()
        .filter(|f| f.label == Label::Honest && f.kind == FileKind::Geosubmit)
    {
        let batch = parse_geosubmit_v2(&f.bytes, arrival, &radio_policy).unwrap();
        for o in &batch.observations {
            let s = o
                .signal_dbm
                .unwrap_or_else(|| panic!("{}: a reading without signal", f.id));
            let range = match o.emitter_key().split(':').next().unwrap() {
                "lte" => -140..=-44,
                "wcdma" => -120..=-25,
                "gsm" => -113..=-51,
                "wifi" => -100..=-20,
                other => panic!("{}: unexpected emitter {other}", f.id),
            };
            assert!(
                range.contains(&s),
                "{}: {} at {s} dBm",
                f.id,
                o.emitter_key()
            );
            *emitters.entry(o.emitter_key()).or_default() += 1;
        }
    }
    // Contributors hear the same real emitters: many are heard more than once.
    let repeated = emitters.values().filter(|&&n| n > 1).count();
    assert!(
        repeated * 2 > emitters.len(),
        "{repeated} of {}",
        emitters.len()
    );
}
