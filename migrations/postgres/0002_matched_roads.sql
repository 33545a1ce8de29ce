-- Map matching: each cell's total road length (the denominator of coverage), and the per-cell,
-- per-segment stretches of road an upload was matched to.
CREATE TABLE road_cells (
    cell          BIGINT PRIMARY KEY,
    road_length_m DOUBLE PRECISION NOT NULL CHECK (road_length_m >= 0),
    geom          geometry(Point, 4326) NOT NULL
);
CREATE INDEX road_cells_geom ON road_cells USING GIST (geom);

CREATE TABLE matched_stretches (
    upload_id   BIGINT           NOT NULL REFERENCES uploads (id),
    seq         INT              NOT NULL,
    match_piece INT              NOT NULL,
    cell        BIGINT           NOT NULL,
    osm_way_id  BIGINT           NOT NULL,
    way_piece   INT              NOT NULL,
    length_m    DOUBLE PRECISION NOT NULL CHECK (length_m >= 0),
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX matched_stretches_cell ON matched_stretches (cell);
CREATE INDEX matched_stretches_way ON matched_stretches (osm_way_id, way_piece);

ALTER TABLE uploads ADD COLUMN matched_m DOUBLE PRECISION;
