//! Vector tiles over HTTP: `GET /tiles/{layer}.json` (TileJSON 3.0) and
//! `GET /tiles/{layer}/{z}/{x}/{y}` (Mapbox Vector Tiles, gzip when the client accepts it) for the
//! layers `coverage`, `radio`, `demand` and `roads`.
//!
//! `coverage` tiles are drawn from the map held in memory ([`covermap_tiles::index::MapIndex`]),
//! the other layers (and `coverage` while that map is first read) from the store
//! (`covermap_pipeline::maps::render`, also used by `covermap tiles export`). Drawn tiles are
//! kept in a [`TileCache`]. [`run_invalidator`] reads the store's change feed every second: it
//! reads the changed cells again into the map in memory, then drops every cached tile those
//! cells' hexagons — and their parents' at lower zooms — touch, so a new upload shows on the map
//! within seconds, on every server. Ages and reward weights drift with the clock alone, so a
//! cached tile also expires after [`TILE_TTL`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use covermap_domain::{BoundingBox, Cell};
use covermap_pipeline::governance::PolicyBook;
use covermap_scoring::RewardPolicy;
use covermap_store::Store;
use covermap_tiles::index::MapIndex;
use covermap_tiles::layers::{self, MapLayer};
use covermap_tiles::tile::{self, TileId};
use h3o::Resolution;
use serde_json::json;
use tokio::sync::watch;

use crate::{ApiError, AppState};

/// Highest zoom TileJSON advertises; clients overzoom past it.
pub const MAX_ZOOM: u8 = 16;
/// Lowest zoom rendered live: a tile below it spans a continent, a scan of whole tables (serve
/// those from `covermap tiles export` instead).
pub const MIN_ZOOM: u8 = 6;
/// Tiles rendered at once; more wait their turn (each holds a database connection).
const RENDERS_AT_ONCE: usize = 8;
/// A cached tile is rendered again after this long even if nothing under it changed.
pub const TILE_TTL: Duration = Duration::from_secs(60);
/// Most changed cells one look handles cell by cell; more drop the whole cache.
const CHANGE_LIMIT: i64 = 50_000;
/// How long the change feed keeps what changed (PostgreSQL prunes older rows); a process that
/// has not read it for half of this starts again from an empty cache.
const FEED_RETENTION: chrono::Duration = chrono::Duration::days(1);

/// The layer name and tile of a request, or why it is not one.
fn parse_tile(layer: &str, z: &str, x: &str, y: &str) -> Result<(MapLayer, TileId), ApiError> {
    let layer = MapLayer::parse(layer).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no tile layer {layer:?}; layers are coverage, radio, demand, roads"
        ))
    })?;
    let y = y
        .strip_suffix(".mvt")
        .or_else(|| y.strip_suffix(".pbf"))
        .unwrap_or(y);
    let num = |what: &str, v: &str| {
        v.parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                "invalid_tile",
                format!("{what} {v:?} is not a whole number"),
            )
        })
    };
    let z = u8::try_from(num("z", z)?)
        .map_err(|_| ApiError::bad_request("invalid_tile", "z is too large"))?;
    let tile = TileId::new(z, num("x", x)?, num("y", y)?)
        .map_err(|e| ApiError::bad_request("invalid_tile", e.to_string()))?;
    if z < MIN_ZOOM {
        return Err(ApiError::NotFound(format!(
            "tiles below zoom {MIN_ZOOM} are not rendered live; `covermap tiles export` writes them"
        )));
    }
    Ok((layer, tile))
}

/// A rendered tile, raw and (once a client asks for it) gzipped, with its entity tag.
#[derive(Debug)]
struct CachedTile {
    raw: Bytes,
    gzip: OnceLock<Bytes>,
    etag: HeaderValue,
    made: Instant,
}

impl CachedTile {
    /// What it takes of the cache's byte budget (its gzip counted at about half the raw size).
    fn cost(&self) -> usize {
        self.raw.len() + self.raw.len() / 2 + 64
    }

    /// The gzipped body, made the first time it is asked for; empty if it could not be made.
    fn gzipped(&self) -> &Bytes {
        self.gzip
            .get_or_init(|| gzip(&self.raw).map(Bytes::from).unwrap_or_default())
    }
}

