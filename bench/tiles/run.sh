#!/usr/bin/env bash
# The tiles benchmark (BENCHMARKS.md, "Uncached tiles beside martin"): covermap's `coverage`
# tiles beside martin 1.14 and PostGIS ST_AsMVT on the shared harness (bench/tiles/peer, a copy
# of ../shared/bench/tiles of 2026-12-07; its README says what each peer is and how it is
# pinned), in one run, on the same 26,481 resolution-10 cells and the same request lists.
#
# covermap runs as four servers, each pinned to the harness's server core: on PostgreSQL and on
# the embedded SQLite, each with the tile cache off (`--tile-cache-mb 0`: every answer drawn
# anew, `x-tile-cache: miss`) and on (256 MiB, warm after the harness's first pass). The data
# goes in through bench/tiles/load_cells.py (the rows processed uploads leave: observations per
# device, road length and road driven per cell). The servers draw res-8 parents below zoom 12
# from the res-10 cells themselves (`--h3-resolution 10`), as the harness asks. The load comes
# from one address, so the per-address rate limit is lifted (`--public-rate 100000`).
#
#   bench/tiles/run.sh                 everything (first run builds martin: ~10-15 min)
#   PEERS="" bench/tiles/run.sh        covermap only
#   DURATION=5 CONCURRENCY="1 4 16" ZOOMS="10 12 13 14"   (the harness's knobs, passed on)
#
# Needs root (the harness runs its own PostgreSQL cluster), PostgreSQL 15 + PostGIS at
# 127.0.0.1:5432 for covermap's PostgreSQL backend (COVERMAP_BENCH_DATABASE overrides the admin
# URL), cargo. Results: ~/.cache/covermap-bench/tiles/results.md (BENCH_CACHE overrides the root).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${BENCH_CACHE:-$HOME/.cache/covermap-bench}/tiles
DATA=$CACHE/data
ADMIN=${COVERMAP_BENCH_DATABASE:-postgres://postgres@127.0.0.1:5432/postgres}
SERVER_CORE=${SERVER_CORE:-1}
export SIZE_KM=${SIZE_KM:-20}
log() { echo "[covermap-tiles] $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
WORK=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  psql -X -q "$ADMIN" -c "DROP DATABASE IF EXISTS covermap_tiles_bench" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The harness runs its PostgreSQL cluster as `postgres` under $CACHE: every folder above it must
# let that user through (o+x; nothing is listed or readable by it that was not before).
mkdir -p "$CACHE"
if [ "$(id -u)" = 0 ]; then
  d=$CACHE
  while [ "$d" != / ]; do chmod o+x "$d"; d=$(dirname "$d"); done
fi

# The harness's data set, made here first (as the harness would) so covermap can load it.
mkdir -p "$CACHE"
if [ ! -x "$CACHE/venv/bin/python" ] || ! "$CACHE/venv/bin/python" -c 'import h3' 2>/dev/null; then
  log "python venv with h3"
  python3 -m venv "$CACHE/venv" && "$CACHE/venv/bin/pip" install -q 'h3>=4,<5'
fi
if [ ! -f "$DATA/area.json" ] || [ "$(cat "$DATA/size_km" 2>/dev/null)" != "$SIZE_KM" ]; then
  log "generating cells (SIZE_KM=$SIZE_KM)"
  "$CACHE/venv/bin/python" bench/tiles/peer/gen_data.py "$DATA" >&2
  echo "$SIZE_KM" > "$DATA/size_km"
fi

log "building covermap (release)"
cargo build --release --locked -p covermap >&2
BIN=$ROOT/target/release/covermap

# PostgreSQL backend: a fresh database on the local server.
psql -X -q "$ADMIN" -c "DROP DATABASE IF EXISTS covermap_tiles_bench" -c "CREATE DATABASE covermap_tiles_bench"
PGURL=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path='/covermap_tiles_bench').geturl())" "$ADMIN")
"$BIN" --data-dir "$WORK/pg" --database "$PGURL" migrate >&2
"$CACHE/venv/bin/python" bench/tiles/load_cells.py "$DATA/cells.csv" --pg "$PGURL"
# Embedded backend.
"$BIN" --data-dir "$WORK/sqlite" migrate >&2
"$CACHE/venv/bin/python" bench/tiles/load_cells.py "$DATA/cells.csv" --sqlite "$WORK/sqlite/covermap.sqlite3"
cp -r "$WORK/sqlite" "$WORK/sqlite-cached"   # one embedded database per process

# start NAME CACHE_MB BACKEND_ARGS... -> appends "NAME=template" to EXTRA
EXTRA=""
NAMES=()
start() {
  local name=$1 cache_mb=$2; shift 2
  local port; port=$(free_port)
  taskset -c "$SERVER_CORE" "$BIN" "$@" --h3-resolution 10 --tile-cache-mb "$cache_mb" \
    --workers 1 --close-epochs false --public-rate 100000 --listen "127.0.0.1:$port" serve > "$CACHE/covermap-$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  for _ in $(seq 1 240); do
    grep -q "coverage map read into memory" "$CACHE/covermap-$name.log" 2>/dev/null && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { log "$name exited: $(tail -3 "$CACHE/covermap-$name.log")"; exit 1; }
    sleep 0.5
  done
  grep -q "coverage map read into memory" "$CACHE/covermap-$name.log" || { log "$name did not read its map"; exit 1; }
  log "$name on :$port: $(sed 's/\x1b\[[0-9;]*m//g' "$CACHE/covermap-$name.log" | grep -o 'cells=[0-9]* held=[0-9]* ms=[0-9]*' | head -1)"
  EXTRA="$EXTRA covermap-$name=http://127.0.0.1:$port/tiles/coverage/{z}/{x}/{y}"
}
start pg-uncached 0 --data-dir "$WORK/pg" --database "$PGURL"
start sqlite-uncached 0 --data-dir "$WORK/sqlite"
start pg-cached 256 --data-dir "$WORK/pg" --database "$PGURL"
start sqlite-cached 256 --data-dir "$WORK/sqlite-cached"

EXTRA_PEERS="${EXTRA_PEERS:-}$EXTRA" SERVER_CORE=$SERVER_CORE bench/tiles/peer/run.sh
# What each server holds in memory once the run is over (resident set, KiB).
for i in "${!NAMES[@]}"; do
  log "covermap-${NAMES[$i]}: resident $(ps -o rss= -p "${PIDS[$i]}" | tr -d ' ') KiB"
done
