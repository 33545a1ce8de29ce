#!/usr/bin/env python3
"""Load the tiles harness's data set (peer/gen_data.py's cells.csv: res-10 H3 cells with
freshness_age_s, coverage, observations, contributors) into a migrated covermap database, as
the rows processed uploads leave behind, so `covermap serve` draws the same figures:

- one upload per contributor rank k (device `bench-k`), received an hour ago, processed;
- per cell, `contributors` observations (one per upload 1..contributors), the cell's
  `observations` split among them, the newest seen `freshness_age_s` ago (capped below the
  30-day fix age covermap accepts), the others a day older each;
- per cell 100 m of road (`road_cells`) and `coverage` x 100 m of it driven by upload 1
  (`matched_stretches`), so the `coverage` property is the harness's.

  load_cells.py CELLS_CSV --pg postgres://...      (psql must be on PATH)
  load_cells.py CELLS_CSV --sqlite covermap-data/covermap.db
"""
import csv
import io
import sqlite3
import subprocess
import sys
import time

ROAD_M = 100.0
MAX_AGE_S = 29 * 86400


def cells(path):
    with open(path) as f:
        for r in csv.DictReader(f):
            yield (int(r["h3"], 16), int(r["freshness_age_s"]), float(r["coverage"]),
                   int(r["observations"]), int(r["contributors"]))


def centre(cell):
    # h3's Python binding is in the harness venv; the loader only needs each cell's centre.
    import h3
    return h3.cell_to_latlng(format(cell, "x"))


def rows(path, now_us):
    uploads = 0
    obs, roads, stretches = [], [], []
    for i, (cell, age, cov, n, k) in enumerate(cells(path)):
        lat, lon = centre(cell)
        k = max(1, min(k, n))
        uploads = max(uploads, k)
        newest = now_us - min(age, MAX_AGE_S) * 1_000_000
        for j in range(k):
            fixes = n // k + (1 if j < n % k else 0)
            seen = newest - j * 86_400_000_000
            obs.append((j + 1, cell, f"bench-{j + 1}", fixes, seen, seen, lat, lon))
        roads.append((cell, ROAD_M, lat, lon))
        if cov > 0:
            stretches.append((1, i, 0, cell, 1_000_000 + i, 0, cov * ROAD_M))
    ups = [(u, f"bench-{u}", "gpx", f"{u:064x}", 1000, f"bench/{u}", now_us - 3_600_000_000,
            "processed", now_us - 3_600_000_000) for u in range(1, uploads + 1)]
    return ups, obs, roads, stretches


def load_sqlite(db, ups, obs, roads, stretches):
    con = sqlite3.connect(db)
    with con:
        con.executemany("INSERT INTO uploads (id, device, kind, sha256, size_bytes, blob_key, "
                        "received_at, status, processed_at) VALUES (?,?,?,?,?,?,?,?,?)", ups)
        con.executemany("INSERT INTO cell_observations (upload_id, cell, device, fixes, "
                        "first_seen, last_seen, lat, lon) VALUES (?,?,?,?,?,?,?,?)", obs)
        con.executemany("INSERT INTO road_cells (cell, road_length_m, lat, lon) "
                        "VALUES (?,?,?,?)", roads)
        con.executemany("INSERT INTO matched_stretches (upload_id, seq, match_piece, cell, "
                        "osm_way_id, way_piece, length_m) VALUES (?,?,?,?,?,?,?)", stretches)
    con.close()


def load_pg(url, ups, obs, roads, stretches):
    def ts(us):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us // 1_000_000)) + \
            f".{us % 1_000_000:06d}+00"

    def copy(table, cols, data):
        buf = io.StringIO()
        csv.writer(buf).writerows(data)
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                        f"\\copy {table} ({cols}) FROM STDIN WITH (FORMAT csv)"],
                       input=buf.getvalue(), text=True, check=True)

    copy("uploads", "id, device, kind, sha256, size_bytes, blob_key, received_at, status, "
         "processed_at", [(*u[:6], ts(u[6]), u[7], ts(u[8])) for u in ups])
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                    "SELECT setval('uploads_id_seq', (SELECT max(id) FROM uploads))"],
                   check=True, stdout=subprocess.DEVNULL)
    # Points as EWKT, so COPY fills the geometry columns directly.
    # Every row carries its upload's received_at, the month partitions' key.
    received = {u[0]: ts(u[6]) for u in ups}
    copy("cell_observations", "upload_id, cell, device, fixes, first_seen, last_seen, geom, "
         "received_at",
         [(*o[:4], ts(o[4]), ts(o[5]), f"SRID=4326;POINT({o[7]} {o[6]})", received[o[0]])
          for o in obs])
    copy("road_cells", "cell, road_length_m, geom",
         [(r[0], r[1], f"SRID=4326;POINT({r[3]} {r[2]})") for r in roads])
    copy("matched_stretches", "upload_id, seq, match_piece, cell, osm_way_id, way_piece, length_m, "
         "received_at", [(*s, received[s[0]]) for s in stretches])
    subprocess.run(["psql", "-X", "-q", url, "-c", "ANALYZE"], check=True)


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("--pg", "--sqlite"):
        sys.exit(__doc__)
    ups, obs, roads, stretches = rows(sys.argv[1], int(time.time() * 1_000_000))
    (load_pg if sys.argv[2] == "--pg" else load_sqlite)(sys.argv[3], ups, obs, roads, stretches)
    print(f"loaded {len(roads)} cells: {len(obs)} observations from {len(ups)} uploads, "
          f"{len(stretches)} driven stretches", file=sys.stderr)


if __name__ == "__main__":
    main()
