//! PMTiles v3 archives: a whole tile pyramid in one file that static hosting can serve by
//! HTTP range requests.
//!
//! Owns the archive layout (header, gzip'd directories with leaves when the root would not fit,
//! metadata, deduplicated and clustered tile data) and the Hilbert tile ids. The tiles' bytes
//! come from [`crate::mvt`]; the metadata JSON (vector_layers and the like) from the caller.
//!
//! Spec: <https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md>.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::tile::{MAX_ZOOM, TileId};

const HEADER_LEN: usize = 127;
/// The spec wants header and root directory within the first 16 KiB, so that one request
/// fetches both.
const ROOT_BUDGET: usize = 16_384;
/// Entries per leaf directory to start from; doubled until the root fits.
const FIRST_LEAF_SIZE: usize = 4096;

const COMPRESSION_GZIP: u8 = 2;
const TILE_TYPE_MVT: u8 = 1;

/// A PMTiles archive being put together: tiles go in with [`Archive::add`] in any order, and
/// [`Archive::write`] lays them out.
#[derive(Debug, Clone)]
pub struct Archive {
    metadata: serde_json::Value,
    /// Tile id → (tile, index into `contents`).
    tiles: BTreeMap<u64, (TileId, usize)>,
    /// Gzip'd tile bytes, each distinct tile once.
    contents: Vec<Vec<u8>>,
    /// SHA-256 of a tile's uncompressed bytes → its index in `contents`.
    by_hash: HashMap<[u8; 32], usize>,
}

/// What [`Archive::write`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveSummary {
    /// Tiles addressed by the archive.
    pub tiles: u64,
    /// Distinct tile contents stored.
    pub unique_tiles: u64,
    /// Size of the whole archive.
    pub bytes: u64,
    pub min_zoom: u8,
    pub max_zoom: u8,
}

/// One directory entry: `run_length` tiles from `tile_id` on with the same bytes at `offset`;
/// a run length of 0 points to a leaf directory instead.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    tile_id: u64,
    offset: u64,
    length: u64,
    run_length: u32,
}

impl Archive {
    /// An empty archive whose metadata section will hold `metadata` (the JSON object with
    /// `vector_layers` and the like).
    pub fn new(metadata: serde_json::Value) -> Self {
        Self {
            metadata,
            tiles: BTreeMap::new(),
            contents: Vec::new(),
            by_hash: HashMap::new(),
        }
    }

    /// Adds one tile's MVT bytes, uncompressed (they are stored gzip'd). An empty tile is not
    /// stored, and takes out any tile added before at the same place; adding a tile twice
    /// keeps the later bytes. Fails for a tile off the grid, or if compression fails.
    pub fn add(&mut self, tile: TileId, mvt: &[u8]) -> io::Result<()> {
        let tile = TileId::new(tile.z, tile.x, tile.y)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let id = tile_id(tile);
        if mvt.is_empty() {
            self.tiles.remove(&id);
            return Ok(());
        }
        let hash: [u8; 32] = Sha256::digest(mvt).into();
        let content = match self.by_hash.get(&hash) {
            Some(&c) => c,
            None => {
                let c = self.contents.len();
                self.contents.push(gzip(mvt)?);
                self.by_hash.insert(hash, c);
                c
            }
        };
        self.tiles.insert(id, (tile, content));
        Ok(())
    }

