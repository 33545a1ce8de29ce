//! Camera drives as they arrive: a zip of JPEG frames, with the drive's track as a GPX or NMEA
//! file beside them, or frames that carry their own EXIF GPS. Read with limits, so a zip bomb or
//! a decompression-bomb JPEG costs a refusal, not the server.

use std::io::{Cursor, Read};

use serde::Serialize;

use crate::IngestError;
use crate::exif_gps::{FrameError, FrameMeta, read_frame_meta};

/// What one drive may hold. Each limit is refused with an error naming it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriveLimits {
    /// Frames in one drive: an hour at 0.5 fps is 1,800.
    pub max_frames: usize,
    /// Entries of any kind in the zip (frames, the track, a manifest).
    pub max_entries: usize,
    /// Width × height of one frame. 8K is 33 Mpx; a decompression bomb declares far more.
    pub max_frame_pixels: u64,
    /// Bytes of one entry once inflated.
    pub max_entry_bytes: u64,
    /// Bytes of all entries once inflated.
    pub max_total_bytes: u64,
    /// Inflated over compressed size of an entry. JPEGs barely compress (≈1×) and text tracks
    /// ≈10×; a zip bomb is in the hundreds or thousands.
    pub max_ratio: f64,
}

impl Default for DriveLimits {
    fn default() -> Self {
        Self {
            max_frames: 2_000,
            max_entries: 2_100,
            max_frame_pixels: 40_000_000,
            max_entry_bytes: 32 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
            max_ratio: 50.0,
        }
    }
}

/// The format of a drive's track file, told by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackFormat {
    Gpx,
    Nmea,
}

/// One frame of a drive: its bytes and what its header says, or why it could not be read.
#[derive(Debug)]
pub struct DriveFrame {
    /// Position among the drive's frames, in name order.
    pub index: usize,
    pub name: String,
    pub bytes: Vec<u8>,
    pub meta: Result<FrameMeta, FrameError>,
}

/// What a drive's zip holds.
#[derive(Debug)]
pub struct DriveContents {
    /// In name order (cameras number their frames).
    pub frames: Vec<DriveFrame>,
    pub track: Option<(TrackFormat, Vec<u8>)>,
}

/// A drive in a few numbers, for the uploader's receipt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriveSummary {
    pub frames: usize,
    pub unreadable_frames: usize,
    pub track: Option<TrackFormat>,
    pub frames_with_gps: usize,
}

impl DriveContents {
    pub fn summary(&self) -> DriveSummary {
        DriveSummary {
            frames: self.frames.len(),
            unreadable_frames: self.frames.iter().filter(|f| f.meta.is_err()).count(),
            track: self.track.as_ref().map(|t| t.0),
            frames_with_gps: self
                .frames
                .iter()
                .filter(|f| f.meta.as_ref().is_ok_and(|m| m.gps.is_some()))
                .count(),
        }
    }
}

fn over(code: &'static str, message: String, field: Option<String>) -> IngestError {
    IngestError::OverLimit {
        code,
        message,
        field,
    }
}

/// What `compressed` bytes may inflate to under `ratio`; small inputs get a floor of 64 KiB, so
/// a tiny but honest text track is never refused.
fn ratio_cap(compressed: u64, ratio: f64) -> u64 {
    ((compressed as f64 * ratio) as u64).max(64 * 1024)
}

fn is_frame(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".jpg") || n.ends_with(".jpeg")
}

fn track_format(name: &str) -> Option<TrackFormat> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".gpx") {
        Some(TrackFormat::Gpx)
    } else if n.ends_with(".nmea") || n.ends_with(".gps") || n.ends_with(".log") {
        Some(TrackFormat::Nmea)
    } else {
        None
    }
}

