-- Ingest: who may do what (API keys with roles, registered device keys, seen request nonces),
-- resumable upload sessions, and what processing kept and refused: radio observations, camera
-- frames, and every rejected observation with its reason code.
CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    key_hash    TEXT        NOT NULL UNIQUE, -- sha256 of the key; the key itself is never stored
    prefix      TEXT        NOT NULL,        -- its first characters, to tell keys apart in lists
    role        TEXT        NOT NULL CHECK (role IN ('device', 'auditor', 'planner', 'admin')),
    contributor TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    public_key    TEXT        NOT NULL, -- ed25519, 32 bytes as hex
    contributor   TEXT,
    registered_by BIGINT      NOT NULL REFERENCES api_keys (id),
    registered_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE request_nonces (
    device  TEXT        NOT NULL,
    nonce   TEXT        NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device, nonce)
);
CREATE INDEX request_nonces_seen ON request_nonces (seen_at);

ALTER TABLE uploads ADD COLUMN contributor TEXT;
ALTER TABLE uploads ADD COLUMN rewardable BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE uploads ADD COLUMN observations_accepted BIGINT;
ALTER TABLE uploads ADD COLUMN observations_rejected BIGINT;
CREATE INDEX uploads_contributor ON uploads (contributor, id);

CREATE TABLE rejected_observations (
    upload_id BIGINT NOT NULL REFERENCES uploads (id),
    seq       INT    NOT NULL,
    stage     TEXT   NOT NULL CHECK (stage IN ('fix', 'frame', 'radio')),
    item      BIGINT NOT NULL, -- index of the fix, frame, item or CSV row in the upload
    reason    TEXT   NOT NULL,
    detail    TEXT,
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX rejected_observations_reason ON rejected_observations (reason);

CREATE TABLE radio_observations (
    upload_id    BIGINT           NOT NULL REFERENCES uploads (id),
    seq          INT              NOT NULL,
    observed_at  TIMESTAMPTZ      NOT NULL,
    emitter_kind TEXT             NOT NULL CHECK (emitter_kind IN ('cell', 'wifi', 'bluetooth')),
    radio        TEXT,
    emitter      TEXT             NOT NULL,
    signal_dbm   INT,
    accuracy_m   DOUBLE PRECISION,
    cell         BIGINT           NOT NULL,
    geom         geometry(Point, 4326) NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX radio_observations_cell ON radio_observations (cell);
CREATE INDEX radio_observations_emitter ON radio_observations (emitter);
CREATE INDEX radio_observations_geom ON radio_observations USING GIST (geom);

CREATE TABLE frames (
    upload_id   BIGINT           NOT NULL REFERENCES uploads (id),
    frame       INT              NOT NULL, -- index of the frame in the drive
    sequence    INT              NOT NULL,
    sha256      TEXT             NOT NULL,
    blob_key    TEXT             NOT NULL,
    captured_at TIMESTAMPTZ      NOT NULL,
    heading_deg DOUBLE PRECISION NOT NULL,
    width       INT              NOT NULL,
    height      INT              NOT NULL,
    cell        BIGINT           NOT NULL,
    geom        geometry(Point, 4326) NOT NULL,
    PRIMARY KEY (upload_id, frame)
);
CREATE INDEX frames_cell ON frames (cell);
CREATE INDEX frames_geom ON frames USING GIST (geom);

CREATE TABLE upload_sessions (
    id             TEXT PRIMARY KEY,
    device         TEXT        NOT NULL,
    kind           TEXT        NOT NULL,
    size_bytes     BIGINT      NOT NULL CHECK (size_bytes > 0),
    sha256         TEXT        NOT NULL,
    received_bytes BIGINT      NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE upload_session_parts (
    session_id   TEXT   NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    offset_bytes BIGINT NOT NULL,
    size_bytes   BIGINT NOT NULL CHECK (size_bytes > 0),
    blob_key     TEXT   NOT NULL,
    PRIMARY KEY (session_id, offset_bytes)
);
