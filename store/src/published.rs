//! An epoch's inputs as public files, and back: one Parquet file a list of [`EpochInputs`]
//! (GeoParquet where its rows have a place), the policy's TOML, and the manifest naming each
//! file's sha256. Whoever holds these files recomputes the root with no database
//! (`covermap epoch verify --from`).
//!
//! Layout under the object store's root: `epochs/{n}/manifest.json`, written after the epoch
//! closed, and `epochs/{n}/{sha256}/{name}`, written before — content-addressed, so a closer
//! that lost its claim can never overwrite the files another closer's manifest names.
//!
//! Columns keep the exact values the close used: cells as H3 indices (UInt64), times as UTC
//! microseconds, floats as doubles, cumulative totals as Decimal(38, 0).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{Field, Schema};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use covermap_domain::Cell;
use covermap_domain::rewards::{
    Bounty, Capture, CellLastSeen, CellRoads, ContributorEvidence, DemandArea, EpochInputs,
    EpochPeriod, KnownEmitter, PreviousTotal, PublishedFile, RadioSample, Refusal, UploadEvidence,
    UsageCount,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// The manifest's name under `epochs/{n}/`.
pub const MANIFEST: &str = "manifest.json";
/// The policy's name among the files.
pub const POLICY: &str = "policy.toml";

/// The Parquet files, one per input list, in the manifest's order.
pub const INPUT_FILES: [&str; 11] = [
    "captures.parquet",
    "last_seen.parquet",
    "roads.parquet",
    "radio.parquet",
    "emitters.parquet",
    "demand.parquet",
    "evidence.parquet",
    "previous.parquet",
    "usage.parquet",
    "uploads.parquet",
    "refusals.parquet",
];

/// Where epoch `epoch`'s manifest lies.
pub fn manifest_key(epoch: u64) -> String {
    format!("epochs/{epoch}/{MANIFEST}")
}

/// Where one of epoch `epoch`'s files lies.
pub fn file_key(epoch: u64, file: &PublishedFile) -> String {
    format!("epochs/{epoch}/{}/{}", file.sha256, file.name)
}

/// Whether `key` is one a published epoch can hold (what a server may hand out of its object
/// store): a manifest, or a file under its sha256.
pub fn is_published_key(key: &str) -> bool {
    let mut parts = key.split('/');
    let (Some("epochs"), Some(n)) = (parts.next(), parts.next()) else {
        return false;
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 20 {
        return false;
    }
    match (parts.next(), parts.next(), parts.next()) {
        (Some(MANIFEST), None, None) => true,
        (Some(sha), Some(name), None) => {
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && (name == POLICY || INPUT_FILES.contains(&name))
        }
        _ => false,
    }
}

/// An epoch's inputs and policy as files: what each is (for the manifest) and its bytes.
pub fn encode(inputs: &EpochInputs, policy: &str) -> Result<Vec<(PublishedFile, Bytes)>> {
    let i = inputs;
    let tables = [
        captures(&i.captures),
        last_seen(&i.last_seen),
        roads(&i.roads),
        radio(&i.radio),
        emitters(&i.emitters),
        demand(&i.demand),
        evidence(&i.evidence),
        previous(&i.previous)?,
        usage(&i.usage),
        uploads(&i.uploads),
        refusals(&i.refusals),
    ];
    let mut files = Vec::with_capacity(tables.len() + 1);
    for (name, table) in INPUT_FILES.into_iter().zip(tables) {
        let rows = table.rows;
        let bytes = table.write(name)?;
        files.push((described(name, &bytes, rows), bytes));
    }
    let policy = Bytes::copy_from_slice(policy.as_bytes());
    files.push((described(POLICY, &policy, 1), policy));
    Ok(files)
}

fn described(name: &str, bytes: &[u8], rows: usize) -> PublishedFile {
    PublishedFile {
        name: name.to_owned(),
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
        rows: rows as u64,
    }
}

/// Reads the input files (by name, as [`encode`] wrote them) back into the epoch's inputs.
/// A missing file, column or row, or a value out of its range, is an error naming the file.
pub fn decode(period: EpochPeriod, files: &BTreeMap<String, Bytes>) -> Result<EpochInputs> {
    let read = |name: &'static str| {
        let bytes = files
            .get(name)
            .ok_or_else(|| StoreError::Corrupt(format!("the epoch's files lack {name}")))?;
        Batches::read(name, bytes)
    };
    Ok(EpochInputs {
        period,
        captures: read_captures(&read("captures.parquet")?)?,
        last_seen: read_last_seen(&read("last_seen.parquet")?)?,
        roads: read_roads(&read("roads.parquet")?)?,
        radio: read_radio(&read("radio.parquet")?)?,
        emitters: read_emitters(&read("emitters.parquet")?)?,
        demand: read_demand(&read("demand.parquet")?)?,
        evidence: read_evidence(&read("evidence.parquet")?)?,
        previous: read_previous(&read("previous.parquet")?)?,
        usage: read_usage(&read("usage.parquet")?)?,
        uploads: read_uploads(&read("uploads.parquet")?)?,
        refusals: read_refusals(&read("refusals.parquet")?)?,
    })
}

// ---- writing ----

/// Columns of one file, built one whole column at a time.
struct Table {
    rows: usize,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
    /// GeoParquet's `geo` metadata when the table has a `geometry` column.
    geo: Option<String>,
}

impl Table {
    fn new(rows: usize) -> Self {
        Self {
            rows,
            fields: Vec::new(),
            columns: Vec::new(),
            geo: None,
        }
    }

    fn col(mut self, name: &str, nullable: bool, array: impl Array + 'static) -> Self {
        self.fields
            .push(Field::new(name, array.data_type().clone(), nullable));
        self.columns.push(Arc::new(array));
        self
    }

    /// A `geometry` column of WKB points (longitude, latitude in WGS 84) and its GeoParquet
    /// 1.1 metadata, bounding box included.
    fn points(mut self, points: impl Iterator<Item = (f64, f64)>) -> Self {
        let mut bbox = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        let wkb: Vec<[u8; 21]> = points
            .map(|(lon, lat)| {
                bbox = [
                    bbox[0].min(lon),
                    bbox[1].min(lat),
                    bbox[2].max(lon),
                    bbox[3].max(lat),
                ];
                let mut p = [0u8; 21];
                p[0] = 1; // little-endian
                p[1..5].copy_from_slice(&1u32.to_le_bytes()); // Point
                p[5..13].copy_from_slice(&lon.to_le_bytes());
                p[13..21].copy_from_slice(&lat.to_le_bytes());
                p
            })
            .collect();
        let mut column = serde_json::json!({
            "encoding": "WKB",
            "geometry_types": ["Point"],
        });
        if bbox[0].is_finite() {
            column["bbox"] = serde_json::json!(bbox);
        }
        self.geo = Some(
            serde_json::json!({
                "version": "1.1.0",
                "primary_column": "geometry",
                "columns": {"geometry": column},
            })
            .to_string(),
        );
        self.col(
            "geometry",
            false,
            BinaryArray::from_iter_values(wkb.iter().map(|p| &p[..])),
        )
    }

    fn write(self, name: &str) -> Result<Bytes> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("writing {name}: {e}"));
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(schema.clone(), self.columns).map_err(|e| fail(&e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(
                self.geo
                    .map(|geo| vec![KeyValue::new("geo".to_owned(), geo)]),
            )
            .build();
        let mut out = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| fail(&e))?;
        writer.write(&batch).map_err(|e| fail(&e))?;
        writer.close().map_err(|e| fail(&e))?;
        Ok(Bytes::from(out))
    }
}

