-- Trust: what the trust stage measured of each upload (its evidence), its verdict and the
-- findings behind it, and what later uploads are compared with. A flagged upload keeps its rows
-- (the evidence auditors look at), but every map and every epoch leaves it out. The worker
-- writes a provisional verdict with the upload's results; the close of the epoch that counts the
-- upload writes the final one (trust_epoch).
ALTER TABLE uploads ADD COLUMN trust TEXT NOT NULL DEFAULT 'pending'
    CHECK (trust IN ('pending', 'trusted', 'flagged'));
ALTER TABLE uploads ADD COLUMN trust_findings TEXT;      -- JSON array of {code, detail}
ALTER TABLE uploads ADD COLUMN evidence TEXT;            -- JSON: covermap_trust::Evidence
ALTER TABLE uploads ADD COLUMN trust_epoch BIGINT;       -- the epoch whose close made it final
ALTER TABLE uploads ADD COLUMN trust_changed_at TIMESTAMPTZ;
ALTER TABLE uploads ADD COLUMN cells_seen BIGINT;        -- cells it touched; `cells` is what it credits
CREATE INDEX uploads_flagged ON uploads (id) WHERE trust = 'flagged';
-- A sighting an epoch's close did not count (its emitter heard by nobody else, or out of place)
-- is left off the radio map; NULL until its epoch closes.
ALTER TABLE radio_observations ADD COLUMN counted BOOLEAN;
CREATE INDEX uploads_trust_changed ON uploads (trust_changed_at);

-- Where and when each processed upload lay, to find the uploads of the same device or
-- contributor just before and after it, and parked batches near it.
CREATE TABLE upload_extents (
    upload_id   BIGINT PRIMARY KEY REFERENCES uploads (id),
    device      TEXT             NOT NULL,
    contributor TEXT,
    radio       BOOLEAN          NOT NULL,
    first_at    TIMESTAMPTZ      NOT NULL,
    last_at     TIMESTAMPTZ      NOT NULL,
    first_lat   DOUBLE PRECISION NOT NULL,
    first_lon   DOUBLE PRECISION NOT NULL,
    last_lat    DOUBLE PRECISION NOT NULL,
    last_lon    DOUBLE PRECISION NOT NULL,
    centre_lat  DOUBLE PRECISION NOT NULL,
    centre_lon  DOUBLE PRECISION NOT NULL,
    radius_m    DOUBLE PRECISION NOT NULL
);
CREATE INDEX upload_extents_device ON upload_extents (device, first_at);
CREATE INDEX upload_extents_contributor ON upload_extents (contributor, first_at);

-- A compact copy of each processed track (a point every two seconds), to find replays of it.
CREATE TABLE track_prints (
    upload_id BIGINT PRIMARY KEY REFERENCES uploads (id),
    points    TEXT NOT NULL
);

-- Uploads refused outright (nothing usable, a physically impossible track) with who sent them:
-- a refusal counts against its contributor in the epoch it arrived in.
CREATE TABLE upload_refusals (
    id          BIGSERIAL PRIMARY KEY,
    device      TEXT        NOT NULL,
    contributor TEXT,
    kind        TEXT        NOT NULL,
    sha256      TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    detail      TEXT,
    -- Where its first and last timed fixes lay, for a track: a device's timeline includes what
    -- it sent that was refused.
    first_at    TIMESTAMPTZ,
    last_at     TIMESTAMPTZ,
    first_lat   DOUBLE PRECISION,
    first_lon   DOUBLE PRECISION,
    last_lat    DOUBLE PRECISION,
    last_lon    DOUBLE PRECISION,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX upload_refusals_received ON upload_refusals (received_at);

-- Where each epoch's close placed the emitters heard in it, and who heard them: the next
-- epoch's known sites.
CREATE TABLE emitter_sites (
    emitter       TEXT             NOT NULL,
    epoch         BIGINT           NOT NULL,
    lat           DOUBLE PRECISION NOT NULL,
    lon           DOUBLE PRECISION NOT NULL,
    frequency_mhz DOUBLE PRECISION NOT NULL,
    samples       BIGINT           NOT NULL,
    observers     TEXT             NOT NULL, -- contributors, comma-separated, sorted
    radius_m      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (emitter, epoch)
);