/// The cache's contents, under one lock.
#[derive(Debug, Default)]
struct Shelf {
    tiles: HashMap<(MapLayer, TileId), Arc<CachedTile>>,
    bytes: usize,
    /// Bumped by every drop: a tile rendered across one is not cached (it may be stale).
    generation: u64,
}

/// Rendered tiles by layer and tile, up to a byte budget (none kept with a budget of 0), and
/// the coverage map in memory they are drawn from.
#[derive(Debug)]
pub struct TileCache {
    shelf: Mutex<Shelf>,
    max_bytes: usize,
    renders: tokio::sync::Semaphore,
    /// The coverage map in memory; `None` until it has been read from the store.
    index: RwLock<Option<MapIndex>>,
}

impl TileCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            shelf: Mutex::new(Shelf::default()),
            max_bytes,
            renders: tokio::sync::Semaphore::new(RENDERS_AT_ONCE),
            index: RwLock::new(None),
        }
    }

    /// The `coverage` tile drawn from the map in memory (uncompressed MVT, empty when nothing
    /// is under it); `None` while that map is not read yet.
    pub fn coverage_from_memory(
        &self,
        tile: TileId,
        now: chrono::DateTime<Utc>,
        policy: &RewardPolicy,
    ) -> Option<Vec<u8>> {
        let index = self.index.read().ok()?;
        let layer = index.as_ref()?.coverage(tile, now, policy)?;
        Some(covermap_tiles::mvt::encode(&[layer]))
    }

    fn set_index(&self, index: Option<MapIndex>) {
        if let Ok(mut held) = self.index.write() {
            *held = index;
        }
    }

    /// Applies to the map in memory what the store now says of `asked` (see
    /// [`MapIndex::apply`]).
    fn apply(&self, asked: &[Cell], found: &[covermap_domain::MapCellState]) {
        if let Ok(mut held) = self.index.write()
            && let Some(index) = held.as_mut()
        {
            index.apply(asked, found);
        }
    }

    /// Stored cells whose road driven has changed by the clock by `now`.
    fn due(&self, now: chrono::DateTime<Utc>) -> Vec<Cell> {
        self.index
            .read()
            .ok()
            .and_then(|i| i.as_ref().map(|i| i.due(now)))
            .unwrap_or_default()
    }

    fn get(&self, key: (MapLayer, TileId)) -> Option<Arc<CachedTile>> {
        let shelf = self.shelf.lock().ok()?;
        shelf
            .tiles
            .get(&key)
            .filter(|t| t.made.elapsed() < TILE_TTL)
            .cloned()
    }

    /// The generation a render starts from, to hand back to [`Self::put`].
    fn generation(&self) -> u64 {
        self.shelf.lock().map_or(0, |s| s.generation)
    }

    /// Keeps `tile`, rendered from what the store held at `generation`, unless something was
    /// dropped since (then it may already be stale).
    fn put(&self, key: (MapLayer, TileId), tile: Arc<CachedTile>, generation: u64) {
        let Ok(mut shelf) = self.shelf.lock() else {
            return;
        };
        if shelf.generation != generation || self.max_bytes == 0 {
            return;
        }
        let size = tile.cost();
        if shelf.bytes + size > self.max_bytes {
            // Full: start over rather than track recency; a cold tile costs a few milliseconds.
            shelf.tiles.clear();
            shelf.bytes = 0;
        }
        if let Some(old) = shelf.tiles.insert(key, tile) {
            shelf.bytes = shelf.bytes.saturating_sub(old.cost());
        }
        shelf.bytes += size;
    }

    /// How many tiles are cached.
    pub fn len(&self) -> usize {
        self.shelf.lock().map_or(0, |s| s.tiles.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached tile of `layer`.
    pub fn drop_layer(&self, layer: MapLayer) {
        self.retain(|(l, _)| *l != layer);
    }

    /// Drops every cached tile.
    pub fn clear(&self) {
        self.retain(|_| false);
    }

    fn retain(&self, keep: impl Fn(&(MapLayer, TileId)) -> bool) {
        let Ok(mut shelf) = self.shelf.lock() else {
            return;
        };
        let Shelf {
            tiles,
            bytes,
            generation,
        } = &mut *shelf;
        *generation += 1;
        tiles.retain(|k, t| {
            let kept = keep(k);
            if !kept {
                *bytes = bytes.saturating_sub(t.cost());
            }
            kept
        });
    }

    /// Drops every cached tile, of every layer, that the hexagon of one of `cells` — or of its
    /// parent at the resolution a zoom draws — reaches into (buffer included).
    pub fn drop_cells(&self, cells: &[Cell], finest: Resolution) {
        if cells.is_empty() {
            return;
        }
        let zooms: HashSet<u8> = match self.shelf.lock() {
            Ok(s) => s.tiles.keys().map(|(_, t)| t.z).collect(),
            Err(_) => return,
        };
        let cells: HashSet<Cell> = cells.iter().copied().collect();
        let mut stale: HashSet<TileId> = HashSet::new();
        let mut whole_zooms: HashSet<u8> = HashSet::new();
        for z in zooms {
            let res = tile::resolution_for_zoom(z, finest);
            let parents: HashSet<Cell> = cells.iter().map(|c| layers::parent(*c, res)).collect();
            for p in parents {
                let b = layers::cell_bounds(p);
                if b[2] - b[0] > 180.0 {
                    // A hexagon across the antimeridian: drop the whole zoom.
                    whole_zooms.insert(z);
                    continue;
                }
                stale.extend(tile::tiles_drawing(b, z));
            }
        }
        self.retain(|(_, t)| !stale.contains(t) && !whole_zooms.contains(&t.z));
    }
}

/// Every `every` until `shutdown`: reads again into the map in memory, then drops from the
/// cache, the cells the store's change feed reports changed since the last look (every process
/// reads the same feed, so each drops the same tiles, whichever process made the change), and
/// the cells whose road driven changed with the clock. More changed than is worth sorting out,
/// a new coverage window in the policy, or a process that fell behind the feed's retention: the
/// whole map is read again and every tile dropped.
pub async fn run_invalidator(
    cache: Arc<TileCache>,
    store: Arc<dyn Store>,
    policy: PolicyBook,
    finest: Resolution,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut position = None;
    let mut window = policy.now().coverage_window();
    let mut read_at = Utc::now();
    let mut pruned_at = Utc::now() - FEED_RETENTION;
    loop {
        let Some(since) = position.clone() else {
            // Where the feed stands first, then the whole map: a change in between is read
            // twice, none is missed.
            window = policy.now().coverage_window();
            match reload(&cache, store.as_ref(), finest, window).await {
                Ok(p) => {
                    position = Some(p);
                    read_at = Utc::now();
                }
                Err(e) => tracing::warn!(error = %e, "tile cache: cannot read the map"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now = Utc::now();
        if now - read_at > FEED_RETENTION / 2 || policy.now().coverage_window() != window {
            // Asleep for longer than the feed is sure to keep, or driven road is now counted
            // over another window: read everything again.
            position = None;
            continue;
        }
        match store.changes_since(&since, CHANGE_LIMIT).await {
            Ok(changes) if changes.truncated => position = None,
            Ok(changes) => {
                let mut cells = changes.cells;
                cells.extend(cache.due(now));
                if let Err(e) = refresh(&cache, store.as_ref(), finest, window, cells).await {
                    // Nothing dropped and the place kept: the same changes are read again.
                    tracing::warn!(error = %e, "tile cache: cannot read changed cells");
                    continue;
                }
                position = Some(changes.position);
                read_at = now;
            }
            Err(e) => tracing::warn!(error = %e, "tile cache: cannot read the change feed"),
        }
        if now - pruned_at > chrono::Duration::hours(1) {
            pruned_at = now;
            if let Err(e) = store.prune_feed(now - FEED_RETENTION).await {
                tracing::warn!(error = %e, "tile cache: cannot prune the change feed");
            }
        }
    }
}

/// Drops every cached tile and reads the whole coverage map into memory; answers the feed's
/// position it was read after.
async fn reload(
    cache: &Arc<TileCache>,
    store: &dyn Store,
    finest: Resolution,
    window: chrono::Duration,
) -> Result<covermap_store::FeedPosition, covermap_store::StoreError> {
    let position = store.feed_position().await?;
    // Whatever was cached before this place may be stale; what is drawn from here on (from the
    // store until the map is read) is dropped by the changes read from this place on.
    cache.clear();
    let started = Instant::now();
    let states = store.map_cells(None, Utc::now(), window).await?;
    let read = states.len();
    // Every cell's hexagon and every parent: seconds for millions, off the async workers.
    let index = tokio::task::spawn_blocking(move || MapIndex::of(finest, MIN_ZOOM, &states))
        .await
        .map_err(|e| covermap_store::StoreError::Corrupt(format!("building the map: {e}")))?;
    let held = index.cells_held();
    cache.set_index(Some(index));
    tracing::info!(
        cells = read,
        held,
        ms = started.elapsed().as_millis() as u64,
        "tile cache: coverage map read into memory"
    );
    Ok(position)
}

/// Reads `cells` again into the map in memory, then drops the cached tiles over them.
async fn refresh(
    cache: &Arc<TileCache>,
    store: &dyn Store,
    finest: Resolution,
    window: chrono::Duration,
    mut cells: Vec<Cell>,
) -> Result<(), covermap_store::StoreError> {
    if cells.is_empty() {
        return Ok(());
    }
    cells.sort_unstable();
    cells.dedup();
    let found = store.map_cells(Some(&cells), Utc::now(), window).await?;
    let shelf = cache.clone();
    // Thousands of cells times every cached zoom: off the async workers. The map first, then
    // the tiles: a tile drawn in between is drawn from the new map.
    let dropped = tokio::task::spawn_blocking(move || {
        shelf.apply(&cells, &found);
        shelf.drop_cells(&cells, finest);
    })
    .await;
    if let Err(e) = dropped {
        tracing::warn!(error = %e, "tile cache: dropping changed cells failed");
        cache.clear();
    }
    Ok(())
}

/// A tile's entity tag: two independent checksums of its bytes (CRC-32 and a 64-bit
/// multiplicative hash) and its length, 104 bits in all. It names a version of a tile for
/// `If-None-Match`, it authenticates nothing, and it costs a few microseconds where a SHA-256
/// of a 300 kB tile costs 200.
fn entity_tag(raw: &[u8]) -> String {
    use std::hash::Hasher;
    let mut fx = rustc_hash::FxHasher::default();
    fx.write(raw);
    format!(
        "\"{:08x}{:016x}{:x}\"",
        crc32fast::hash(raw),
        fx.finish(),
        raw.len()
    )
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn gzip(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 2 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(raw)?;
    enc.finish()
}

/// `GET /tiles/{layer}/{z}/{x}/{y}`: the tile, from the cache when it holds it.
pub(crate) async fn tile(
    State(state): State<AppState>,
    Path((layer, z, x, y)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (layer, tile) = parse_tile(&layer, &z, &x, &y)?;
    let now = Utc::now();
    let key = (layer, tile);
    let (cached, hit) = match state.tiles.get(key) {
        Some(t) => (t, true),
        None => {
            let generation = state.tiles.generation();
            let policy = state.policy.now();
            let from_memory = match layer {
                MapLayer::Coverage => state.tiles.coverage_from_memory(tile, now, &policy),
                _ => None,
            };
            let raw = match from_memory {
                Some(raw) => raw,
                None => {
                    let _permit = state.tiles.renders.acquire().await.ok();
                    covermap_pipeline::maps::render(
                        state.store.as_ref(),
                        &policy,
                        state.resolution,
                        layer,
                        tile,
                        now,
                    )
                    .await?
                }
            };
            let etag = HeaderValue::from_str(&entity_tag(&raw))
                .unwrap_or(HeaderValue::from_static("\"\""));
            let t = Arc::new(CachedTile {
                raw: Bytes::from(raw),
                gzip: OnceLock::new(),
                etag,
                made: Instant::now(),
            });
            state.tiles.put(key, t.clone(), generation);
            (t, false)
        }
    };
    metrics::counter!("covermap_tiles_total", "layer" => layer.name(), "cache" => if hit { "hit" } else { "miss" })
        .increment(1);
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=5"),
        ),
        (header::VARY, HeaderValue::from_static("Accept-Encoding")),
        (
            header::HeaderName::from_static("x-tile-cache"),
            HeaderValue::from_static(if hit { "hit" } else { "miss" }),
        ),
    ];
    // Writing into memory does not fail; were it to, clients get the raw tile.
    let gzip = accepts_gzip(&headers) && !cached.raw.is_empty() && !cached.gzipped().is_empty();
    // The gzip and raw bodies are different representations: different tags.
    let etag = if gzip {
        let tag = cached.etag.to_str().unwrap_or("\"\"").trim_end_matches('"');
        HeaderValue::from_str(&format!("{tag}-gz\"")).unwrap_or(cached.etag.clone())
    } else {
        cached.etag.clone()
    };
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t.as_bytes() == etag.as_bytes());
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, common, [(header::ETAG, etag)]).into_response());
    }
    // Map consumers looking at an area count towards its demand: coverage tiles fetched at
    // street zooms, not revalidations or the other layers.
    if layer == MapLayer::Coverage && tile.z >= 10 {
        state.usage.look(
            &state.policy.now(),
            &covermap_pipeline::maps::bbox_of(tile.bounds()),
            now,
        );
    }
    if cached.raw.is_empty() {
        return Ok((StatusCode::NO_CONTENT, common, [(header::ETAG, etag)]).into_response());
    }
    let ct = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.mapbox-vector-tile"),
    );
    let tag = (header::ETAG, etag);
    if gzip {
        let enc = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        Ok((common, [ct, enc, tag], cached.gzipped().clone()).into_response())
    } else {
        Ok((common, [ct, tag], cached.raw.clone()).into_response())
    }
}

