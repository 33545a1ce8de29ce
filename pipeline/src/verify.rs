//! The trust stage in the worker: measure an upload as it is processed, compare it with the
//! uploads before it, and judge it under the policy's thresholds. The measuring and judging are
//! `covermap_trust`'s; this module fetches what they need from the store and writes nothing
//! itself — the verdict goes out with the upload's results, in the same transaction.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use covermap_domain::{Cell, Fix, LatLon};
use covermap_ingest::radio::{RadioBatch, RadioRejection};
use covermap_ingest::{FixRejection, Track};
use covermap_roads::matching::RoadGraph;
use covermap_store::{JobFailure, Lease, Neighbour, Store, TrustRecord, UploadExtent};
use covermap_trust::twins::{Heard, TrackPrint, Twin, compare_batches, compare_tracks};
use covermap_trust::{Evidence, Gap, TrustRules, Verdict};

use crate::road_tiles::Roads;

/// Cells of an upload asked about when looking for earlier uploads that share them.
const TWIN_CELLS: usize = 64;
/// Earlier uploads compared with it, at most.
const TWIN_CANDIDATES: i64 = 8;
/// Of each cell asked about, the uploads read, newest first: a busy place costs no more to look
/// in than a quiet one (a replay of an upload older than the last thousand in every cell it
/// shares is not found this way).
const TWIN_PER_CELL: i64 = 1000;
/// An earlier upload is compared when it shares at least this share of the cells asked about.
const TWIN_MIN_SHARE: f64 = 0.3;
/// Neighbours in time are looked for this far around the upload.
const NEIGHBOUR_WINDOW_H: i64 = 12;

/// What the blocking part of processing measured, for the rest to finish with history.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub evidence: Evidence,
    pub print: Option<TrackPrint>,
    /// A radio batch's sightings, to compare later batches with.
    pub heard: Vec<Heard>,
    pub extent: Option<UploadExtent>,
    /// Cells it touched, in order: where earlier uploads like it are looked for.
    pub cells: Vec<Cell>,
}

/// What an upload is compared with others by, kept for a second look once it is stored.
#[derive(Debug, Default, Clone)]
pub(crate) struct Probe {
    radio: bool,
    cells: Vec<Cell>,
    heard: Vec<Heard>,
    print: Option<TrackPrint>,
}

impl Measured {
    pub(crate) fn probe(&self) -> Probe {
        Probe {
            radio: self.evidence.radio.is_some(),
            cells: self.cells.clone(),
            heard: self.heard.clone(),
            print: self.print.clone(),
        }
    }
}

/// Compares a stored upload with the uploads alike again: an earlier one it copies, processed
/// at the same moment as it, amends its own verdict; a later one that copies it, amends that
/// one's.
pub(crate) async fn recheck(
    lease: &Lease,
    store: &dyn Store,
    probe: &Probe,
    rules: &TrustRules,
) -> Result<(), JobFailure> {
    let Some(found) = twin(lease, store, probe, rules).await? else {
        return Ok(());
    };
    let me = store
        .upload(lease.upload_id)
        .await
        .map_err(|e| JobFailure::Transient(format!("reading the upload: {e}")))?;
    if let Some(me) = me {
        amend_later(store, &me, found, rules).await?;
    }
    Ok(())
}

/// Measures a track (alone or under a camera drive) against the road network.
pub(crate) fn measure_track(
    track: &Track,
    roads: Option<&RoadGraph>,
    matched_m: Option<f64>,
    received_at: DateTime<Utc>,
    cells: Vec<Cell>,
) -> Measured {
    let count = |why: FixRejection| track.rejected.iter().filter(|r| r.1 == why).count() as u32;
    let input = covermap_trust::track::TrackInput {
        fixes: &track.fixes,
        jumps: &track.jumps,
        future_fixes: count(FixRejection::InFuture),
        old_fixes: count(FixRejection::TooOld),
        matched_m: roads.map(|_| matched_m.unwrap_or(0.0)),
        received_at: Some(received_at),
    };
    let measures = covermap_trust::track::measure(&input, roads);
    let extent = extent_of(&track.fixes, measures.radius_m, false);
    let print = (!track.fixes.is_empty()).then(|| TrackPrint::of(&track.fixes));
    Measured {
        evidence: Evidence {
            track: Some(measures),
            ..Evidence::default()
        },
        print,
        heard: Vec::new(),
        extent,
        cells,
    }
}

