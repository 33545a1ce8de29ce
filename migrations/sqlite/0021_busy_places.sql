-- Looking for an upload's twins costs the same in a busy place as in a quiet one: a radio
-- batch's cells kept once per cell, and both kinds read newest first, at most so many per cell
-- (see migrations/postgres/0021).
CREATE TABLE radio_cells (
    cell      INTEGER NOT NULL,
    upload_id INTEGER NOT NULL,
    samples   INTEGER NOT NULL CHECK (samples > 0),
    PRIMARY KEY (cell, upload_id)
) WITHOUT ROWID;
CREATE INDEX radio_cells_upload ON radio_cells (upload_id);
INSERT INTO radio_cells (cell, upload_id, samples)
    SELECT cell, upload_id, count(*) FROM radio_observations
    WHERE upload_id NOT IN (SELECT id FROM uploads WHERE erased_at IS NOT NULL)
    GROUP BY cell, upload_id;

DROP INDEX cell_observations_cell;
CREATE INDEX cell_observations_cell ON cell_observations (cell, upload_id);