fn micros<'a>(times: impl Iterator<Item = &'a DateTime<Utc>>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from_iter_values(times.map(DateTime::timestamp_micros))
        .with_timezone("UTC")
}

fn cells<'a>(cells: impl Iterator<Item = &'a Cell>) -> UInt64Array {
    UInt64Array::from_iter_values(cells.map(|c| u64::from(c.0)))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> StringArray {
    StringArray::from_iter_values(values)
}

fn some_strings<'a>(values: impl Iterator<Item = &'a Option<String>>) -> StringArray {
    values.map(Option::as_deref).collect()
}

fn cell_lists<'a>(lists: impl Iterator<Item = Option<&'a Vec<Cell>>>) -> ListArray {
    let mut b = ListBuilder::new(UInt64Builder::new());
    for list in lists {
        match list {
            Some(cells) => {
                for c in cells {
                    b.values().append_value(u64::from(c.0));
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    b.finish()
}

fn captures(rows: &[Capture]) -> Table {
    Table::new(rows.len())
        .col(
            "contributor",
            true,
            some_strings(rows.iter().map(|r| &r.contributor)),
        )
        .col(
            "upload_id",
            false,
            Int64Array::from_iter_values(rows.iter().map(|r| r.upload_id)),
        )
        .col(
            "frame",
            false,
            Int32Array::from_iter_values(rows.iter().map(|r| r.frame)),
        )
        .col("cell", false, cells(rows.iter().map(|r| &r.cell)))
        .col(
            "captured_at",
            false,
            micros(rows.iter().map(|r| &r.captured_at)),
        )
}

fn last_seen(rows: &[CellLastSeen]) -> Table {
    Table::new(rows.len())
        .col("cell", false, cells(rows.iter().map(|r| &r.cell)))
        .col(
            "last_seen",
            false,
            micros(rows.iter().map(|r| &r.last_seen)),
        )
}

fn roads(rows: &[CellRoads]) -> Table {
    Table::new(rows.len())
        .col("cell", false, cells(rows.iter().map(|r| &r.cell)))
        .col(
            "road_length_m",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.road_length_m)),
        )
        .col(
            "observed_m",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.observed_m)),
        )
}

