-- Identity. A public key belongs to one device, once and for ever: device_keys holds every key
-- ever registered or rotated to, so a key that was rotated away or revoked is never registered
-- again, for any device. Devices can be rotated (rotated_at) and revoked (revoked_at). The same
-- bytes sent by two devices are two uploads: uploads.sha256 is unique per device only, and
-- copy_of names the earliest upload of those bytes by another device (a suspicious event for
-- the trust stage, not a duplicate).
CREATE TABLE device_keys (
    public_key TEXT PRIMARY KEY,  -- ed25519, 32 bytes as lowercase hex
    device     TEXT        NOT NULL REFERENCES devices (device),
    added_at   TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ        -- rotated away or revoked: it signs nothing any more
);
CREATE INDEX device_keys_device ON device_keys (device);

ALTER TABLE devices ADD COLUMN rotated_at TIMESTAMPTZ;
ALTER TABLE devices ADD COLUMN revoked_at TIMESTAMPTZ;
CREATE INDEX devices_contributor ON devices (contributor, device);
CREATE INDEX devices_registered_by ON devices (registered_by, device);

-- The keys in use. Earlier releases let a second device register a key already registered (the
-- clone attack of issue 14): the first registration keeps the key, the later ones are revoked.
INSERT INTO device_keys (public_key, device, added_at)
SELECT DISTINCT ON (public_key) public_key, device, registered_at
FROM devices ORDER BY public_key, registered_at, device;
UPDATE devices SET revoked_at = now()
WHERE device NOT IN (SELECT device FROM device_keys);

ALTER TABLE uploads DROP CONSTRAINT uploads_sha256_key;
ALTER TABLE uploads ADD CONSTRAINT uploads_device_sha256_key UNIQUE (device, sha256);
-- The earliest upload of the same bytes by another device, when there was one.
ALTER TABLE uploads ADD COLUMN copy_of BIGINT REFERENCES uploads (id);
CREATE INDEX uploads_sha256 ON uploads (sha256, id);