/// Measures a radio batch from its kept observations and what was refused of it.
pub(crate) fn measure_radio(batch: &RadioBatch, cells: Vec<Cell>) -> Measured {
    let keys: Vec<String> = batch
        .observations
        .iter()
        .map(covermap_ingest::radio::RadioObservation::emitter_key)
        .collect();
    let sightings: Vec<covermap_trust::radio::Sighting<'_>> = batch
        .observations
        .iter()
        .zip(&keys)
        .map(|(o, key)| covermap_trust::radio::Sighting {
            at: o.at,
            pos: o.pos,
            speed_mps: o.speed_mps,
            emitter: key,
            technology: technology_of(key),
            signal_dbm: o.signal_dbm,
        })
        .collect();
    let impossible = batch
        .rejected
        .iter()
        .filter(|r| r.reason == RadioRejection::ImpossibleSignal)
        .count() as u32;
    let measures = covermap_trust::radio::measure(&sightings, impossible);
    let extent = match (measures.start, measures.end, measures.centre) {
        (Some(first_at), Some(last_at), Some(centre)) => {
            let mut by_time: Vec<(DateTime<Utc>, LatLon)> =
                batch.observations.iter().map(|o| (o.at, o.pos)).collect();
            by_time.sort_by_key(|p| p.0);
            Some(UploadExtent {
                radio: true,
                first_at,
                last_at,
                first: by_time.first().map_or(centre, |p| p.1),
                last: by_time.last().map_or(centre, |p| p.1),
                centre,
                radius_m: measures.radius_m,
            })
        }
        _ => None,
    };
    let heard = batch
        .observations
        .iter()
        .zip(keys)
        .map(|(o, emitter)| Heard {
            at: o.at,
            pos: o.pos,
            emitter,
            signal_dbm: o.signal_dbm,
        })
        .collect();
    Measured {
        evidence: Evidence {
            radio: Some(measures),
            ..Evidence::default()
        },
        print: None,
        heard,
        extent,
        cells,
    }
}

/// `lte` of `lte:208:1:…`, `wifi` of `wifi:…`, `bluetooth` of `ble:…`.
fn technology_of(key: &str) -> &str {
    match key.split(':').next().unwrap_or_default() {
        "ble" => "bluetooth",
        other => other,
    }
}

fn extent_of(fixes: &[Fix], radius_m: f64, radio: bool) -> Option<UploadExtent> {
    let (first, last) = (fixes.first()?, fixes.last()?);
    let mut lats: Vec<f64> = fixes.iter().map(|f| f.pos.lat).collect();
    let mut lons: Vec<f64> = fixes.iter().map(|f| f.pos.lon).collect();
    lats.sort_by(f64::total_cmp);
    lons.sort_by(f64::total_cmp);
    Some(UploadExtent {
        radio,
        first_at: first.at,
        last_at: last.at,
        first: first.pos,
        last: last.pos,
        centre: LatLon {
            lat: lats[lats.len() / 2],
            lon: lons[lons.len() / 2],
        },
        radius_m,
    })
}