fn radio(rows: &[RadioSample]) -> Table {
    Table::new(rows.len())
        .col(
            "contributor",
            true,
            some_strings(rows.iter().map(|r| &r.contributor)),
        )
        .col(
            "upload_id",
            false,
            Int64Array::from_iter_values(rows.iter().map(|r| r.upload_id)),
        )
        .col(
            "seq",
            false,
            Int32Array::from_iter_values(rows.iter().map(|r| r.seq)),
        )
        .col("cell", false, cells(rows.iter().map(|r| &r.cell)))
        .col(
            "technology",
            false,
            strings(rows.iter().map(|r| r.technology.as_str())),
        )
        .col(
            "operator",
            false,
            strings(rows.iter().map(|r| r.operator.as_str())),
        )
        .col(
            "emitter",
            false,
            strings(rows.iter().map(|r| r.emitter.as_str())),
        )
        .col(
            "signal_dbm",
            true,
            rows.iter().map(|r| r.signal_dbm).collect::<Int32Array>(),
        )
        .col(
            "observed_at",
            false,
            micros(rows.iter().map(|r| &r.observed_at)),
        )
        .col(
            "lat",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.lat)),
        )
        .col(
            "lon",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.lon)),
        )
        .points(rows.iter().map(|r| (r.lon, r.lat)))
}

fn emitters(rows: &[KnownEmitter]) -> Table {
    let mut observers = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for o in &r.observers {
            observers.values().append_value(o);
        }
        observers.append(true);
    }
    Table::new(rows.len())
        .col(
            "emitter",
            false,
            strings(rows.iter().map(|r| r.emitter.as_str())),
        )
        .col(
            "lat",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.lat)),
        )
        .col(
            "lon",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.lon)),
        )
        .col(
            "frequency_mhz",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.frequency_mhz)),
        )
        .col(
            "samples",
            false,
            UInt64Array::from_iter_values(rows.iter().map(|r| r.samples)),
        )
        .col("observers", false, observers.finish())
        .col(
            "radius_m",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.radius_m)),
        )
        .points(rows.iter().map(|r| (r.lon, r.lat)))
}