/// Opens a drive's zip and reads every frame's header, holding each limit. Frames that are not
/// readable JPEGs are kept with their error (the worker records why each was left out); a frame
/// that declares more pixels than allowed refuses the whole drive, as the issue's bombs do.
pub fn read_drive(zip: &[u8], limits: &DriveLimits) -> Result<DriveContents, IngestError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))
        .map_err(|e| IngestError::NotADrive(format!("not a readable zip: {e}")))?;
    if archive.len() > limits.max_entries {
        return Err(over(
            "too_many_entries",
            format!(
                "the zip has {} entries; at most {} are accepted",
                archive.len(),
                limits.max_entries
            ),
            None,
        ));
    }
    let mut frames = Vec::new();
    let mut track = None;
    let mut total = 0u64;
    // All entries together inflate to at most the ratio times the whole zip.
    let total_cap = limits
        .max_total_bytes
        .min(ratio_cap(zip.len() as u64, limits.max_ratio));
    let mut names: Vec<(usize, String)> = Vec::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| IngestError::NotADrive(format!("zip entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        names.push((i, entry.name().to_owned()));
    }
    names.sort_by(|a, b| a.1.cmp(&b.1));
    for (i, name) in names {
        let is_track = track_format(&name);
        if !is_frame(&name) && is_track.is_none() {
            continue; // manifests, thumbnails, OS litter: not read
        }
        let mut entry = archive
            .by_index(i)
            .map_err(|e| IngestError::NotADrive(format!("zip entry {name:?}: {e}")))?;
        let compressed = entry.compressed_size().max(1);
        let declared = entry.size();
        let ratio = declared as f64 / compressed as f64;
        if ratio > limits.max_ratio && declared > 1024 * 1024 {
            return Err(over(
                "compression_ratio",
                format!(
                    "{name:?} inflates {ratio:.0}× ({compressed} to {declared} bytes); at most \
                     {:.0}× is accepted",
                    limits.max_ratio
                ),
                Some(name),
            ));
        }
        // The declared size is the sender's word only: read at most one byte past what this
        // entry may inflate to (its compressed size times the ratio, and the entry limit).
        let cap = limits
            .max_entry_bytes
            .min(ratio_cap(compressed, limits.max_ratio));
        let mut bytes = Vec::with_capacity(declared.min(cap) as usize);
        (&mut entry)
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| IngestError::NotADrive(format!("zip entry {name:?}: {e}")))?;
        if bytes.len() as u64 > cap {
            return Err(if cap == limits.max_entry_bytes {
                IngestError::TooLarge {
                    what: format!("zip entry {name:?}"),
                    limit: limits.max_entry_bytes,
                }
            } else {
                over(
                    "compression_ratio",
                    format!(
                        "{name:?} inflates past {:.0}× its {compressed} compressed bytes",
                        limits.max_ratio
                    ),
                    Some(name),
                )
            });
        }
        total += bytes.len() as u64;
        if total > total_cap {
            return Err(over(
                "compression_ratio",
                format!(
                    "the drive's entries inflate past {total_cap} bytes from a {} byte zip",
                    zip.len()
                ),
                None,
            ));
        }
        if let Some(format) = is_track {
            if track.is_some() {
                return Err(IngestError::NotADrive(format!(
                    "more than one track file ({name:?} is the second); send one per drive"
                )));
            }
            track = Some((format, bytes));
            continue;
        }
        if frames.len() == limits.max_frames {
            return Err(over(
                "too_many_frames",
                format!("more than {} frames in one drive", limits.max_frames),
                None,
            ));
        }
        let meta = read_frame_meta(&bytes);
        if let Ok(m) = &meta
            && m.pixels() > limits.max_frame_pixels
        {
            return Err(over(
                "too_many_pixels",
                format!(
                    "{name:?} is {}×{} ({} pixels); at most {} are accepted",
                    m.width,
                    m.height,
                    m.pixels(),
                    limits.max_frame_pixels
                ),
                Some(name),
            ));
        }
        frames.push(DriveFrame {
            index: frames.len(),
            name,
            bytes,
            meta,
        });
    }
    if frames.is_empty() {
        return Err(IngestError::NotADrive(
            "the zip holds no JPEG frames (*.jpg, *.jpeg)".into(),
        ));
    }
    let contents = DriveContents { frames, track };
    let summary = contents.summary();
    if contents.track.is_none() && summary.frames_with_gps == 0 {
        return Err(IngestError::NotADrive(
            "no track: add a GPX or NMEA file to the zip, or send frames with EXIF GPS".into(),
        ));
    }
    Ok(contents)
}

