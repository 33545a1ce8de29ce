-- Times are microseconds since 1970, as everywhere in this backend.
-- Blurring further: an auditor's third decision on a reported frame. The auditor marks boxes on
-- the hidden frame; its published derivative is blurred there, stored as a new blob (content
-- addressed, so under a key of its own: nothing a cache or another frame holds is overwritten),
-- and the frame points at it and is shown again (unless another report of it is still open).
-- boxes keeps what was marked: a JSON array of {x1, y1, x2, y2} in the frame's pixels.
--
-- SQLite cannot change a column's CHECK in place: the table is built again with it, and filled
-- from the old one (ids kept; AUTOINCREMENT's high mark too, so no id is handed out again).
CREATE TEMP TABLE frame_reports_sequence_0013 AS
    SELECT seq FROM sqlite_sequence WHERE name = 'frame_reports';
CREATE TABLE frame_reports_0013 (
    id          INTEGER     PRIMARY KEY AUTOINCREMENT,
    upload_id   INTEGER     NOT NULL,
    frame       INTEGER     NOT NULL,
    reason      TEXT        NOT NULL CHECK (reason IN ('face', 'plate', 'other')),
    note        TEXT,
    reporter    TEXT        NOT NULL,
    reported_at INTEGER     NOT NULL,
    decision    TEXT        CHECK (decision IN ('keep', 'remove', 'blur')),
    decided_by  TEXT,
    decided_at  INTEGER,
    boxes       TEXT        CHECK ((decision = 'blur') = (boxes IS NOT NULL))
);
INSERT INTO frame_reports_0013
    (id, upload_id, frame, reason, note, reporter, reported_at, decision, decided_by, decided_at)
SELECT id, upload_id, frame, reason, note, reporter, reported_at, decision, decided_by, decided_at
FROM frame_reports;
DROP TABLE frame_reports;
ALTER TABLE frame_reports_0013 RENAME TO frame_reports;
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM temp.frame_reports_sequence_0013), 0))
WHERE name = 'frame_reports';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'frame_reports', seq FROM temp.frame_reports_sequence_0013
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'frame_reports');
DROP TABLE temp.frame_reports_sequence_0013;
CREATE INDEX frame_reports_frame ON frame_reports (upload_id, frame);
CREATE INDEX frame_reports_open ON frame_reports (id) WHERE decision IS NULL;
CREATE INDEX frame_reports_reported_at ON frame_reports (reported_at);
CREATE INDEX frame_reports_decided_at ON frame_reports (decided_at) WHERE decided_at IS NOT NULL;