fn demand(rows: &[DemandArea]) -> Table {
    let bounty = |f: fn(&Bounty) -> u64| -> UInt64Array {
        rows.iter().map(|r| r.bounty.as_ref().map(f)).collect()
    };
    Table::new(rows.len())
        .col(
            "id",
            false,
            Int64Array::from_iter_values(rows.iter().map(|r| r.id)),
        )
        .col("name", false, strings(rows.iter().map(|r| r.name.as_str())))
        .col(
            "weight",
            false,
            Float64Array::from_iter_values(rows.iter().map(|r| r.weight)),
        )
        .col(
            "cells",
            false,
            cell_lists(rows.iter().map(|r| Some(&r.cells))),
        )
        .col(
            "created_at",
            false,
            micros(rows.iter().map(|r| &r.created_at)),
        )
        .col(
            "expires_at",
            true,
            rows.iter()
                .map(|r| r.expires_at.map(|e| e.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
        .col("bounty_budget", true, bounty(|b| b.budget))
        .col("bounty_spent", true, bounty(|b| b.spent))
        .col(
            "bounty_claimed",
            true,
            cell_lists(rows.iter().map(|r| r.bounty.as_ref().map(|b| &b.claimed))),
        )
        .col(
            "bounty_refunded",
            true,
            rows.iter()
                .map(|r| r.bounty.as_ref().map(|b| b.refunded))
                .collect::<BooleanArray>(),
        )
}

fn evidence(rows: &[ContributorEvidence]) -> Table {
    Table::new(rows.len())
        .col(
            "contributor",
            false,
            strings(rows.iter().map(|r| r.contributor.as_str())),
        )
        .col(
            "fixes_accepted",
            false,
            UInt64Array::from_iter_values(rows.iter().map(|r| r.fixes_accepted)),
        )
        .col(
            "fixes_spoofed",
            false,
            UInt64Array::from_iter_values(rows.iter().map(|r| r.fixes_spoofed)),
        )
        .col(
            "frames_duplicated",
            false,
            UInt64Array::from_iter_values(rows.iter().map(|r| r.frames_duplicated)),
        )
}

/// The largest total Decimal(38, 0) holds.
const DECIMAL_38_MAX: u128 = 10u128.pow(38) - 1;

fn previous(rows: &[PreviousTotal]) -> Result<Table> {
    let mut totals = Vec::with_capacity(rows.len());
    for r in rows {
        if r.cumulative > DECIMAL_38_MAX {
            return Err(StoreError::Corrupt(format!(
                "{}'s cumulative total {} does not fit Decimal(38, 0)",
                r.contributor, r.cumulative
            )));
        }
        totals.push(r.cumulative as i128);
    }
    let totals = Decimal128Array::from_iter_values(totals)
        .with_precision_and_scale(38, 0)
        .map_err(|e| StoreError::Corrupt(format!("writing previous.parquet: {e}")))?;
    Ok(Table::new(rows.len())
        .col(
            "contributor",
            false,
            strings(rows.iter().map(|r| r.contributor.as_str())),
        )
        .col("cumulative", false, totals))
}

fn usage(rows: &[UsageCount]) -> Table {
    Table::new(rows.len())
        .col("area", false, cells(rows.iter().map(|r| &r.area)))
        .col(
            "requests",
            false,
            UInt64Array::from_iter_values(rows.iter().map(|r| r.requests)),
        )
}

fn uploads(rows: &[UploadEvidence]) -> Table {
    Table::new(rows.len())
        .col(
            "upload_id",
            false,
            Int64Array::from_iter_values(rows.iter().map(|r| r.upload_id)),
        )
        .col(
            "contributor",
            true,
            some_strings(rows.iter().map(|r| &r.contributor)),
        )
        .col(
            "device",
            false,
            strings(rows.iter().map(|r| r.device.as_str())),
        )
        .col("kind", false, strings(rows.iter().map(|r| r.kind.as_str())))
        .col(
            "evidence",
            false,
            strings(rows.iter().map(|r| r.evidence.as_str())),
        )
}

fn refusals(rows: &[Refusal]) -> Table {
    Table::new(rows.len())
        .col(
            "contributor",
            false,
            strings(rows.iter().map(|r| r.contributor.as_str())),
        )
        .col(
            "device",
            false,
            strings(rows.iter().map(|r| r.device.as_str())),
        )
        .col(
            "reason",
            false,
            strings(rows.iter().map(|r| r.reason.as_str())),
        )
        .col("at", false, micros(rows.iter().map(|r| &r.at)))
}

// ---- reading ----

/// One file's record batches, with its name for errors.
struct Batches {
    file: &'static str,
    batches: Vec<RecordBatch>,
}

impl Batches {
    fn read(file: &'static str, bytes: &Bytes) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{file}: {e}"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .map_err(|e| fail(&e))?
            .build()
            .map_err(|e| fail(&e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| fail(&e))?;
        Ok(Self { file, batches })
    }

    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Every row of every batch, each read by `row` from its batch's columns.
    fn each<T>(&self, mut row: impl FnMut(&Columns<'_>, usize) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            let columns = Columns {
                file: self.file,
                batch,
            };
            for i in 0..batch.num_rows() {
                out.push(row(&columns, i)?);
            }
        }
        Ok(out)
    }
}

/// One batch's columns, looked up by name and type.
struct Columns<'a> {
    file: &'static str,
    batch: &'a RecordBatch,
}

impl Columns<'_> {
    fn get<A: Array + 'static>(&self, name: &str) -> Result<&A> {
        let column = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| StoreError::Corrupt(format!("{}: no column {name}", self.file)))?;
        column.as_any().downcast_ref::<A>().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{}: column {name} is {}, not the type covermap writes",
                self.file,
                column.data_type()
            ))
        })
    }

    fn fail(&self, name: &str, i: usize, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!("{}: row {i}, {name}: {detail}", self.file))
    }

    fn required<A: Array + 'static>(&self, name: &str, i: usize) -> Result<&A> {
        let a = self.get::<A>(name)?;
        if a.is_null(i) {
            return Err(self.fail(name, i, "missing"));
        }
        Ok(a)
    }

    fn string(&self, name: &str, i: usize) -> Result<String> {
        Ok(self.required::<StringArray>(name, i)?.value(i).to_owned())
    }

    fn some_string(&self, name: &str, i: usize) -> Result<Option<String>> {
        let a = self.get::<StringArray>(name)?;
        Ok((!a.is_null(i)).then(|| a.value(i).to_owned()))
    }

    fn i64(&self, name: &str, i: usize) -> Result<i64> {
        Ok(self.required::<Int64Array>(name, i)?.value(i))
    }

    fn i32(&self, name: &str, i: usize) -> Result<i32> {
        Ok(self.required::<Int32Array>(name, i)?.value(i))
    }

    fn u64(&self, name: &str, i: usize) -> Result<u64> {
        Ok(self.required::<UInt64Array>(name, i)?.value(i))
    }

    fn f64(&self, name: &str, i: usize) -> Result<f64> {
        Ok(self.required::<Float64Array>(name, i)?.value(i))
    }

    fn cell(&self, name: &str, i: usize) -> Result<Cell> {
        self.cell_of(name, i, self.u64(name, i)?)
    }

    fn cell_of(&self, name: &str, i: usize, v: u64) -> Result<Cell> {
        i64::try_from(v)
            .ok()
            .and_then(|v| Cell::from_i64(v).ok())
            .ok_or_else(|| self.fail(name, i, format!("{v:#x} is not an H3 cell")))
    }

    fn time(&self, name: &str, i: usize) -> Result<DateTime<Utc>> {
        let v = self
            .required::<TimestampMicrosecondArray>(name, i)?
            .value(i);
        self.time_of(name, i, v)
    }

    fn some_time(&self, name: &str, i: usize) -> Result<Option<DateTime<Utc>>> {
        let a = self.get::<TimestampMicrosecondArray>(name)?;
        if a.is_null(i) {
            return Ok(None);
        }
        self.time_of(name, i, a.value(i)).map(Some)
    }

    fn time_of(&self, name: &str, i: usize, v: i64) -> Result<DateTime<Utc>> {
        DateTime::from_timestamp_micros(v).ok_or_else(|| self.fail(name, i, "out of range"))
    }

    fn cell_list(&self, name: &str, i: usize) -> Result<Option<Vec<Cell>>> {
        let lists = self.get::<ListArray>(name)?;
        if lists.is_null(i) {
            return Ok(None);
        }
        let list = lists.value(i);
        let values = list
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| self.fail(name, i, "not a list of H3 cells"))?;
        let mut out = Vec::with_capacity(values.len());
        for j in 0..values.len() {
            if values.is_null(j) {
                return Err(self.fail(name, i, "a missing cell"));
            }
            out.push(self.cell_of(name, i, values.value(j))?);
        }
        Ok(Some(out))
    }
}

