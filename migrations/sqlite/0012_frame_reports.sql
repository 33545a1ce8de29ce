-- Times are microseconds since 1970, as everywhere in this backend.
-- Taking frames down: anyone may report a published frame (a face or a plate left readable, or
-- something else that should not be public). A reported frame is hidden at once (hidden_at: not
-- served, not on the imagery map) until an auditor decides: keep (shown again, unless another
-- report of it is still open) or remove (removed_at: hidden for good, its published derivative
-- deleted, every open report of it closed). Rewards are not touched: an epoch's captures are what
-- was published when it closed, and the ledger keeps amounts, not pixels.
CREATE TABLE frame_reports (
    id          INTEGER     PRIMARY KEY AUTOINCREMENT,
    upload_id   INTEGER     NOT NULL,
    frame       INTEGER     NOT NULL,
    reason      TEXT        NOT NULL CHECK (reason IN ('face', 'plate', 'other')),
    note        TEXT,
    reporter    TEXT        NOT NULL,
    reported_at INTEGER     NOT NULL,
    decision    TEXT        CHECK (decision IN ('keep', 'remove')),
    decided_by  TEXT,
    decided_at  INTEGER
);
CREATE INDEX frame_reports_frame ON frame_reports (upload_id, frame);
CREATE INDEX frame_reports_open ON frame_reports (id) WHERE decision IS NULL;
CREATE INDEX frame_reports_reported_at ON frame_reports (reported_at);
CREATE INDEX frame_reports_decided_at ON frame_reports (decided_at) WHERE decided_at IS NOT NULL;
ALTER TABLE frames ADD COLUMN hidden_at INTEGER;
ALTER TABLE frames ADD COLUMN removed_at INTEGER;
