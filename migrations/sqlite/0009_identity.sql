-- Identity (embedded; times as integer microseconds). A public key belongs to one device, once
-- and for ever: device_keys holds every key ever registered or rotated to, so a key that was
-- rotated away or revoked is never registered again, for any device. Devices can be rotated
-- (rotated_at) and revoked (revoked_at). The same bytes sent by two devices are two uploads:
-- uploads.sha256 is unique per device only, and copy_of names the earliest upload of those
-- bytes by another device (a suspicious event for the trust stage, not a duplicate).
CREATE TABLE device_keys (
    public_key TEXT PRIMARY KEY,  -- ed25519, 32 bytes as lowercase hex
    device     TEXT    NOT NULL REFERENCES devices (device),
    added_at   INTEGER NOT NULL,
    retired_at INTEGER           -- rotated away or revoked: it signs nothing any more
);
CREATE INDEX device_keys_device ON device_keys (device);

ALTER TABLE devices ADD COLUMN rotated_at INTEGER;
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
CREATE INDEX devices_contributor ON devices (contributor, device);
CREATE INDEX devices_registered_by ON devices (registered_by, device);

-- The keys in use. Earlier releases let a second device register a key already registered (the
-- clone attack of issue 14): the first registration keeps the key, the later ones are revoked.
INSERT INTO device_keys (public_key, device, added_at)
SELECT d.public_key, d.device, d.registered_at FROM devices d
WHERE NOT EXISTS (
    SELECT 1 FROM devices e
    WHERE e.public_key = d.public_key
      AND (e.registered_at < d.registered_at
           OR (e.registered_at = d.registered_at AND e.device < d.device)));
UPDATE devices SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000000
WHERE device NOT IN (SELECT device FROM device_keys);

-- uploads.sha256 was UNIQUE, and SQLite cannot drop a column's UNIQUE: the table is rebuilt.
-- sqlx runs this file inside a transaction, where foreign_keys cannot be switched off, so the
-- references to uploads are deferred instead: the old table is copied aside and dropped (its
-- rows' children count as violations), and the new table of the same name gets the same ids
-- back (which clears them). Anything left dangling fails the COMMIT, and nothing changes. No
-- RENAME is used, so the other tables' REFERENCES uploads (id) stay as they are.
PRAGMA defer_foreign_keys = ON;
-- Every child table is searched by upload_id for each row moved; jobs had no index for it.
CREATE INDEX jobs_upload ON jobs (upload_id);

CREATE TEMP TABLE uploads_before_0009 AS SELECT * FROM uploads;
CREATE TEMP TABLE uploads_sequence_0009 AS
    SELECT seq FROM sqlite_sequence WHERE name = 'uploads';
DROP TABLE uploads;

CREATE TABLE uploads (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    device                TEXT    NOT NULL,
    kind                  TEXT    NOT NULL,
    sha256                TEXT    NOT NULL,
    size_bytes            INTEGER NOT NULL CHECK (size_bytes >= 0),
    blob_key              TEXT    NOT NULL,
    received_at           INTEGER NOT NULL,
    status                TEXT    NOT NULL DEFAULT 'queued'
                          CHECK (status IN ('queued', 'processed', 'rejected')),
    reason                TEXT,
    fixes_accepted        INTEGER,
    fixes_rejected        INTEGER,
    cells                 INTEGER,
    processed_at          INTEGER,
    matched_m             REAL,
    contributor           TEXT,
    rewardable            INTEGER NOT NULL DEFAULT 0,
    observations_accepted INTEGER,
    observations_rejected INTEGER,
    blob_expired_at       INTEGER,
    reward_epoch          INTEGER,
    -- The earliest upload of the same bytes by another device, when there was one.
    copy_of               INTEGER REFERENCES uploads (id),
    UNIQUE (device, sha256)
);
INSERT INTO uploads (id, device, kind, sha256, size_bytes, blob_key, received_at, status, reason,
                     fixes_accepted, fixes_rejected, cells, processed_at, matched_m, contributor,
                     rewardable, observations_accepted, observations_rejected, blob_expired_at,
                     reward_epoch)
SELECT id, device, kind, sha256, size_bytes, blob_key, received_at, status, reason,
       fixes_accepted, fixes_rejected, cells, processed_at, matched_m, contributor, rewardable,
       observations_accepted, observations_rejected, blob_expired_at, reward_epoch
FROM temp.uploads_before_0009 ORDER BY id;
-- AUTOINCREMENT never hands out an id again, even of a row deleted since: keep its high mark.
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM temp.uploads_sequence_0009), 0))
WHERE name = 'uploads';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'uploads', seq FROM temp.uploads_sequence_0009
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'uploads');
DROP TABLE temp.uploads_before_0009;
DROP TABLE temp.uploads_sequence_0009;

CREATE INDEX uploads_device ON uploads (device, received_at);
CREATE INDEX uploads_contributor ON uploads (contributor, id);
CREATE INDEX uploads_blob ON uploads (blob_key);
CREATE INDEX uploads_retention ON uploads (received_at) WHERE blob_expired_at IS NULL AND kind = 'drive';
CREATE INDEX uploads_reward_epoch ON uploads (reward_epoch);
CREATE INDEX uploads_untagged ON uploads (received_at) WHERE reward_epoch IS NULL;
CREATE INDEX uploads_processed ON uploads (processed_at);
CREATE INDEX uploads_sha256 ON uploads (sha256, id);