/// Inflates a gzip body, at most `max_out` bytes and `max_ratio` times its size: a small body
/// that inflates past either is a decompression bomb and is refused before it is all inflated.
pub fn gunzip_bounded(body: &[u8], max_out: u64, max_ratio: u64) -> Result<Vec<u8>, IngestError> {
    let limit = max_out.min((body.len() as u64).saturating_mul(max_ratio).max(64 * 1024));
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::BadEncoding(format!("the gzip body is unreadable: {e}")))?;
    if out.len() as u64 > limit {
        return Err(IngestError::TooLarge {
            what: format!("the gzip body inflated ({} bytes compressed)", body.len()),
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            w.start_file(
                *name,
                SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// The smallest JPEG header that declares a size: SOI, SOF0 with width and height, EOI.
    fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
        j.extend_from_slice(&height.to_be_bytes());
        j.extend_from_slice(&width.to_be_bytes());
        j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    const GPX: &[u8] = br#"<gpx version="1.1"><trk><trkseg><trkpt lat="43.7" lon="7.4"><time>2026-11-01T00:00:00Z</time></trkpt></trkseg></trk></gpx>"#;

    #[test]
    fn frames_come_in_name_order_with_the_track_beside_them() {
        let zip = zip_of(
            &[
                ("b.jpg", &jpeg_header(64, 32)),
                ("track.gpx", GPX),
                ("a.JPG", &jpeg_header(32, 16)),
                ("notes.txt", b"ignored"),
            ],
            zip::CompressionMethod::Deflated,
        );
        let d = read_drive(&zip, &DriveLimits::default()).unwrap();
        let names: Vec<_> = d.frames.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.JPG", "b.jpg"]);
        assert_eq!(d.frames[1].meta.as_ref().unwrap().width, 64);
        assert_eq!(d.track.as_ref().unwrap().0, TrackFormat::Gpx);
    }

    #[test]
    fn a_frame_declaring_a_huge_size_refuses_the_drive() {
        let zip = zip_of(
            &[("bomb.jpg", &jpeg_header(60_000, 60_000)), ("t.gpx", GPX)],
            zip::CompressionMethod::Stored,
        );
        let err = read_drive(&zip, &DriveLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                IngestError::OverLimit {
                    code: "too_many_pixels",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_zip_bomb_is_refused_by_its_ratio_and_by_what_it_really_inflates_to() {
        let zeros = vec![0u8; 20 * 1024 * 1024];
        let zip = zip_of(
            &[("a.jpg", &jpeg_header(8, 8)), ("t.gpx", &zeros)],
            zip::CompressionMethod::Deflated,
        );
        let err = read_drive(&zip, &DriveLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                IngestError::OverLimit {
                    code: "compression_ratio",
                    ..
                }
            ),
            "{err}"
        );
        let small = DriveLimits {
            max_entry_bytes: 1024,
            max_ratio: 1e9,
            ..DriveLimits::default()
        };
        assert!(matches!(
            read_drive(&zip, &small).unwrap_err(),
            IngestError::TooLarge { .. }
        ));
    }

    #[test]
    fn many_small_entries_cannot_inflate_past_the_ratio() {
        // Each entry stays under the 1 MiB that the declared-size check looks at, and would
        // inflate 900 KiB from ~1 KiB: caught by what is really read, entry by entry.
        let zeros = vec![0u8; 900 * 1024];
        let names: Vec<String> = (0..30).map(|i| format!("{i:02}.jpg")).collect();
        let mut entries: Vec<(&str, &[u8])> =
            names.iter().map(|n| (n.as_str(), &zeros[..])).collect();
        entries.push(("t.gpx", GPX));
        let zip = zip_of(&entries, zip::CompressionMethod::Deflated);
        assert!(zip.len() < 100 * 1024, "{}", zip.len());
        let err = read_drive(&zip, &DriveLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                IngestError::OverLimit {
                    code: "compression_ratio",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn entries_frames_and_tracks_are_counted() {
        let f = jpeg_header(8, 8);
        let many: Vec<(String, &[u8])> = (0..5).map(|i| (format!("{i}.jpg"), &f[..])).collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let mut with_track = refs.clone();
        with_track.push(("t.gpx", GPX));
        let zip = zip_of(&with_track, zip::CompressionMethod::Stored);
        let limits = DriveLimits {
            max_frames: 4,
            ..DriveLimits::default()
        };
        assert!(matches!(
            read_drive(&zip, &limits).unwrap_err(),
            IngestError::OverLimit {
                code: "too_many_frames",
                ..
            }
        ));
        let limits = DriveLimits {
            max_entries: 3,
            ..DriveLimits::default()
        };
        assert!(matches!(
            read_drive(&zip, &limits).unwrap_err(),
            IngestError::OverLimit {
                code: "too_many_entries",
                ..
            }
        ));
        // No track and no EXIF GPS in the frames: nothing to place them with.
        let zip = zip_of(&refs, zip::CompressionMethod::Stored);
        assert!(matches!(
            read_drive(&zip, &DriveLimits::default()).unwrap_err(),
            IngestError::NotADrive(_)
        ));
        assert!(matches!(
            read_drive(b"PK not a zip", &DriveLimits::default()).unwrap_err(),
            IngestError::NotADrive(_)
        ));
    }

    #[test]
    fn gzip_bodies_inflate_within_their_bounds() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&vec![b'a'; 10 * 1024 * 1024]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        let err = gunzip_bounded(&bomb, 64 * 1024 * 1024, 100).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"items\": []}").unwrap();
        let ok = gz.finish().unwrap();
        assert_eq!(gunzip_bounded(&ok, 1024, 100).unwrap(), b"{\"items\": []}");
        assert!(matches!(
            gunzip_bounded(b"not gzip", 1024, 100).unwrap_err(),
            IngestError::BadEncoding(_)
        ));
    }
}
