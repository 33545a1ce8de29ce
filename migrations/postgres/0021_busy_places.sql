-- Looking for an upload's twins (a replay or a copy of an earlier one) costs the same in a busy
-- place as in a quiet one. They are looked for among the uploads that touched the same cells;
-- radio batches were found through their samples (hundreds an upload, every one read), and every
-- upload ever seen in a cell was read, so a thousand phones in one square made every worker slow
-- (BENCHMARKS.md, "one busy place"). Now a radio batch's cells are kept once per cell
-- (`radio_cells`, written with its samples, gone with its erasure), and both kinds are read
-- newest first, at most so many per cell, through an index on (cell, upload_id).
CREATE TABLE radio_cells (
    cell      BIGINT NOT NULL,
    upload_id BIGINT NOT NULL,
    samples   INT    NOT NULL CHECK (samples > 0),
    PRIMARY KEY (cell, upload_id)
);
CREATE INDEX radio_cells_upload ON radio_cells (upload_id);
INSERT INTO radio_cells (cell, upload_id, samples)
    SELECT cell, upload_id, count(*) FROM radio_observations
    WHERE upload_id NOT IN (SELECT id FROM uploads WHERE erased_at IS NOT NULL)
    GROUP BY cell, upload_id;

DROP INDEX cell_observations_cell;
CREATE INDEX cell_observations_cell ON cell_observations (cell, upload_id);