    /// Writes the archive: header, root directory, metadata, leaf directories (only when the
    /// root would not fit in the first 16 KiB), then the tile data in tile-id order with each
    /// distinct content once. Runs of consecutive tiles with the same content take one
    /// directory entry. Header bounds are the union of the tiles' bounds; the centre is the
    /// middle of those bounds at the lowest zoom.
    pub fn write(self, out: &mut impl Write) -> io::Result<ArchiveSummary> {
        let Self {
            metadata,
            tiles,
            contents,
            ..
        } = self;

        // Tile data clustered: each content placed where the first tile using it comes.
        let mut placed: Vec<Option<u64>> = vec![None; contents.len()];
        let mut data_order: Vec<&[u8]> = Vec::new();
        let mut data_len = 0u64;
        let mut entries: Vec<Entry> = Vec::new();
        let mut extent = Extent::default();
        for (&id, &(tile, content)) in &tiles {
            extent.include(tile);
            let (Some(bytes), Some(slot)) = (contents.get(content), placed.get_mut(content)) else {
                continue;
            };
            let length = bytes.len() as u64;
            let offset = match *slot {
                Some(offset) => offset,
                None => {
                    let offset = data_len;
                    *slot = Some(offset);
                    data_order.push(bytes);
                    data_len += length;
                    offset
                }
            };
            if let Some(last) = entries.last_mut()
                && last.offset == offset
                && last.tile_id + u64::from(last.run_length) == id
                && last.run_length < u32::MAX
            {
                last.run_length += 1;
                continue;
            }
            entries.push(Entry {
                tile_id: id,
                offset,
                length,
                run_length: 1,
            });
        }

        let (root, leaves) = directories(&entries)?;
        let metadata = gzip(&serde_json::to_vec(&metadata).map_err(io::Error::other)?)?;

        let root_offset = HEADER_LEN as u64;
        let metadata_offset = root_offset + root.len() as u64;
        let leaves_offset = metadata_offset + metadata.len() as u64;
        let data_offset = leaves_offset + leaves.len() as u64;
        let summary = ArchiveSummary {
            tiles: tiles.len() as u64,
            unique_tiles: data_order.len() as u64,
            bytes: data_offset + data_len,
            min_zoom: extent.min_zoom,
            max_zoom: extent.max_zoom,
        };

        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(b"PMTiles");
        header.push(3);
        for v in [
            root_offset,
            root.len() as u64,
            metadata_offset,
            metadata.len() as u64,
            leaves_offset,
            leaves.len() as u64,
            data_offset,
            data_len,
            summary.tiles,
            entries.len() as u64,
            summary.unique_tiles,
        ] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.extend_from_slice(&[
            1, // clustered
            COMPRESSION_GZIP,
            COMPRESSION_GZIP,
            TILE_TYPE_MVT,
            extent.min_zoom,
            extent.max_zoom,
        ]);
        let [west, south, east, north] = extent.bounds();
        for v in [west, south, east, north] {
            header.extend_from_slice(&e7(v).to_le_bytes());
        }
        header.push(extent.min_zoom);
        header.extend_from_slice(&e7((west + east) / 2.0).to_le_bytes());
        header.extend_from_slice(&e7((south + north) / 2.0).to_le_bytes());

        out.write_all(&header)?;
        out.write_all(&root)?;
        out.write_all(&metadata)?;
        out.write_all(&leaves)?;
        for bytes in data_order {
            out.write_all(bytes)?;
        }
        Ok(summary)
    }
}

/// Zooms and bounds of the tiles written.
#[derive(Debug, Default)]
struct Extent {
    min_zoom: u8,
    max_zoom: u8,
    /// West, south, east, north; `None` until a tile is seen.
    bounds: Option<[f64; 4]>,
}

impl Extent {
    fn include(&mut self, tile: TileId) {
        let [w, s, e, n] = tile.bounds();
        self.bounds = Some(match self.bounds {
            None => {
                (self.min_zoom, self.max_zoom) = (tile.z, tile.z);
                [w, s, e, n]
            }
            Some([w0, s0, e0, n0]) => {
                self.min_zoom = self.min_zoom.min(tile.z);
                self.max_zoom = self.max_zoom.max(tile.z);
                [w0.min(w), s0.min(s), e0.max(e), n0.max(n)]
            }
        });
    }

    fn bounds(&self) -> [f64; 4] {
        self.bounds.unwrap_or([0.0; 4])
    }
}

/// Degrees as the header's fixed-point integers.
fn e7(degrees: f64) -> i32 {
    (degrees * 1e7).round() as i32
}

/// The root directory and the leaf directories (empty when everything fits in the root), both
/// gzip'd.
fn directories(entries: &[Entry]) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let root = directory(entries)?;
    if HEADER_LEN + root.len() <= ROOT_BUDGET {
        return Ok((root, Vec::new()));
    }
    let mut leaf_size = FIRST_LEAF_SIZE;
    loop {
        let mut leaves = Vec::new();
        let mut root_entries = Vec::with_capacity(entries.len() / leaf_size + 1);
        for chunk in entries.chunks(leaf_size) {
            let Some(first) = chunk.first() else { continue };
            let leaf = directory(chunk)?;
            root_entries.push(Entry {
                tile_id: first.tile_id,
                offset: leaves.len() as u64,
                length: leaf.len() as u64,
                run_length: 0,
            });
            leaves.extend_from_slice(&leaf);
        }
        let root = directory(&root_entries)?;
        if HEADER_LEN + root.len() <= ROOT_BUDGET || root_entries.len() <= 1 {
            return Ok((root, leaves));
        }
        leaf_size *= 2;
    }
}

