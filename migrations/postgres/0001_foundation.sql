-- covermap on PostGIS: uploads, the job queue, per-cell observations and the road network.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE uploads (
    id             BIGSERIAL PRIMARY KEY,
    device         TEXT        NOT NULL,
    kind           TEXT        NOT NULL,
    sha256         TEXT        NOT NULL UNIQUE,
    size_bytes     BIGINT      NOT NULL CHECK (size_bytes >= 0),
    blob_key       TEXT        NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    status         TEXT        NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'processed', 'rejected')),
    reason         TEXT,
    fixes_accepted BIGINT,
    fixes_rejected BIGINT,
    cells          BIGINT,
    processed_at   TIMESTAMPTZ
);
CREATE INDEX uploads_device ON uploads (device, received_at);

CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT        NOT NULL,
    upload_id    BIGINT      NOT NULL REFERENCES uploads (id),
    status       TEXT        NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'leased', 'done', 'failed')),
    attempts     INT         NOT NULL DEFAULT 0,
    available_at TIMESTAMPTZ NOT NULL,
    lease_token  TEXT,
    leased_by    TEXT,
    leased_until TIMESTAMPTZ,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX jobs_ready ON jobs (available_at, id) WHERE status = 'queued';
CREATE INDEX jobs_expiring ON jobs (leased_until, id) WHERE status = 'leased';

-- One row per (upload, cell): the primary key makes a second write of the same job's results
-- impossible, on top of the lease check.
CREATE TABLE cell_observations (
    upload_id  BIGINT      NOT NULL REFERENCES uploads (id),
    cell       BIGINT      NOT NULL,
    device     TEXT        NOT NULL,
    fixes      BIGINT      NOT NULL CHECK (fixes > 0),
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL,
    geom       geometry(Point, 4326) NOT NULL,
    PRIMARY KEY (upload_id, cell)
);
CREATE INDEX cell_observations_cell ON cell_observations (cell);
CREATE INDEX cell_observations_geom ON cell_observations USING GIST (geom);

CREATE TABLE road_segments (
    id           BIGSERIAL PRIMARY KEY,
    osm_way_id   BIGINT           NOT NULL,
    piece        INT              NOT NULL,
    osm_node_ids BIGINT[]         NOT NULL,
    highway      TEXT             NOT NULL,
    name         TEXT,
    oneway       BOOLEAN          NOT NULL,
    length_m     DOUBLE PRECISION NOT NULL,
    geom         geometry(LineString, 4326) NOT NULL,
    UNIQUE (osm_way_id, piece)
);
CREATE INDEX road_segments_geom ON road_segments USING GIST (geom);
