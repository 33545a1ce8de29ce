-- Imagery: a published frame is an imagery observation of its cell and of the road segment it
-- was taken on (nearest segment of the drive's matched roads); its quality scores are kept
-- beside it. A frame the vision stage refused (quality, duplicate) goes to frame_rejections with
-- its reason and scores, for the auditors' queue: its blurred derivative (review_key) is shown
-- to auditors only, never published. Originals are private and deleted after the configured
-- retention (original_expired_at set when their bytes are gone).
ALTER TABLE frames ADD COLUMN osm_way_id INTEGER;
ALTER TABLE frames ADD COLUMN way_piece INTEGER;
ALTER TABLE frames ADD COLUMN quality TEXT;
ALTER TABLE frames ADD COLUMN original_expired_at INTEGER;
CREATE INDEX frames_segment ON frames (osm_way_id, way_piece) WHERE osm_way_id IS NOT NULL;

ALTER TABLE uploads ADD COLUMN blob_expired_at INTEGER;

CREATE TABLE frame_rejections (
    upload_id           INTEGER NOT NULL REFERENCES uploads (id),
    frame               INTEGER NOT NULL,
    reason              TEXT    NOT NULL,
    scores              TEXT    NOT NULL,
    sha256              TEXT    NOT NULL,
    blob_key            TEXT    NOT NULL,
    review_key          TEXT,
    phash               TEXT,
    duplicate_of_upload INTEGER,
    duplicate_of_frame  INTEGER,
    captured_at         INTEGER NOT NULL,
    cell                INTEGER NOT NULL,
    lat                 REAL    NOT NULL,
    lon                 REAL    NOT NULL,
    original_expired_at INTEGER,
    PRIMARY KEY (upload_id, frame)
);
CREATE INDEX frame_rejections_reason ON frame_rejections (reason, upload_id, frame);
-- What the retention sweep asks: is this blob still needed by anything younger?
CREATE INDEX frame_rejections_blob ON frame_rejections (blob_key);
CREATE INDEX frames_blob ON frames (blob_key);
CREATE INDEX uploads_blob ON uploads (blob_key);
CREATE INDEX uploads_retention ON uploads (received_at) WHERE blob_expired_at IS NULL AND kind = 'drive';