/// One directory, serialized column by column as the spec lays it out, then gzip'd.
fn directory(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(entries.len() * 8 + 8);
    put_varint(&mut raw, entries.len() as u64);
    let mut last_id = 0;
    for e in entries {
        put_varint(&mut raw, e.tile_id - last_id);
        last_id = e.tile_id;
    }
    for e in entries {
        put_varint(&mut raw, u64::from(e.run_length));
    }
    for e in entries {
        put_varint(&mut raw, e.length);
    }
    let mut next_offset = None;
    for e in entries {
        // 0 means "right after the previous entry's bytes"; otherwise offset + 1.
        if next_offset == Some(e.offset) {
            put_varint(&mut raw, 0);
        } else {
            put_varint(&mut raw, e.offset + 1);
        }
        next_offset = Some(e.offset + e.length);
    }
    gzip(&raw)
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2 + 32),
        Compression::default(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The PMTiles tile id of a tile: all tiles of the zooms above it come first, then the tile's
/// place along the Hilbert curve through its zoom.
pub fn tile_id(tile: TileId) -> u64 {
    let z = u32::from(tile.z.min(31));
    let tiles_above = (1u64.wrapping_shl(2 * z) - 1) / 3;
    tiles_above + hilbert_index(z, tile.x, tile.y)
}

/// The tile with PMTiles tile id `id`, if it is at a zoom up to [`MAX_ZOOM`].
pub fn tile_of(id: u64) -> Option<TileId> {
    let mut tiles_above = 0u64;
    for z in 0..=MAX_ZOOM {
        let at_zoom = 1u64 << (2 * u32::from(z));
        if id - tiles_above < at_zoom {
            let (x, y) = hilbert_point(u32::from(z), id - tiles_above);
            return Some(TileId { z, x, y });
        }
        tiles_above += at_zoom;
    }
    None
}

/// Place of (x, y) along the Hilbert curve filling a 2^z square. Coordinates are taken modulo
/// 2^z, so a hand-built `TileId` off the grid gets some id rather than a panic.
fn hilbert_index(z: u32, x: u32, y: u32) -> u64 {
    let n = 1u64 << z;
    let (mut x, mut y) = (u64::from(x) & (n - 1), u64::from(y) & (n - 1));
    let mut d = 0;
    let mut s = n / 2;
    while s > 0 {
        let rx = u64::from(x & s > 0);
        let ry = u64::from(y & s > 0);
        d += s * s * ((3 * rx) ^ ry);
        rotate(n, &mut x, &mut y, rx, ry);
        s /= 2;
    }
    d
}

/// The point at place `d` along the Hilbert curve filling a 2^z square.
fn hilbert_point(z: u32, d: u64) -> (u32, u32) {
    let n = 1u64 << z;
    let (mut x, mut y, mut t) = (0u64, 0u64, d);
    let mut s = 1;
    while s < n {
        let rx = 1 & (t / 2);
        let ry = 1 & (t ^ rx);
        rotate(s, &mut x, &mut y, rx, ry);
        x += s * rx;
        y += s * ry;
        t /= 4;
        s *= 2;
    }
    (x as u32, y as u32)
}

fn rotate(n: u64, x: &mut u64, y: &mut u64, rx: u64, ry: u64) {
    if ry == 0 {
        if rx == 1 {
            *x = n - 1 - *x;
            *y = n - 1 - *y;
        }
        std::mem::swap(x, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn t(z: u8, x: u32, y: u32) -> TileId {
        TileId::new(z, x, y).unwrap()
    }

    #[test]
    fn tile_ids_of_the_spec_and_reference_implementation() {
        assert_eq!(tile_id(t(0, 0, 0)), 0);
        assert_eq!(tile_id(t(1, 0, 0)), 1);
        assert_eq!(tile_id(t(1, 0, 1)), 2);
        assert_eq!(tile_id(t(1, 1, 1)), 3);
        assert_eq!(tile_id(t(1, 1, 0)), 4);
        assert_eq!(tile_id(t(2, 0, 0)), 5);
        assert_eq!(tile_id(t(2, 1, 3)), 11);
        assert_eq!(tile_id(t(3, 3, 0)), 26);
        assert_eq!(tile_id(t(20, 0, 0)), 366_503_875_925);
        assert_eq!(tile_id(t(21, 0, 0)), 1_466_015_503_701);
        assert_eq!(tile_id(t(22, 0, 0)), 5_864_062_014_805);
    }

    #[test]
    fn tile_of_reverses_known_ids() {
        assert_eq!(tile_of(0), Some(t(0, 0, 0)));
        assert_eq!(tile_of(4), Some(t(1, 1, 0)));
        assert_eq!(tile_of(11), Some(t(2, 1, 3)));
        assert_eq!(tile_of(5_864_062_014_805), Some(t(22, 0, 0)));
        // Past the last tile of zoom 22.
        assert_eq!(tile_of(5_864_062_014_805 + (1u64 << 44)), None);
        assert_eq!(tile_of(u64::MAX), None);
    }

    #[test]
    fn every_id_of_a_zoom_is_one_tile() {
        for z in 0..=5u8 {
            let n = 1u32 << z;
            let mut ids: Vec<u64> = (0..n)
                .flat_map(|x| (0..n).map(move |y| tile_id(t(z, x, y))))
                .collect();
            ids.sort_unstable();
            let first = tile_id(t(z, 0, 0));
            let expected: Vec<u64> = (first..first + u64::from(n) * u64::from(n)).collect();
            assert_eq!(ids, expected, "zoom {z}");
        }
    }

    proptest! {
        #[test]
        fn tile_id_and_tile_of_round_trip(z in 0u8..=MAX_ZOOM, fx in 0.0f64..1.0, fy in 0.0f64..1.0) {
            let n = f64::from(1u32 << z);
            let tile = t(z, (fx * n) as u32, (fy * n) as u32);
            prop_assert_eq!(tile_of(tile_id(tile)), Some(tile));
        }

        #[test]
        fn neighbours_on_the_curve_are_neighbours_on_the_map(z in 1u8..=MAX_ZOOM, f in 0.0f64..1.0) {
            let first = tile_id(t(z, 0, 0));
            let count = 1u64 << (2 * u32::from(z));
            let id = first + ((f * (count - 1) as f64) as u64).min(count - 2);
            let (a, b) = (tile_of(id).unwrap(), tile_of(id + 1).unwrap());
            prop_assert_eq!(a.x.abs_diff(b.x) + a.y.abs_diff(b.y), 1);
        }
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn read_varints(mut bytes: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = bytes[0];
                bytes = &bytes[1..];
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            out.push(v);
        }
        out
    }

    #[test]
    fn a_directory_is_written_column_by_column() {
        let entries = [
            Entry {
                tile_id: 5,
                offset: 0,
                length: 10,
                run_length: 1,
            },
            Entry {
                tile_id: 6,
                offset: 10,
                length: 20,
                run_length: 3,
            },
            Entry {
                tile_id: 20,
                offset: 0,
                length: 10,
                run_length: 1,
            },
        ];
        let raw = gunzip(&directory(&entries).unwrap());
        assert_eq!(
            read_varints(&raw),
            // count; id deltas; run lengths; lengths; offsets (0 = contiguous, else +1)
            vec![3, 5, 1, 14, 1, 3, 1, 10, 20, 10, 1, 0, 1]
        );
    }

    #[test]
    fn identical_tiles_are_stored_once_and_runs_share_an_entry() {
        let mut archive = Archive::new(serde_json::json!({"name": "test"}));
        // Tile ids 1..=4 are the four tiles of zoom 1; give them all the same bytes.
        for (x, y) in [(0, 0), (0, 1), (1, 1), (1, 0)] {
            archive.add(t(1, x, y), b"same").unwrap();
        }
        archive.add(t(0, 0, 0), b"world").unwrap();
        archive.add(t(2, 0, 0), b"same").unwrap();
        archive.add(t(2, 1, 1), b"").unwrap();
        let mut out = Vec::new();
        let summary = archive.write(&mut out).unwrap();
        assert_eq!(summary.tiles, 6);
        assert_eq!(summary.unique_tiles, 2);
        assert_eq!((summary.min_zoom, summary.max_zoom), (0, 2));
        assert_eq!(summary.bytes, out.len() as u64);
        assert_eq!(&out[..7], b"PMTiles");
        assert_eq!(out[7], 3);
        let field = |i: usize| u64::from_le_bytes(out[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        assert_eq!(field(8), 6, "addressed tiles");
        assert_eq!(field(9), 2, "entries: the world, then one run of five");
        assert_eq!(field(10), 2, "contents");
        assert_eq!(field(5), 0, "no leaf directories");
        let root = &out[field(0) as usize..(field(0) + field(1)) as usize];
        let (world, same) = (
            gzip(b"world").unwrap().len() as u64,
            gzip(b"same").unwrap().len() as u64,
        );
        assert_eq!(field(7), world + same, "tile data holds each content once");
        assert_eq!(
            read_varints(&gunzip(root)),
            // two entries; ids 0 and +1; runs 1 and 5; lengths; offsets 0 (+1) then contiguous
            vec![2, 0, 1, 1, 5, world, same, 1, 0]
        );
    }

    #[test]
    fn tiles_off_the_grid_are_refused() {
        let mut archive = Archive::new(serde_json::json!({}));
        let err = archive.add(TileId { z: 3, x: 8, y: 0 }, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn an_empty_archive_is_still_a_valid_header_and_root() {
        let mut out = Vec::new();
        let summary = Archive::new(serde_json::json!({})).write(&mut out).unwrap();
        assert_eq!((summary.tiles, summary.unique_tiles), (0, 0));
        assert_eq!(read_varints(&gunzip(&out[127..])), vec![0]);
    }
}