/// Finishes the evidence with what earlier uploads say (copies, replays, teleports between
/// uploads, parked batches around it) and judges it: the record to write with the results.
pub(crate) async fn judge(
    lease: &Lease,
    store: &dyn Store,
    mut measured: Measured,
    rules: &TrustRules,
    roads: &Roads,
) -> Result<TrustRecord, JobFailure> {
    let transient = |what: &str, e: covermap_store::StoreError| {
        JobFailure::Transient(format!("the trust stage, {what}: {e}"))
    };
    let me = store
        .upload(lease.upload_id)
        .await
        .map_err(|e| transient("reading the upload", e))?;
    let contributor = me.as_ref().and_then(|u| u.contributor.clone());
    measured.evidence.copy_of = me.as_ref().and_then(|u| u.copy_of);
    if let Some(extent) = &measured.extent {
        let around = Duration::hours(NEIGHBOUR_WINDOW_H);
        let neighbours = store
            .neighbours(
                lease.upload_id,
                &lease.device,
                contributor.as_deref(),
                extent.first_at - around,
                extent.last_at + around,
                200,
            )
            .await
            .map_err(|e| transient("reading neighbouring uploads", e))?;
        measured.evidence.gaps = gaps(
            lease,
            extent,
            &neighbours,
            measured.print.as_ref(),
            store,
            roads,
            rules,
        )
        .await?;
        if extent.radio {
            let parked = |e: &UploadExtent| e.radius_m <= rules.radio.stationary_radius_m;
            if parked(extent) {
                let near = neighbours
                    .iter()
                    .filter(|n| {
                        n.extent.radio
                            && parked(&n.extent)
                            && contributor.is_some()
                            && n.contributor == contributor
                            && n.extent.centre.distance_m(extent.centre)
                                <= rules.radio.farm_radius_m
                    })
                    .count();
                measured.evidence.farm_batches = Some(near as u32);
            }
        }
    }
    measured.evidence.twin = twin(lease, store, &measured.probe(), rules).await?;
    let findings = covermap_trust::judge(&measured.evidence, rules);
    let verdict = Verdict::of(&findings);
    Ok(TrustRecord {
        evidence: json(&measured.evidence)?,
        verdict: verdict.as_str().to_owned(),
        findings: json(&findings)?,
        extent: measured.extent,
        print: measured.print.as_ref().map(json).transpose()?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, JobFailure> {
    serde_json::to_string(v)
        .map_err(|e| JobFailure::Transient(format!("the trust stage's evidence: {e}")))
}

/// The ways to the uploads of the same device or contributor just before and after this one,
/// and, for two tracks of one device at the same time, how far apart they were.
async fn gaps(
    lease: &Lease,
    me: &UploadExtent,
    neighbours: &[Neighbour],
    print: Option<&TrackPrint>,
    store: &dyn Store,
    roads: &Roads,
    rules: &TrustRules,
) -> Result<Vec<Gap>, JobFailure> {
    // The least time to drive a way far enough to matter, at the roads' reference speeds, on
    // the roads between its ends (not this upload's own: the way may leave them).
    let drive = async |from: LatLon, to: LatLon, seconds: f64| -> Option<f64> {
        if from.distance_m(to) < rules.track.gap_min_m || !(0.0..=3600.0).contains(&seconds) {
            return None;
        }
        let limit = (2.0 * rules.track.max_class_ratio * seconds).max(600.0);
        roads
            .between(from, to)
            .await?
            .fastest_s(from, to, 60.0, limit, |s| {
                covermap_trust::track::class_speed_mps(&s.highway)
            })
            .map(f64::round)
    };
    let mut out = Vec::new();
    for shared in ["device", "contributor"] {
        let same: Vec<&Neighbour> = neighbours
            .iter()
            .filter(|n| n.extent.radio == me.radio)
            .filter(|n| match shared {
                "device" => n.device == lease.device,
                _ => n.device != lease.device,
            })
            .collect();
        let before = same
            .iter()
            .filter(|n| n.extent.last_at < me.first_at)
            .max_by_key(|n| (n.extent.last_at, n.upload_id));
        if let Some(n) = before {
            let seconds = (me.first_at - n.extent.last_at).as_seconds_f64();
            out.push(Gap {
                upload: n.upload_id,
                shared: shared.to_owned(),
                seconds,
                distance_m: n.extent.last.distance_m(me.first).round(),
                min_drive_s: drive(n.extent.last, me.first, seconds).await,
            });
        }
        let after = same
            .iter()
            .filter(|n| n.extent.first_at > me.last_at)
            .min_by_key(|n| (n.extent.first_at, n.upload_id));
        if let Some(n) = after {
            let seconds = (n.extent.first_at - me.last_at).as_seconds_f64();
            out.push(Gap {
                upload: n.upload_id,
                shared: shared.to_owned(),
                seconds,
                distance_m: me.last.distance_m(n.extent.first).round(),
                min_drive_s: drive(me.last, n.extent.first, seconds).await,
            });
        }
        // One device, two tracks over the same moments: where was it?
        if shared == "device"
            && !me.radio
            && let Some(mine) = print
        {
            let overlapping: Vec<i64> = same
                .iter()
                .filter(|n| n.extent.first_at <= me.last_at && n.extent.last_at >= me.first_at)
                .map(|n| n.upload_id)
                .collect();
            if overlapping.is_empty() {
                continue;
            }
            let prints = store
                .track_prints(&overlapping)
                .await
                .map_err(|e| JobFailure::Transient(format!("reading track prints: {e}")))?;
            for (id, text) in prints {
                let Ok(theirs) = serde_json::from_str::<TrackPrint>(&text) else {
                    continue;
                };
                if let Some(d) = apart_at_same_times(mine, &theirs) {
                    out.push(Gap {
                        upload: id,
                        shared: "device".into(),
                        seconds: 0.0,
                        distance_m: d.round(),
                        min_drive_s: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The median distance between two prints at the moments both have a point within two seconds
/// of; `None` when they share fewer than five such moments.
fn apart_at_same_times(a: &TrackPrint, b: &TrackPrint) -> Option<f64> {
    let mut d = Vec::new();
    let mut j = 0;
    for p in &a.points {
        while j + 1 < b.points.len() && b.points[j + 1][0] <= p[0] {
            j += 1;
        }
        let near = [j, j + 1]
            .into_iter()
            .filter_map(|k| b.points.get(k))
            .min_by(|x, y| (x[0] - p[0]).abs().total_cmp(&(y[0] - p[0]).abs()));
        if let Some(q) = near
            && (q[0] - p[0]).abs() <= 2.0
        {
            let here = LatLon {
                lat: p[1],
                lon: p[2],
            };
            d.push(here.distance_m(LatLon {
                lat: q[1],
                lon: q[2],
            }));
        }
    }
    if d.len() < 5 {
        return None;
    }
    d.sort_by(f64::total_cmp);
    Some(d[d.len() / 2])
}

/// The earlier upload this one lies on most like a copy: a replayed track, a copied batch. An
/// upload that arrived *later* but was processed first (two workers at once) is compared the
/// other way round: if it lies on this one like a copy, its evidence and verdict are amended —
/// whichever of a pair is processed second finds the pair.
async fn twin(
    lease: &Lease,
    store: &dyn Store,
    measured: &Probe,
    rules: &TrustRules,
) -> Result<Option<Twin>, JobFailure> {
    let radio = measured.radio;
    if (radio && measured.heard.is_empty()) || (!radio && measured.print.is_none()) {
        return Ok(None);
    }
    let distinct: Vec<Cell> = {
        let mut seen = BTreeSet::new();
        measured
            .cells
            .iter()
            .filter(|c| seen.insert(c.as_i64()))
            .copied()
            .collect()
    };
    if distinct.is_empty() {
        return Ok(None);
    }
    let step = distinct.len().div_ceil(TWIN_CELLS);
    let asked: Vec<Cell> = distinct.iter().step_by(step).copied().collect();
    let failed = |what: &str, e: covermap_store::StoreError| {
        JobFailure::Transient(format!("the trust stage, {what}: {e}"))
    };
    let candidates = store
        .shared_cells(
            lease.upload_id,
            radio,
            &asked,
            TWIN_PER_CELL,
            TWIN_CANDIDATES,
        )
        .await
        .map_err(|e| failed("looking for uploads alike", e))?;
    let min = ((asked.len() as f64) * TWIN_MIN_SHARE).ceil() as i64;
    let mut twins = Vec::new();
    for (id, shared) in candidates {
        if shared < min.max(1) {
            continue;
        }
        let Some(theirs_rec) = store
            .upload(id)
            .await
            .map_err(|e| failed("reading an upload alike", e))?
        else {
            continue;
        };
        let earlier = (theirs_rec.received_at, id) < (lease.received_at, lease.upload_id);
        let (forward, backward) = if radio {
            let rows = store
                .radio_observations(id, 100_000)
                .await
                .map_err(|e| failed("reading a batch", e))?;
            let theirs: Vec<Heard> = rows
                .into_iter()
                .map(|r| Heard {
                    at: r.observed_at,
                    pos: r.pos,
                    emitter: r.emitter,
                    signal_dbm: r.signal_dbm,
                })
                .collect();
            (
                compare_batches(&measured.heard, &theirs, id),
                compare_batches(&theirs, &measured.heard, lease.upload_id),
            )
        } else {
            let (Some(mine), Some((_, text))) = (
                &measured.print,
                store
                    .track_prints(&[id])
                    .await
                    .map_err(|e| failed("reading a track print", e))?
                    .into_iter()
                    .next(),
            ) else {
                continue;
            };
            let Ok(theirs) = serde_json::from_str::<TrackPrint>(&text) else {
                continue;
            };
            (
                compare_tracks(mine, &theirs, id),
                compare_tracks(&theirs, mine, lease.upload_id),
            )
        };
        if earlier {
            twins.extend(forward);
        } else if let Some(back) = backward {
            amend_later(store, &theirs_rec, back, rules).await?;
        }
    }
    Ok(Twin::closest(twins))
}

/// Gives `later` (an upload alike that arrived after the one it lies on) that twin, where it
/// is closer than the one it had, and judges it again.
async fn amend_later(
    store: &dyn Store,
    later: &covermap_store::UploadRecord,
    twin: Twin,
    rules: &TrustRules,
) -> Result<(), JobFailure> {
    let mut evidence: Evidence = later
        .evidence
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    let before = evidence.twin.clone();
    let closest = Twin::closest(before.clone().into_iter().chain([twin]));
    if closest == before {
        return Ok(());
    }
    evidence.twin = closest;
    let findings = covermap_trust::judge(&evidence, rules);
    let verdict = Verdict::of(&findings);
    store
        .amend_trust(
            later.id,
            &json(&evidence)?,
            verdict.as_str(),
            &json(&findings)?,
            chrono::Utc::now(),
        )
        .await
        .map_err(|e| JobFailure::Transient(format!("amending a later upload's verdict: {e}")))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn two_prints_apart_at_the_same_moments() {
        let a = TrackPrint {
            points: (0..10)
                .map(|i| [1000.0 + 2.0 * f64::from(i), 43.70, 7.40])
                .collect(),
        };
        let b = TrackPrint {
            points: (0..10)
                .map(|i| [1001.0 + 2.0 * f64::from(i), 43.71, 7.40])
                .collect(),
        };
        let d = apart_at_same_times(&a, &b).unwrap();
        assert!((d - 1112.0).abs() < 5.0, "{d}");
        let later = TrackPrint {
            points: (0..10)
                .map(|i| [5000.0 + 2.0 * f64::from(i), 43.71, 7.40])
                .collect(),
        };
        assert!(apart_at_same_times(&a, &later).is_none());
        assert_eq!(technology_of("ble:aa"), "bluetooth");
        assert_eq!(technology_of("lte:208:1:2:3"), "lte");
    }
}
