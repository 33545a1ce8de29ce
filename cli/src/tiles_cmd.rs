//! `covermap tiles export`: a layer's vector tiles, rendered exactly as the server renders them,
//! written into one PMTiles v3 archive for static hosting (any HTTP server that answers range
//! requests, or object storage, with the `pmtiles` MapLibre protocol on the client).

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use covermap_domain::{BoundingBox, Cell};
use covermap_tiles::layers::{self, MapLayer};
use covermap_tiles::pmtiles::Archive;
use covermap_tiles::tile::{self, TileId};
use serde_json::json;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum TilesCommand {
    /// Write a layer's tiles, zoom by zoom, into a PMTiles v3 archive.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// coverage, radio, demand or roads.
    #[arg(long)]
    layer: String,
    /// The archive to write (replaced when it exists).
    #[arg(long)]
    out: PathBuf,
    /// Lowest zoom written.
    #[arg(long, default_value_t = 0)]
    minzoom: u8,
    /// Highest zoom written (clients overzoom past it).
    #[arg(long, default_value_t = 16)]
    maxzoom: u8,
}

/// Most tiles one export writes: past this the zoom range is too deep for the data's extent.
const MAX_TILES: usize = 2_000_000;

pub async fn run(command: TilesCommand, settings: &Settings) -> anyhow::Result<()> {
    let TilesCommand::Export(args) = command;
    let layer = MapLayer::parse(&args.layer).with_context(|| {
        format!(
            "no layer {:?}; layers are coverage, radio, demand, roads",
            args.layer
        )
    })?;
    if args.minzoom > args.maxzoom || args.maxzoom > tile::MAX_ZOOM {
        bail!(
            "zooms must satisfy 0 <= minzoom <= maxzoom <= {}; got {}..{}",
            tile::MAX_ZOOM,
            args.minzoom,
            args.maxzoom
        );
    }
    let store = crate::open_store(settings).await?;
    let policy = crate::policy_cmd::open_book(settings, store.as_ref())
        .await?
        .now();
    let finest = settings.resolution();
    let now = Utc::now();
    let world = BoundingBox::WORLD;
    // What the layer has, to know which tiles can hold anything: hexagons' cells, or roads' boxes.
    let extent = match layer {
        MapLayer::Coverage => Extent::Cells(
            store
                .coverage(world, i64::MAX)
                .await?
                .iter()
                .map(|c| c.cell)
                .collect(),
        ),
        MapLayer::Radio => Extent::Cells(
            store
                .radio_coverage(world, i64::MAX)
                .await?
                .iter()
                .map(|c| c.cell)
                .collect(),
        ),
        MapLayer::Demand => {
            let since = now - chrono::Duration::days(3650);
            Extent::Cells(
                store
                    .demand_cells(world, now, since, i64::MAX)
                    .await?
                    .iter()
                    .map(|c| c.cell)
                    .collect(),
            )
        }
        MapLayer::Roads => Extent::Boxes(
            store
                .roads(world, i64::MAX)
                .await?
                .iter()
                .map(|s| tile::bounds_of(s.points.iter().map(|p| (p.lon, p.lat))))
                .collect(),
        ),
    };
    let metadata = json!({
        "name": format!("covermap {}", layer.name()),
        "description": layer.description(),
        "attribution": "© OpenStreetMap contributors; covermap contributors",
        "generated_at": now,
        "policy_version": policy.rules.version,
        "vector_layers": [{
            "id": layer.name(),
            "description": layer.description(),
            "minzoom": args.minzoom,
            "maxzoom": args.maxzoom,
            "fields": layer.fields(),
        }],
    });
    let mut archive = Archive::new(metadata);
    // Coverage comes from the map in memory, as the server draws it: every parent summed from
    // all of its children, however many there are.
    let memory = match layer {
        MapLayer::Coverage => {
            let states = store.map_cells(None, now, policy.coverage_window()).await?;
            Some(covermap_tiles::index::MapIndex::of(
                finest,
                args.minzoom,
                &states,
            ))
        }
        _ => None,
    };
    let mut rendered = 0usize;
    for z in args.minzoom..=args.maxzoom {
        let mut tiles: Vec<TileId> = extent
            .boxes(tile::resolution_for_zoom(z, finest))
            .iter()
            .flat_map(|b| tile::tiles_drawing(*b, z))
            .collect();
        tiles.sort_unstable();
        tiles.dedup();
        if rendered + tiles.len() > MAX_TILES {
            bail!("zoom {z} would take the archive past {MAX_TILES} tiles; lower --maxzoom");
        }
        for t in tiles {
            let drawn = memory.as_ref().and_then(|m| m.coverage(t, now, &policy));
            let mvt = match drawn {
                Some(l) => covermap_tiles::mvt::encode(&[l]),
                None => {
                    covermap_pipeline::maps::render(store.as_ref(), &policy, finest, layer, t, now)
                        .await?
                }
            };
            archive.add(t, &mvt)?;
            rendered += 1;
        }
        tracing::info!(zoom = z, tiles = rendered, "rendered");
    }
    let tmp = args.out.with_extension("pmtiles.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let summary = archive.write(&mut out)?;
    let file = out
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot move the archive to {}", args.out.display()))?;
    println!(
        "{}",
        json!({"layer": layer.name(), "out": args.out, "rendered": rendered, "summary": summary})
    );
    Ok(())
}

/// Where a layer has something.
enum Extent {
    Cells(Vec<Cell>),
    Boxes(Vec<[f64; 4]>),
}

impl Extent {
    /// The boxes to draw at a zoom that draws `res`: a hexagon layer's parents at `res` (a
    /// parent reaches past its children), each once.
    fn boxes(&self, res: h3o::Resolution) -> Vec<[f64; 4]> {
        match self {
            Extent::Boxes(b) => b.clone(),
            Extent::Cells(cells) => {
                let parents: std::collections::BTreeSet<Cell> =
                    cells.iter().map(|c| layers::parent(*c, res)).collect();
                parents
                    .into_iter()
                    .map(layers::cell_bounds)
                    // A hexagon across the antimeridian spans the world in longitude: left out.
                    .filter(|b| b[2] - b[0] < 180.0)
                    .collect()
            }
        }
    }
}
