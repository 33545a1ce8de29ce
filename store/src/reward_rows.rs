//! What both backends share for epochs and demand: the rows' encodings and the assembly of an
//! epoch's inputs from the lists each backend reads.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use covermap_domain::Cell;
use covermap_domain::rewards::{
    Bounty, Capture, CellLastSeen, CellRoads, ContributorEvidence, DemandArea, EpochInputs,
    EpochPeriod, KnownEmitter, PreviousTotal, RadioSample, Refusal, UploadEvidence, UsageCount,
};

use covermap_domain::rewards::{CellReward, ContributorReward};
use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::rows::col;

/// Fix rejection reasons that say a track is physically impossible: the spoofing evidence.
pub(crate) fn spoof_reasons() -> String {
    covermap_domain::FixRejection::ALL
        .iter()
        .filter(|r| r.is_spoofing())
        .map(|r| format!("'{}'", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cellular emitter keys read `tech:mcc:mnc:…`; the operator is `mcc-mnc`. Wi-Fi and Bluetooth
/// have none.
pub(crate) fn operator_of(emitter: &str) -> String {
    let mut parts = emitter.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("gsm" | "wcdma" | "lte" | "nr"), Some(mcc), Some(mnc)) => format!("{mcc}-{mnc}"),
        _ => String::new(),
    }
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} does not fit in 63 bits")))
}

pub(crate) fn cumulative(text: &str) -> Result<u128> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("cumulative total {text:?} is not a number")))
}

/// A capture row: contributor (rewardable uploads only), upload, frame, cell, time.
pub(crate) type CaptureRow = (Option<String>, i64, i32, i64, DateTime<Utc>);
/// A radio row: contributor, upload, seq, cell, technology, emitter, signal, time, lat, lon.
pub(crate) type RadioSampleRow = (
    Option<String>,
    i64,
    i32,
    i64,
    String,
    String,
    Option<i32>,
    DateTime<Utc>,
    f64,
    f64,
);
/// A demand area row: id, name, weight, created, expires, budget, refunded before the epoch.
pub(crate) type AreaRow = (
    i64,
    String,
    f64,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<i64>,
    bool,
);

/// A capture row as the close reads it.
pub(crate) fn capture(
    (contributor, upload_id, frame, cell, captured_at): CaptureRow,
) -> Result<Capture> {
    Ok(Capture {
        contributor,
        upload_id,
        frame,
        cell: Cell::from_i64(cell)?,
        captured_at,
    })
}

pub(crate) fn radio_sample(
    (contributor, upload_id, seq, cell, technology, emitter, signal_dbm, at, lat, lon): RadioSampleRow,
) -> Result<RadioSample> {
    Ok(RadioSample {
        contributor,
        upload_id,
        seq,
        cell: Cell::from_i64(cell)?,
        technology,
        operator: operator_of(&emitter),
        emitter,
        signal_dbm,
        observed_at: at,
        lat,
        lon,
    })
}

/// The lists a backend reads for an epoch, before they are typed.
#[derive(Default)]
pub(crate) struct RawInputs {
    pub captures: Vec<CaptureRow>,
    pub last_seen: Vec<(i64, DateTime<Utc>)>,
    pub roads: Vec<(i64, f64, f64)>,
    pub radio: Vec<RadioSampleRow>,
    pub areas: Vec<AreaRow>,
    pub area_cells: Vec<(i64, i64)>,
    /// Claims of earlier epochs: area, cell, paid.
    pub claims: Vec<(i64, i64, i64)>,
    pub fixes: Vec<(String, i64)>,
    pub spoofed: Vec<(String, i64)>,
    pub duplicated: Vec<(String, i64)>,
    pub previous: Vec<(String, String)>,
    /// Requests per usage area in the epoch before.
    pub usage: Vec<(i64, i64)>,
    /// Uploads counted: id, paid contributor, device, kind, evidence.
    pub uploads: Vec<(i64, Option<String>, String, String, String)>,
    /// Refusals: contributor, device, reason, when.
    pub refusals: Vec<(String, String, String, DateTime<Utc>)>,
    /// Known sites: emitter, lat, lon, frequency, samples, observers (comma-separated), radius.
    pub emitters: Vec<EmitterRow>,
}

