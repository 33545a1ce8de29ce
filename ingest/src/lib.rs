//! covermap ingest: what drivers' devices send, read and checked before anything is kept.
//!
//! It owns the upload formats — GPS tracks (GPX, NMEA and BlackVue logs), camera drives (zips of
//! JPEG frames, their EXIF, geotagging frames on a track) and radio measurements ([`radio`]:
//! Ichnaea geosubmit, WiGLE and OpenCelliD CSV) — with their plausibility rules and limits
//! ([`IngestRules`], [`check_upload`]) and who may send what ([`access`]: API keys, device
//! signatures). Everything here is pure: bytes in, a checked value or an [`IngestError`] out.
//! Keeping an accepted upload is `covermap_pipeline::accept_upload`'s; HTTP framing is `web`'s;
//! SQL and blobs are `store`'s.

pub mod access;
mod drive;
mod exif_gps;
mod geotag;
mod gpx_track;
mod nmea;
pub mod radio;
mod track;

use chrono::{DateTime, Utc};
use covermap_domain::{DeviceId, Fix, LatLon, UploadKind};

pub use drive::{
    DriveContents, DriveFrame, DriveLimits, DriveSummary, TrackFormat, gunzip_bounded, read_drive,
};
pub use exif_gps::{ExifGps, FrameError, FrameMeta, FrameRejection, camera_of, read_frame_meta};
pub use geotag::{GeotagParams, Geotagged, GeotaggedFrame, geotag, geotag_from_exif};
pub use gpx_track::{GpxPoint, parse_gpx, read_gpx_points};
pub use nmea::{NmeaLog, NmeaPoint, parse_nmea, read_nmea};
pub use track::{FixRejection, IngestPolicy, Track, TrackSummary};

/// Why an upload was refused: each variant is the client's problem.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the upload is empty")]
    Empty,
    #[error("not a readable GPX file: {0}")]
    NotGpx(String),
    #[error("the track has no points")]
    NoPoints,
    #[error("none of the track's {total} points is usable: {summary}")]
    NoUsableFixes { total: usize, summary: String },
    #[error("a {0} upload is not a GPS track")]
    NotATrack(&'static str),
    #[error("not a readable NMEA 0183 log: {0}")]
    NotNmea(String),
    #[error("the NMEA log's {sentences} sentences hold no GNSS fix: the receiver never had one")]
    NoFix { sentences: usize },
    #[error(
        "{rejected} of the track's {total} fixes are over {max_speed_mps} m/s \
         ({:.0} km/h) from the fix before: not a drive",
        .max_speed_mps * 3.6
    )]
    ImplausibleTrack {
        rejected: usize,
        total: usize,
        max_speed_mps: f64,
    },
    #[error(
        "the track moves at {speed_mps:.0} m/s ({:.0} km/h) for {seconds:.0} s, step after \
         step: not a car on a road",
        .speed_mps * 3.6
    )]
    SustainedSpeed { seconds: f64, speed_mps: f64 },
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{message}")]
    OverLimit {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("not a readable drive: {0}")]
    NotADrive(String),
    #[error("{0}")]
    BadEncoding(String),
    #[error(transparent)]
    Radio(#[from] radio::RadioError),
}

impl IngestError {
    /// The field, file entry or column at fault, where there is one.
    pub fn field(&self) -> Option<String> {
        match self {
            IngestError::OverLimit { field, .. } => field.clone(),
            IngestError::Radio(e) => e.field().map(str::to_owned),
            _ => None,
        }
    }

    /// A short stable code for API clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Empty => "empty_upload",
            IngestError::NotGpx(_) => "invalid_gpx",
            IngestError::NoPoints => "no_points",
            IngestError::NoUsableFixes { .. } => "no_usable_fixes",
            IngestError::NotATrack(_) => "not_a_track",
            IngestError::NotNmea(_) => "invalid_nmea",
            IngestError::NoFix { .. } => "no_gnss_fix",
            IngestError::ImplausibleTrack { .. } => "implausible_speed",
            IngestError::SustainedSpeed { .. } => "implausible_speed",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::OverLimit { code, .. } => code,
            IngestError::NotADrive(_) => "invalid_drive",
            IngestError::BadEncoding(_) => "invalid_encoding",
            IngestError::Radio(e) => e.code(),
        }
    }
}

/// Reads a track upload of `kind` (GPX or NMEA) into a checked track.
pub fn parse(
    kind: UploadKind,
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Track, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    match kind {
        UploadKind::Gpx => parse_gpx(bytes, received_at, policy),
        UploadKind::Nmea => parse_nmea(bytes, received_at, policy),
        other => Err(IngestError::NotATrack(other.as_str())),
    }
}

/// Every rule and limit an upload is held to, whatever its kind.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IngestRules {
    pub track: IngestPolicy,
    pub drive: DriveLimits,
    pub radio: radio::RadioPolicy,
}