/// `GET /tiles/{layer}.json`: the layer's TileJSON 3.0 document.
pub(crate) async fn tilejson(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = file.strip_suffix(".json").ok_or_else(|| {
        ApiError::NotFound(format!(
            "no {file:?}: TileJSON is at /tiles/{{layer}}.json, tiles at /tiles/{{layer}}/{{z}}/{{x}}/{{y}}"
        ))
    })?;
    let layer = MapLayer::parse(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no tile layer {name:?}; layers are coverage, radio, demand, roads"
        ))
    })?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    let (bounds, center) = match state.store.extent().await? {
        Some(b) => (
            [b.west, b.south, b.east, b.north],
            json!([
                (b.west + b.east) / 2.0,
                (b.south + b.north) / 2.0,
                fitting_zoom(&b)
            ]),
        ),
        None => (
            [-180.0, -85.051_129, 180.0, 85.051_129],
            json!([0.0, 0.0, MIN_ZOOM]),
        ),
    };
    Ok(axum::Json(json!({
        "tilejson": "3.0.0",
        "name": format!("covermap {}", layer.name()),
        "description": layer.description(),
        "version": "1.0.0",
        "attribution": "© OpenStreetMap contributors; covermap contributors",
        "scheme": "xyz",
        "tiles": [format!("{scheme}://{host}/tiles/{}/{{z}}/{{x}}/{{y}}", layer.name())],
        "minzoom": MIN_ZOOM,
        "maxzoom": MAX_ZOOM,
        // Where the data is (the road network, else what was observed): maps open on it.
        "bounds": bounds,
        "center": center,
        "vector_layers": [{
            "id": layer.name(),
            "description": layer.description(),
            "minzoom": MIN_ZOOM,
            "maxzoom": MAX_ZOOM,
            "fields": layer.fields(),
        }],
        "covermap": {"policy_version": state.policy.now().rules.version, "h3_resolution": u8::from(state.resolution)},
    }))
    .into_response())
}

