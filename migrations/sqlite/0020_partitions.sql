-- PostGIS keeps its six high-volume tables in month partitions (migrations/postgres/0020); the
-- embedded store keeps one table each, and never detaches any; it has the table of detached
-- months' derivatives all the same, empty, for the queries both backends share.
-- The published and review derivatives of detached months' frames: an erasure of their upload
-- still finds them here and deletes them, though the frames' rows are outside covermap.
CREATE TABLE detached_blobs (
    upload_id INTEGER NOT NULL,
    key       TEXT   NOT NULL,
    PRIMARY KEY (upload_id, key)
);
CREATE INDEX detached_blobs_key ON detached_blobs (key);