/// Who sent an upload, as the HTTP layer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploader {
    pub device: DeviceId,
    /// Who is paid for it, where the device or key is bound to a contributor.
    pub contributor: Option<String>,
    /// Signed by a registered device, or sent with a key bound to a contributor.
    pub rewardable: bool,
}

/// An upload in a few numbers, for the uploader's receipt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum UploadSummary {
    Track(TrackSummary),
    Drive(DriveSummary),
    Radio(radio::RadioSummary),
}

/// Checks an upload as a whole before anything is stored: it must parse, hold at least one
/// usable observation and stay within every limit. The worker later re-reads it and records what
/// each observation became.
pub fn check_upload(
    kind: UploadKind,
    bytes: &[u8],
    received_at: DateTime<Utc>,
    rules: &IngestRules,
) -> Result<UploadSummary, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    match kind {
        UploadKind::Gpx | UploadKind::Nmea => Ok(UploadSummary::Track(
            parse(kind, bytes, received_at, &rules.track)?.summary(),
        )),
        UploadKind::Drive => {
            let drive = read_drive(bytes, &rules.drive)?;
            check_drive_times(&drive, received_at, &rules.track)?;
            Ok(UploadSummary::Drive(drive.summary()))
        }
        _ => Ok(UploadSummary::Radio(
            parse_radio(kind, bytes, received_at, &rules.radio)?.summary(),
        )),
    }
}

/// A drive must say when it was taken, within the same window as a track's fixes: its track is
/// checked as a track upload is (all of it too old, in the future or implausible: refused with
/// the same error), and a drive without one must have at least one frame whose EXIF time lies in
/// the window. Refused here, before anything is stored, rather than frame by frame later.
fn check_drive_times(
    drive: &DriveContents,
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<(), IngestError> {
    if let Some((format, track)) = &drive.track {
        let kind = match format {
            TrackFormat::Gpx => UploadKind::Gpx,
            TrackFormat::Nmea => UploadKind::Nmea,
        };
        parse(kind, track, received_at, policy)?;
        return Ok(());
    }
    let skew = chrono::Duration::from_std(policy.max_future_skew).unwrap_or_default();
    let age = chrono::Duration::from_std(policy.max_age).unwrap_or_default();
    let times: Vec<DateTime<Utc>> = drive
        .frames
        .iter()
        .filter_map(|f| {
            f.meta
                .as_ref()
                .ok()?
                .capture_time(chrono::Duration::zero(), None)
                .ok()
        })
        .collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        // No frame says when: each is refused with its reason by the worker.
        return Ok(());
    };
    if times
        .iter()
        .any(|t| *t <= received_at + skew && *t >= received_at - age)
    {
        return Ok(());
    }
    let (code, message) = if *first > received_at + skew {
        (
            "frames_in_future",
            format!(
                "every frame is dated in the future (from {first}): the camera's clock is wrong"
            ),
        )
    } else {
        (
            "frames_too_old",
            format!(
                "every frame was taken {} or earlier, more than {} days ago: no longer news about the road",
                last.format("%Y-%m-%d"),
                age.num_days()
            ),
        )
    };
    Err(IngestError::OverLimit {
        code,
        message,
        field: None,
    })
}

/// Reads a radio upload of `kind` (geosubmit v1/v2, WiGLE or OpenCelliD CSV) into checked
/// observations and the ones left out.
pub fn parse_radio(
    kind: UploadKind,
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &radio::RadioPolicy,
) -> Result<radio::RadioBatch, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    let batch = match kind {
        UploadKind::GeosubmitV2 => radio::parse_geosubmit_v2(bytes, received_at, policy),
        UploadKind::GeosubmitV1 => radio::parse_geosubmit_v1(bytes, received_at, policy),
        UploadKind::Wigle => radio::parse_wigle_csv(bytes, received_at, policy),
        UploadKind::Opencellid => radio::parse_opencellid_csv(bytes, received_at, policy),
        other => return Err(IngestError::NotATrack(other.as_str())),
    };
    Ok(batch?)
}

/// A track's first and last fixes with a valid position and time, as written, with no other
/// rule applied: where a device was even when its track is refused.
pub fn track_span(kind: UploadKind, bytes: &[u8]) -> Option<(Fix, Fix)> {
    let mut timed: Vec<Fix> = match kind {
        UploadKind::Gpx => read_gpx_points(bytes)
            .ok()?
            .into_iter()
            .filter_map(|(lat, lon, time)| {
                Some(Fix {
                    at: time?,
                    pos: LatLon::new(lat, lon).ok()?,
                    accuracy_m: None,
                })
            })
            .collect(),
        UploadKind::Nmea => read_nmea(bytes)
            .ok()?
            .points
            .into_iter()
            .filter_map(|p| {
                Some(Fix {
                    at: p.time,
                    pos: LatLon::new(p.lat, p.lon).ok()?,
                    accuracy_m: None,
                })
            })
            .collect(),
        _ => return None,
    };
    timed.sort_by_key(|f| f.at);
    Some((*timed.first()?, *timed.last()?))
}