/// The zoom at which `b` fills about a 512-pixel view, within the zooms served live.
fn fitting_zoom(b: &BoundingBox) -> u8 {
    let width = (b.east - b.west).max((b.north - b.south) * 1.5).max(1e-6);
    let z = (360.0 / width).log2().floor() + 1.0;
    z.clamp(f64::from(MIN_ZOOM), f64::from(MAX_ZOOM)) as u8
}

/// The bundled font and the glyph ranges already drawn from it (each drawn once per process).
struct GlyphStore {
    font: covermap_tiles::glyphs::Glyphs,
    /// Each range drawn, raw and gzipped (about half the size).
    ranges: Mutex<HashMap<u32, (Bytes, Bytes)>>,
}

fn glyph_store() -> &'static GlyphStore {
    static STORE: std::sync::OnceLock<GlyphStore> = std::sync::OnceLock::new();
    STORE.get_or_init(|| GlyphStore {
        font: covermap_tiles::glyphs::Glyphs::bundled(),
        ranges: Mutex::new(HashMap::new()),
    })
}

/// `GET /fonts/{fontstack}/{range}.pbf`: the glyphs MapLibre draws the map's labels with, from
/// the font compiled into covermap (`DejaVu Sans`), so the map needs no font server or CDN.
pub(crate) async fn glyphs(
    Path((stack, range)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use covermap_tiles::glyphs::{FONT_STACK, parse_range};
    if !stack.split(',').any(|name| name.trim() == FONT_STACK) {
        return Err(ApiError::NotFound(format!(
            "no font stack {stack:?}: this server has {FONT_STACK:?}"
        )));
    }
    let name = range.strip_suffix(".pbf").unwrap_or(&range);
    let start = parse_range(name).map_err(|e| ApiError::BadRequest {
        code: "bad_glyph_range",
        message: e.to_string(),
        field: Some("range".into()),
    })?;
    let store = glyph_store();
    let cached = store
        .ranges
        .lock()
        .ok()
        .and_then(|r| r.get(&start).cloned());
    let (raw, gz) = match cached {
        Some(b) => b,
        None => {
            // A few milliseconds, once per range and process: drawn in place.
            let raw = store.font.range(FONT_STACK, start);
            let gz = gzip(&raw).map(Bytes::from).unwrap_or_default();
            let drawn = (Bytes::from(raw), gz);
            if let Ok(mut r) = store.ranges.lock() {
                r.insert(start, drawn.clone());
            }
            drawn
        }
    };
    let zipped = accepts_gzip(&headers) && !gz.is_empty();
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        if zipped { gz } else { raw },
    )
        .into_response();
    if zipped {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_opens_on_the_data() {
        // Monaco and its neighbours, about 12 km across: a town-sized view.
        let monaco = BoundingBox {
            west: 7.36,
            south: 43.70,
            east: 7.53,
            north: 43.78,
        };
        assert_eq!(fitting_zoom(&monaco), 12);
        let street = BoundingBox {
            west: 7.42,
            south: 43.73,
            east: 7.4201,
            north: 43.7301,
        };
        assert_eq!(fitting_zoom(&street), MAX_ZOOM);
        assert_eq!(fitting_zoom(&BoundingBox::WORLD), MIN_ZOOM);
    }

    #[test]
    fn tile_paths_are_checked() {
        assert!(parse_tile("coverage", "14", "8529", "5975").is_ok());
        assert!(parse_tile("roads", "14", "8529", "5975.mvt").is_ok());
        assert!(parse_tile("nope", "1", "0", "0").is_err());
        assert!(
            parse_tile("coverage", "1", "2", "0").is_err(),
            "x out of range"
        );
        assert!(
            parse_tile("coverage", "23", "0", "0").is_err(),
            "zoom too high"
        );
        assert!(parse_tile("coverage", "-1", "0", "0").is_err());
        assert!(parse_tile("coverage", "999", "0", "0").is_err());
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn a_changed_cell_drops_the_tiles_under_it_and_no_others() {
        let cache = TileCache::new(1 << 20);
        let finest = Resolution::Eleven;
        let cell = Cell(h3o::LatLng::new(43.7384, 7.4246).unwrap().to_cell(finest));
        let here = tile::tiles_covering([7.4246, 43.7384, 7.4246, 43.7384], 15)[0];
        let far = TileId::new(15, 0, 0).unwrap();
        let low = tile::tiles_covering([7.4246, 43.7384, 7.4246, 43.7384], 5)[0];
        let t = || {
            Arc::new(CachedTile {
                raw: Bytes::from_static(b"x"),
                gzip: OnceLock::new(),
                etag: HeaderValue::from_static("\"e\""),
                made: Instant::now(),
            })
        };
        for k in [here, far, low] {
            cache.put((MapLayer::Coverage, k), t(), cache.generation());
            cache.put((MapLayer::Roads, k), t(), cache.generation());
        }
        assert_eq!(cache.len(), 6);
        cache.drop_cells(&[cell], finest);
        assert_eq!(cache.len(), 2, "only the far tiles stay");
        assert!(cache.get((MapLayer::Coverage, far)).is_some());
        // A tile rendered before that drop is not kept: it may hold what was dropped.
        cache.put((MapLayer::Coverage, here), t(), 0);
        assert!(cache.get((MapLayer::Coverage, here)).is_none());
    }
}