fn read_captures(b: &Batches) -> Result<Vec<Capture>> {
    b.each(|c, i| {
        Ok(Capture {
            contributor: c.some_string("contributor", i)?,
            upload_id: c.i64("upload_id", i)?,
            frame: c.i32("frame", i)?,
            cell: c.cell("cell", i)?,
            captured_at: c.time("captured_at", i)?,
        })
    })
}

fn read_last_seen(b: &Batches) -> Result<Vec<CellLastSeen>> {
    b.each(|c, i| {
        Ok(CellLastSeen {
            cell: c.cell("cell", i)?,
            last_seen: c.time("last_seen", i)?,
        })
    })
}

fn read_roads(b: &Batches) -> Result<Vec<CellRoads>> {
    b.each(|c, i| {
        Ok(CellRoads {
            cell: c.cell("cell", i)?,
            road_length_m: c.f64("road_length_m", i)?,
            observed_m: c.f64("observed_m", i)?,
        })
    })
}

fn read_radio(b: &Batches) -> Result<Vec<RadioSample>> {
    b.each(|c, i| {
        let signal = c.get::<Int32Array>("signal_dbm")?;
        Ok(RadioSample {
            contributor: c.some_string("contributor", i)?,
            upload_id: c.i64("upload_id", i)?,
            seq: c.i32("seq", i)?,
            cell: c.cell("cell", i)?,
            technology: c.string("technology", i)?,
            operator: c.string("operator", i)?,
            emitter: c.string("emitter", i)?,
            signal_dbm: (!signal.is_null(i)).then(|| signal.value(i)),
            observed_at: c.time("observed_at", i)?,
            lat: c.f64("lat", i)?,
            lon: c.f64("lon", i)?,
        })
    })
}

