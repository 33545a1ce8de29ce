//! Archives from `covermap_tiles::pmtiles`, read back by an independent reader (the `pmtiles`
//! crate): every tile, the header and the metadata come back as written, through leaf
//! directories too.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;

use covermap_tiles::mvt::{Layer, encode};
use covermap_tiles::pmtiles::{Archive, tile_id, tile_of};
use covermap_tiles::tile::TileId;
use pmtiles::{AsyncPmTilesReader, Compression, TileCoord, TileType};
use serde_json::json;

/// A small MVT of one line across the tile, told apart by `n`.
fn synthetic_mvt(tile: TileId, n: u64) -> Vec<u8> {
    let [w, s, e, nb] = tile.bounds();
    let mut layer = Layer::new("roads", tile);
    let wobble = (n % 97) as f64 / 97.0;
    let line = [
        (w, s + (nb - s) * wobble),
        (e, nb),
        (w + (e - w) * wobble, s),
    ];
    assert!(layer.add_line(Some(n), &line, &[("n", n.into())]));
    encode(&[layer])
}

/// xorshift64: reproducible scatter without another dependency.
fn scatter(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn header_u64(file: &[u8], field: usize) -> u64 {
    let at = 8 + 8 * field;
    u64::from_le_bytes(file[at..at + 8].try_into().expect("eight bytes"))
}

#[tokio::test]
async fn every_tile_header_field_and_the_metadata_come_back() {
    let metadata = json!({
        "name": "covermap",
        "format": "pbf",
        "vector_layers": [{"id": "roads", "fields": {"n": "Number"}, "minzoom": 0, "maxzoom": 12}],
    });
    let mut archive = Archive::new(metadata.clone());
    let mut expected: BTreeMap<TileId, Vec<u8>> = BTreeMap::new();
    fn put(
        archive: &mut Archive,
        expected: &mut BTreeMap<TileId, Vec<u8>>,
        tile: TileId,
        bytes: Vec<u8>,
    ) {
        archive.add(tile, &bytes).expect("added");
        expected.insert(tile, bytes);
    }

    put(
        &mut archive,
        &mut expected,
        TileId::new(0, 0, 0).unwrap(),
        synthetic_mvt(TileId::new(0, 0, 0).unwrap(), 0),
    );
    // Zoom 1: all four the same bytes (one content, one run).
    let shared = synthetic_mvt(TileId::new(1, 0, 0).unwrap(), 1);
    for (x, y) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        put(
            &mut archive,
            &mut expected,
            TileId::new(1, x, y).unwrap(),
            shared.clone(),
        );
    }
    // Zoom 12: 20 000 scattered tiles, one in eight a copy of the one before it (dedup
    // without runs), so the directory cannot fit in the root and needs leaves.
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut previous = Vec::new();
    let mut z12 = 0;
    while z12 < 20_000 {
        let r = scatter(&mut seed);
        let tile = TileId::new(12, (r & 0xfff) as u32, ((r >> 12) & 0xfff) as u32).unwrap();
        if expected.contains_key(&tile) {
            continue;
        }
        let bytes = if z12 % 8 == 7 {
            previous.clone()
        } else {
            synthetic_mvt(tile, r >> 40)
        };
        previous = bytes.clone();
        put(&mut archive, &mut expected, tile, bytes);
        z12 += 1;
    }
    // An empty tile is not stored.
    archive.add(TileId::new(2, 1, 1).unwrap(), &[]).unwrap();

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("covermap.pmtiles");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("created"));
    let summary = archive.write(&mut file).expect("written");
    drop(file);
    let raw = std::fs::read(&path).expect("read back");

    assert_eq!(summary.tiles, expected.len() as u64);
    assert_eq!(summary.bytes, raw.len() as u64);
    assert_eq!((summary.min_zoom, summary.max_zoom), (0, 12));
    let distinct: std::collections::HashSet<&Vec<u8>> = expected.values().collect();
    assert_eq!(summary.unique_tiles, distinct.len() as u64);
    // Header fields by the spec's byte layout: root within the first 16 KiB, leaves present.
    assert_eq!(header_u64(&raw, 0), 127, "root right after the header");
    assert!(
        127 + header_u64(&raw, 1) <= 16_384,
        "root fits the first 16 KiB"
    );
    assert!(header_u64(&raw, 5) > 0, "leaf directories were needed");

    let reader = AsyncPmTilesReader::new_with_path(&path)
        .await
        .expect("an archive the reference reader opens");
    let header = reader.get_header();
    assert_eq!(header.tile_type, TileType::Mvt);
    assert_eq!(header.tile_compression, Compression::Gzip);
    assert_eq!(header.internal_compression(), Compression::Gzip);
    assert!(header.clustered());
    assert_eq!((header.min_zoom, header.max_zoom), (0, 12));
    assert_eq!(header.center_zoom, 0);
    assert_eq!(
        header.n_addressed_tiles().map(u64::from),
        Some(expected.len() as u64)
    );
    assert_eq!(
        header.n_tile_contents().map(u64::from),
        Some(summary.unique_tiles)
    );
    // Zoom 0 is there, so the bounds are the whole Mercator world.
    assert!((header.min_longitude + 180.0).abs() < 1e-6);
    assert!((header.max_longitude - 180.0).abs() < 1e-6);
    assert!((header.max_latitude - 85.051_128_8).abs() < 1e-6);
    assert!((header.min_latitude + 85.051_128_8).abs() < 1e-6);

    let read_metadata: serde_json::Value =
        serde_json::from_str(&reader.get_metadata().await.expect("metadata")).expect("JSON");
    assert_eq!(read_metadata, metadata);

    for (tile, bytes) in &expected {
        let coord = TileCoord::new(tile.z, tile.x, tile.y).expect("coord");
        // Our Hilbert ids agree with the reference implementation's.
        assert_eq!(
            tile_id(*tile),
            pmtiles::TileId::from(coord).value(),
            "{tile}"
        );
        assert_eq!(tile_of(tile_id(*tile)), Some(*tile));
        let got = reader
            .get_tile_decompressed(coord)
            .await
            .expect("readable")
            .unwrap_or_else(|| panic!("{tile} missing"));
        assert_eq!(got.as_ref(), bytes.as_slice(), "{tile}");
    }
    for (z, x, y) in [(2, 1, 1), (1, 0, 0), (12, 0, 0), (5, 3, 3)] {
        let tile = TileId::new(z, x, y).unwrap();
        if !expected.contains_key(&tile) {
            let coord = TileCoord::new(z, x, y).expect("coord");
            assert!(
                reader.get_tile(coord).await.expect("readable").is_none(),
                "{tile}"
            );
        }
    }
}