/// An emitter site row: emitter, lat, lon, frequency, samples, observers, radius.
pub(crate) type EmitterRow = (String, f64, f64, f64, i64, String, f64);

/// A verdict row: upload, verdict, findings (JSON), radio cells credited.
pub(crate) type VerdictRow = (i64, &'static str, String, Option<i64>);

/// An epoch's verdicts as rows.
pub(crate) fn verdict_rows(
    verdicts: &[covermap_domain::rewards::UploadVerdict],
) -> Result<Vec<VerdictRow>> {
    verdicts
        .iter()
        .map(|v| {
            let findings = serde_json::to_string(&v.findings)
                .map_err(|e| StoreError::Corrupt(format!("findings: {e}")))?;
            let credited = v
                .credited_cells
                .map(|c| to_i64(c, "cell count"))
                .transpose()?;
            Ok((v.upload_id, v.verdict.as_str(), findings, credited))
        })
        .collect()
}

impl RawInputs {
    pub(crate) fn assemble(self, period: &EpochPeriod) -> Result<EpochInputs> {
        let captures = self
            .captures
            .into_iter()
            .map(capture)
            .collect::<Result<_>>()?;
        let last_seen = self
            .last_seen
            .into_iter()
            .map(|(cell, last_seen)| {
                Ok(CellLastSeen {
                    cell: Cell::from_i64(cell)?,
                    last_seen,
                })
            })
            .collect::<Result<_>>()?;
        let roads = self
            .roads
            .into_iter()
            .map(|(cell, road_length_m, observed_m)| {
                Ok(CellRoads {
                    cell: Cell::from_i64(cell)?,
                    road_length_m,
                    observed_m,
                })
            })
            .collect::<Result<_>>()?;
        let radio = self
            .radio
            .into_iter()
            .map(radio_sample)
            .collect::<Result<_>>()?;
        let mut cells_of: HashMap<i64, Vec<Cell>> = HashMap::new();
        for (area, cell) in self.area_cells {
            cells_of
                .entry(area)
                .or_default()
                .push(Cell::from_i64(cell)?);
        }
        let mut claimed: HashMap<i64, (Vec<Cell>, u64)> = HashMap::new();
        for (area, cell, paid) in self.claims {
            let e = claimed.entry(area).or_default();
            e.0.push(Cell::from_i64(cell)?);
            e.1 += to_u64(paid, "bounty payment")?;
        }
        let demand = self
            .areas
            .into_iter()
            .map(
                |(id, name, weight, created_at, expires_at, budget, refunded)| {
                    let bounty = match budget {
                        Some(b) => {
                            let (claimed, spent) = claimed.remove(&id).unwrap_or_default();
                            Some(Bounty {
                                budget: to_u64(b, "budget")?,
                                spent,
                                claimed,
                                refunded,
                            })
                        }
                        None => None,
                    };
                    Ok(DemandArea {
                        id,
                        name,
                        weight,
                        cells: cells_of.remove(&id).unwrap_or_default(),
                        created_at,
                        expires_at,
                        bounty,
                    })
                },
            )
            .collect::<Result<_>>()?;
        let mut evidence: BTreeMap<String, ContributorEvidence> = BTreeMap::new();
        fn slot(
            evidence: &mut BTreeMap<String, ContributorEvidence>,
            who: String,
        ) -> &mut ContributorEvidence {
            evidence
                .entry(who.clone())
                .or_insert_with(|| ContributorEvidence {
                    contributor: who,
                    fixes_accepted: 0,
                    fixes_spoofed: 0,
                    frames_duplicated: 0,
                })
        }
        for (who, n) in self.fixes {
            slot(&mut evidence, who).fixes_accepted = to_u64(n, "fix count")?;
        }
        for (who, n) in self.spoofed {
            slot(&mut evidence, who).fixes_spoofed = to_u64(n, "fix count")?;
        }
        for (who, n) in self.duplicated {
            slot(&mut evidence, who).frames_duplicated = to_u64(n, "frame count")?;
        }
        let previous = self
            .previous
            .into_iter()
            .map(|(contributor, c)| {
                Ok(PreviousTotal {
                    contributor,
                    cumulative: cumulative(&c)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(EpochInputs {
            period: *period,
            captures,
            last_seen,
            roads,
            radio,
            emitters: self
                .emitters
                .into_iter()
                .map(
                    |(emitter, lat, lon, frequency_mhz, samples, observers, radius_m)| {
                        Ok(KnownEmitter {
                            emitter,
                            lat,
                            lon,
                            frequency_mhz,
                            samples: to_u64(samples, "samples")?,
                            observers: observers
                                .split(',')
                                .filter(|o| !o.is_empty())
                                .map(str::to_owned)
                                .collect(),
                            radius_m,
                        })
                    },
                )
                .collect::<Result<_>>()?,
            demand,
            evidence: evidence.into_values().collect(),
            previous,
            usage: self
                .usage
                .into_iter()
                .map(|(area, n)| {
                    Ok(UsageCount {
                        area: Cell::from_i64(area)?,
                        requests: to_u64(n, "request count")?,
                    })
                })
                .collect::<Result<_>>()?,
            uploads: self
                .uploads
                .into_iter()
                .map(
                    |(upload_id, contributor, device, kind, evidence)| UploadEvidence {
                        upload_id,
                        contributor,
                        device,
                        kind,
                        evidence,
                    },
                )
                .collect(),
            refusals: self
                .refusals
                .into_iter()
                .map(|(contributor, device, reason, at)| Refusal {
                    contributor,
                    device,
                    reason,
                    at,
                })
                .collect(),
        })
    }
}

/// Epochs close in order: the first close may pick any epoch, later ones the next after the
/// last closed, and only while no other epoch is being closed.
pub(crate) fn check_order(epoch: u64, last: Option<i64>, busy: Option<i64>) -> Result<()> {
    if let Some(other) = busy {
        return Err(StoreError::Conflict(format!(
            "epoch {other} is being closed; close epochs one at a time, in order"
        )));
    }
    match last {
        Some(l) if (l as u64) >= epoch => Err(StoreError::Conflict(format!(
            "epoch {l} is closed already; epoch {epoch} comes before it and cannot be closed now"
        ))),
        Some(l) if (l as u64) + 1 < epoch => Err(StoreError::Conflict(format!(
            "close epoch {} first: epochs close in order",
            l + 1
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn reward_row<R: Row>(r: &R) -> Result<ContributorReward>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ContributorReward {
        contributor: col(r, "contributor")?,
        points: to_u64(col(r, "points")?, "points")?,
        base: to_u64(col(r, "base")?, "amount")?,
        bounty: to_u64(col(r, "bounty")?, "amount")?,
        amount: to_u64(col(r, "amount")?, "amount")?,
        cumulative: cumulative(&col::<_, String>(r, "cumulative")?)?,
        flagged: col(r, "flagged")?,
    })
}

/// A cell reward row: cell, captures, radio units, points, amount, weight, newest capture.
pub(crate) type CellRewardRow = (i64, i64, i64, i64, i64, f64, Option<DateTime<Utc>>);

pub(crate) fn cell_row(
    (cell, captures, radio_units, points, amount, weight, last_seen): CellRewardRow,
) -> Result<CellReward> {
    Ok(CellReward {
        cell: Cell::from_i64(cell)?,
        captures: to_u64(captures, "count")?,
        radio_units: to_u64(radio_units, "count")?,
        points: to_u64(points, "points")?,
        amount: to_u64(amount, "amount")?,
        weight_at_start: weight,
        last_seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_come_from_cellular_emitter_keys() {
        assert_eq!(operator_of("lte:208:1:1234:56789"), "208-1");
        assert_eq!(operator_of("nr:310:260:1:2"), "310-260");
        assert_eq!(operator_of("wifi:01005e901000"), "");
        assert_eq!(operator_of("lte"), "");
    }
}