fn read_emitters(b: &Batches) -> Result<Vec<KnownEmitter>> {
    b.each(|c, i| {
        let lists = c.required::<ListArray>("observers", i)?;
        let list = lists.value(i);
        let names = list
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| c.fail("observers", i, "not a list of names"))?;
        let observers = (0..names.len())
            .map(|j| {
                (!names.is_null(j))
                    .then(|| names.value(j).to_owned())
                    .ok_or_else(|| c.fail("observers", i, "a missing name"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KnownEmitter {
            emitter: c.string("emitter", i)?,
            lat: c.f64("lat", i)?,
            lon: c.f64("lon", i)?,
            frequency_mhz: c.f64("frequency_mhz", i)?,
            samples: c.u64("samples", i)?,
            observers,
            radius_m: c.f64("radius_m", i)?,
        })
    })
}

fn read_demand(b: &Batches) -> Result<Vec<DemandArea>> {
    b.each(|c, i| {
        let budget = c.get::<UInt64Array>("bounty_budget")?;
        let bounty = if budget.is_null(i) {
            None
        } else {
            Some(Bounty {
                budget: budget.value(i),
                spent: c.u64("bounty_spent", i)?,
                claimed: c
                    .cell_list("bounty_claimed", i)?
                    .ok_or_else(|| c.fail("bounty_claimed", i, "missing"))?,
                refunded: c.required::<BooleanArray>("bounty_refunded", i)?.value(i),
            })
        };
        Ok(DemandArea {
            id: c.i64("id", i)?,
            name: c.string("name", i)?,
            weight: c.f64("weight", i)?,
            cells: c
                .cell_list("cells", i)?
                .ok_or_else(|| c.fail("cells", i, "missing"))?,
            created_at: c.time("created_at", i)?,
            expires_at: c.some_time("expires_at", i)?,
            bounty,
        })
    })
}

fn read_evidence(b: &Batches) -> Result<Vec<ContributorEvidence>> {
    b.each(|c, i| {
        Ok(ContributorEvidence {
            contributor: c.string("contributor", i)?,
            fixes_accepted: c.u64("fixes_accepted", i)?,
            fixes_spoofed: c.u64("fixes_spoofed", i)?,
            frames_duplicated: c.u64("frames_duplicated", i)?,
        })
    })
}

fn read_previous(b: &Batches) -> Result<Vec<PreviousTotal>> {
    b.each(|c, i| {
        let v = c.required::<Decimal128Array>("cumulative", i)?.value(i);
        Ok(PreviousTotal {
            contributor: c.string("contributor", i)?,
            cumulative: u128::try_from(v)
                .map_err(|_| c.fail("cumulative", i, "a negative total"))?,
        })
    })
}

fn read_usage(b: &Batches) -> Result<Vec<UsageCount>> {
    b.each(|c, i| {
        Ok(UsageCount {
            area: c.cell("area", i)?,
            requests: c.u64("requests", i)?,
        })
    })
}

fn read_uploads(b: &Batches) -> Result<Vec<UploadEvidence>> {
    b.each(|c, i| {
        Ok(UploadEvidence {
            upload_id: c.i64("upload_id", i)?,
            contributor: c.some_string("contributor", i)?,
            device: c.string("device", i)?,
            kind: c.string("kind", i)?,
            evidence: c.string("evidence", i)?,
        })
    })
}

fn read_refusals(b: &Batches) -> Result<Vec<Refusal>> {
    b.each(|c, i| {
        Ok(Refusal {
            contributor: c.string("contributor", i)?,
            device: c.string("device", i)?,
            reason: c.string("reason", i)?,
            at: c.time("at", i)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(lat: f64, lon: f64) -> Cell {
        Cell(
            h3o::LatLng::new(lat, lon)
                .expect("a place")
                .to_cell(h3o::Resolution::Eleven),
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a time")
            .with_timezone(&Utc)
    }

    /// Every field of every list, with each optional value both present and absent.
    fn inputs() -> EpochInputs {
        let (a, b) = (cell(43.7384, 7.4246), cell(43.7311, 7.4197));
        EpochInputs {
            period: EpochPeriod {
                epoch: 7,
                start: at("2026-12-01T00:00:00Z"),
                end: at("2026-12-02T00:00:00Z"),
            },
            captures: vec![
                Capture {
                    contributor: Some("alice".into()),
                    upload_id: 1,
                    frame: 0,
                    cell: a,
                    captured_at: at("2026-12-01T10:00:00.123456Z"),
                },
                Capture {
                    contributor: None,
                    upload_id: 2,
                    frame: 3,
                    cell: b,
                    captured_at: at("2026-12-01T11:00:00Z"),
                },
            ],
            last_seen: vec![CellLastSeen {
                cell: a,
                last_seen: at("2026-11-20T08:00:00Z"),
            }],
            roads: vec![CellRoads {
                cell: b,
                road_length_m: 123.456_789_012_345,
                observed_m: 0.1 + 0.2,
            }],
            radio: vec![
                RadioSample {
                    contributor: Some("bob".into()),
                    upload_id: 3,
                    seq: 1,
                    cell: a,
                    technology: "lte".into(),
                    operator: "208-10".into(),
                    emitter: "lte:208-10:1234:5678".into(),
                    signal_dbm: Some(-97),
                    observed_at: at("2026-12-01T12:00:00.000001Z"),
                    lat: 43.738_412_345,
                    lon: 7.424_612_345,
                },
                RadioSample {
                    contributor: None,
                    upload_id: 3,
                    seq: 2,
                    cell: b,
                    technology: "wifi".into(),
                    operator: String::new(),
                    emitter: "wifi:aa:bb:cc:dd:ee:ff".into(),
                    signal_dbm: None,
                    observed_at: at("2026-12-01T12:00:01Z"),
                    lat: 43.7311,
                    lon: 7.4197,
                },
            ],
            emitters: vec![
                KnownEmitter {
                    emitter: "lte:208-10:1234:5678".into(),
                    lat: 43.74,
                    lon: 7.43,
                    frequency_mhz: 1800.0,
                    samples: 12,
                    observers: vec!["alice".into(), "bob".into()],
                    radius_m: 250.5,
                },
                KnownEmitter {
                    emitter: "wifi:aa:bb:cc:dd:ee:ff".into(),
                    lat: 43.73,
                    lon: 7.42,
                    frequency_mhz: 0.0,
                    samples: 0,
                    observers: vec![],
                    radius_m: 0.0,
                },
            ],
            demand: vec![
                DemandArea {
                    id: 1,
                    name: "Port Hercule".into(),
                    weight: 1.5,
                    cells: vec![a, b],
                    created_at: at("2026-11-01T00:00:00Z"),
                    expires_at: Some(at("2027-01-01T00:00:00Z")),
                    bounty: Some(Bounty {
                        budget: 1_000_000,
                        spent: 250,
                        claimed: vec![b],
                        refunded: false,
                    }),
                },
                DemandArea {
                    id: 2,
                    name: "nothing yet".into(),
                    weight: 0.0,
                    cells: vec![],
                    created_at: at("2026-11-02T00:00:00Z"),
                    expires_at: None,
                    bounty: None,
                },
            ],
            evidence: vec![ContributorEvidence {
                contributor: "alice".into(),
                fixes_accepted: 100,
                fixes_spoofed: 2,
                frames_duplicated: 1,
            }],
            previous: vec![
                PreviousTotal {
                    contributor: "alice".into(),
                    cumulative: DECIMAL_38_MAX,
                },
                PreviousTotal {
                    contributor: "bob".into(),
                    cumulative: 0,
                },
            ],
            usage: vec![UsageCount {
                area: Cell(a.0.parent(h3o::Resolution::Seven).expect("a parent")),
                requests: 42,
            }],
            uploads: vec![UploadEvidence {
                upload_id: 1,
                contributor: None,
                device: "dev-1".into(),
                kind: "drive".into(),
                evidence: r#"{"fixes":3}"#.into(),
            }],
            refusals: vec![Refusal {
                contributor: "carol".into(),
                device: "dev-9".into(),
                reason: "impossible_track".into(),
                at: at("2026-12-01T13:00:00Z"),
            }],
        }
    }

    fn by_name(files: Vec<(PublishedFile, Bytes)>) -> BTreeMap<String, Bytes> {
        files.into_iter().map(|(f, b)| (f.name, b)).collect()
    }

    #[test]
    fn every_input_comes_back_exactly_from_its_files() {
        let inputs = inputs();
        let files = encode(&inputs, "version = 1\n").expect("encoded");
        let names: Vec<&str> = files.iter().map(|(f, _)| f.name.as_str()).collect();
        let mut expected: Vec<&str> = INPUT_FILES.to_vec();
        expected.push(POLICY);
        assert_eq!(names, expected);
        for (f, bytes) in &files {
            assert_eq!(f.sha256, hex::encode(Sha256::digest(bytes)));
            assert_eq!(f.bytes, bytes.len() as u64);
        }
        let rows: BTreeMap<&str, u64> = files
            .iter()
            .map(|(f, _)| (f.name.as_str(), f.rows))
            .collect();
        assert_eq!(rows["radio.parquet"], 2);
        assert_eq!(rows["refusals.parquet"], 1);
        assert_eq!(rows[POLICY], 1);
        let back = decode(inputs.period, &by_name(files)).expect("decoded");
        assert_eq!(back, inputs);
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let a = encode(&inputs(), "p").expect("encoded");
        let b = encode(&inputs(), "p").expect("encoded");
        let sums = |f: &[(PublishedFile, Bytes)]| {
            f.iter().map(|(f, _)| f.sha256.clone()).collect::<Vec<_>>()
        };
        assert_eq!(sums(&a), sums(&b));
    }

    #[test]
    fn places_carry_geoparquet_points() {
        let inputs = inputs();
        let files = by_name(encode(&inputs, "p").expect("encoded"));
        for (name, points) in [
            (
                "radio.parquet",
                inputs
                    .radio
                    .iter()
                    .map(|r| (r.lon, r.lat))
                    .collect::<Vec<_>>(),
            ),
            (
                "emitters.parquet",
                inputs.emitters.iter().map(|e| (e.lon, e.lat)).collect(),
            ),
        ] {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(files[name].clone()).expect("parquet");
            let kv = reader
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .expect("metadata")
                .iter()
                .find(|kv| kv.key == "geo")
                .and_then(|kv| kv.value.clone())
                .expect("a geo key");
            let geo: serde_json::Value = serde_json::from_str(&kv).expect("geo is JSON");
            assert_eq!(geo["version"], "1.1.0");
            assert_eq!(geo["primary_column"], "geometry");
            assert_eq!(geo["columns"]["geometry"]["encoding"], "WKB");
            assert_eq!(geo["columns"]["geometry"]["geometry_types"][0], "Point");
            let bbox: Vec<f64> =
                serde_json::from_value(geo["columns"]["geometry"]["bbox"].clone()).expect("bbox");
            let min_lon = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let max_lat = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            assert_eq!((bbox[0], bbox[3]), (min_lon, max_lat));
            let batch = reader
                .build()
                .expect("reader")
                .next()
                .expect("a batch")
                .expect("rows");
            let wkb = batch
                .column_by_name("geometry")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .expect("a WKB column");
            for (i, (lon, lat)) in points.iter().enumerate() {
                let p = wkb.value(i);
                assert_eq!(p.len(), 21);
                assert_eq!(&p[..5], &[1, 1, 0, 0, 0], "little-endian Point");
                assert_eq!(f64::from_le_bytes(p[5..13].try_into().expect("x")), *lon);
                assert_eq!(f64::from_le_bytes(p[13..21].try_into().expect("y")), *lat);
            }
        }
    }

    #[test]
    fn a_missing_file_or_a_bad_value_is_named() {
        let inputs = inputs();
        let mut files = by_name(encode(&inputs, "p").expect("encoded"));
        files.remove("usage.parquet");
        let e = decode(inputs.period, &files)
            .expect_err("a file is missing")
            .to_string();
        assert!(e.contains("usage.parquet"), "{e}");

        // A cell that is no H3 cell, in a file otherwise well formed.
        let mut bad = inputs.clone();
        bad.usage.clear();
        let mut files = by_name(encode(&bad, "p").expect("encoded"));
        let table = Table::new(1)
            .col("area", false, UInt64Array::from_iter_values([7u64]))
            .col("requests", false, UInt64Array::from_iter_values([1u64]));
        files.insert(
            "usage.parquet".into(),
            table.write("usage.parquet").expect("written"),
        );
        let e = decode(inputs.period, &files)
            .expect_err("not a cell")
            .to_string();
        assert!(
            e.contains("usage.parquet") && e.contains("area") && e.contains("H3"),
            "{e}"
        );

        // Garbage where Parquet should be.
        files.insert(
            "roads.parquet".into(),
            Bytes::from_static(b"PAR1 not really"),
        );
        let e = decode(inputs.period, &files)
            .expect_err("not parquet")
            .to_string();
        assert!(e.contains("roads.parquet"), "{e}");
    }

    #[test]
    fn a_total_beyond_decimal_38_is_refused_not_truncated() {
        let mut i = inputs();
        i.previous[0].cumulative = u128::MAX;
        let e = encode(&i, "p").expect_err("too large").to_string();
        assert!(e.contains("alice") && e.contains("Decimal(38, 0)"), "{e}");
    }

    #[test]
    fn only_published_keys_are_handed_out() {
        let sha = "a".repeat(64);
        assert!(is_published_key("epochs/3/manifest.json"));
        assert!(is_published_key(&format!("epochs/3/{sha}/radio.parquet")));
        assert!(is_published_key(&format!("epochs/12/{sha}/policy.toml")));
        for bad in [
            "epochs/3".to_owned(),
            "epochs//manifest.json".to_owned(),
            "epochs/x/manifest.json".to_owned(),
            format!("epochs/3/{sha}/secrets.parquet"),
            format!("epochs/3/{}/radio.parquet", "A".repeat(64)),
            format!("epochs/3/{sha}/radio.parquet/x"),
            "sha256/ab/abcdef".to_owned(),
            "staging/s/0-x".to_owned(),
            "epochs/3/../../sha256/ab/manifest.json".to_owned(),
        ] {
            assert!(!is_published_key(&bad), "{bad}");
        }
    }
}