#[tokio::test]
async fn a_small_archive_keeps_everything_in_the_root_and_tight_bounds() {
    let mut archive = Archive::new(json!({"name": "monaco"}));
    let tiles = [
        TileId::new(14, 8529, 5974).unwrap(),
        TileId::new(14, 8530, 5974).unwrap(),
        TileId::new(13, 4264, 2987).unwrap(),
    ];
    for (i, tile) in tiles.iter().enumerate() {
        archive.add(*tile, &synthetic_mvt(*tile, i as u64)).unwrap();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("monaco.pmtiles");
    let mut out = Vec::new();
    let summary = archive.write(&mut out).expect("written");
    std::fs::write(&path, &out).expect("saved");
    assert_eq!((summary.tiles, summary.unique_tiles), (3, 3));
    assert_eq!(header_u64(&out, 5), 0, "no leaves for three tiles");

    let reader = AsyncPmTilesReader::new_with_path(&path)
        .await
        .expect("opens");
    let header = reader.get_header();
    assert_eq!((header.min_zoom, header.max_zoom), (13, 14));
    let [w, s, e, n] = tiles
        .iter()
        .fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |b, t| {
            let [w, s, e, n] = t.bounds();
            [b[0].min(w), b[1].min(s), b[2].max(e), b[3].max(n)]
        });
    for (got, want) in [
        (header.min_longitude, w),
        (header.min_latitude, s),
        (header.max_longitude, e),
        (header.max_latitude, n),
        (header.center_longitude, (w + e) / 2.0),
        (header.center_latitude, (s + n) / 2.0),
    ] {
        assert!((got - want).abs() < 1e-6, "{got} != {want}");
    }
    for tile in tiles {
        let coord = TileCoord::new(tile.z, tile.x, tile.y).expect("coord");
        let got = reader.get_tile_decompressed(coord).await.expect("readable");
        assert_eq!(
            got.as_deref(),
            Some(
                synthetic_mvt(tile, tiles.iter().position(|t| *t == tile).unwrap() as u64)
                    .as_slice()
            )
        );
    }
}
