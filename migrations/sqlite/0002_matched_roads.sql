-- Map matching: each cell's total road length (the denominator of coverage), and the per-cell,
-- per-segment stretches of road an upload was matched to.
CREATE TABLE road_cells (
    cell          INTEGER PRIMARY KEY,
    road_length_m REAL    NOT NULL CHECK (road_length_m >= 0),
    lat           REAL    NOT NULL,
    lon           REAL    NOT NULL
);
CREATE INDEX road_cells_pos ON road_cells (lat, lon);

CREATE TABLE matched_stretches (
    upload_id   INTEGER NOT NULL REFERENCES uploads (id),
    seq         INTEGER NOT NULL,
    match_piece INTEGER NOT NULL,
    cell        INTEGER NOT NULL,
    osm_way_id  INTEGER NOT NULL,
    way_piece   INTEGER NOT NULL,
    length_m    REAL    NOT NULL CHECK (length_m >= 0),
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX matched_stretches_cell ON matched_stretches (cell);
CREATE INDEX matched_stretches_way ON matched_stretches (osm_way_id, way_piece);

ALTER TABLE uploads ADD COLUMN matched_m REAL;
