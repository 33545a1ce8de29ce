-- covermap embedded: the same tables as on PostGIS. Times are integer microseconds since the
-- Unix epoch (they sort and compare as numbers); geometry is kept as coordinates with a box.

CREATE TABLE uploads (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    device         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    sha256         TEXT    NOT NULL UNIQUE,
    size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
    blob_key       TEXT    NOT NULL,
    received_at    INTEGER NOT NULL,
    status         TEXT    NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'processed', 'rejected')),
    reason         TEXT,
    fixes_accepted INTEGER,
    fixes_rejected INTEGER,
    cells          INTEGER,
    processed_at   INTEGER
);
CREATE INDEX uploads_device ON uploads (device, received_at);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    upload_id    INTEGER NOT NULL REFERENCES uploads (id),
    status       TEXT    NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'leased', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    lease_token  TEXT,
    leased_by    TEXT,
    leased_until INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX jobs_ready ON jobs (available_at, id) WHERE status = 'queued';
CREATE INDEX jobs_expiring ON jobs (leased_until, id) WHERE status = 'leased';

CREATE TABLE cell_observations (
    upload_id  INTEGER NOT NULL REFERENCES uploads (id),
    cell       INTEGER NOT NULL,
    device     TEXT    NOT NULL,
    fixes      INTEGER NOT NULL CHECK (fixes > 0),
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    lat        REAL    NOT NULL,
    lon        REAL    NOT NULL,
    PRIMARY KEY (upload_id, cell)
);
CREATE INDEX cell_observations_cell ON cell_observations (cell);
CREATE INDEX cell_observations_pos ON cell_observations (lat, lon);

CREATE TABLE road_segments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    osm_way_id   INTEGER NOT NULL,
    piece        INTEGER NOT NULL,
    osm_node_ids TEXT    NOT NULL, -- JSON array
    highway      TEXT    NOT NULL,
    name         TEXT,
    oneway       INTEGER NOT NULL,
    length_m     REAL    NOT NULL,
    coords       TEXT    NOT NULL, -- JSON [[lon, lat], ...]
    min_lon      REAL    NOT NULL,
    min_lat      REAL    NOT NULL,
    max_lon      REAL    NOT NULL,
    max_lat      REAL    NOT NULL,
    UNIQUE (osm_way_id, piece)
);
CREATE INDEX road_segments_box ON road_segments (min_lon, max_lon, min_lat, max_lat);
