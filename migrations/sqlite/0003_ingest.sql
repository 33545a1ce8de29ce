-- Ingest (embedded; times as integer microseconds): who may do what (API keys with roles, registered device keys, seen request nonces),
-- resumable upload sessions, and what processing kept and refused: radio observations, camera
-- frames, and every rejected observation with its reason code.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash    TEXT        NOT NULL UNIQUE, -- sha256 of the key; the key itself is never stored
    prefix      TEXT        NOT NULL,        -- its first characters, to tell keys apart in lists
    role        TEXT        NOT NULL CHECK (role IN ('device', 'auditor', 'planner', 'admin')),
    contributor TEXT,
    created_at  INTEGER     NOT NULL,
    revoked_at  INTEGER    
);

CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    public_key    TEXT        NOT NULL, -- ed25519, 32 bytes as hex
    contributor   TEXT,
    registered_by INTEGER      NOT NULL REFERENCES api_keys (id),
    registered_at INTEGER     NOT NULL
);

CREATE TABLE request_nonces (
    device  TEXT        NOT NULL,
    nonce   TEXT        NOT NULL,
    seen_at INTEGER     NOT NULL,
    PRIMARY KEY (device, nonce)
);
CREATE INDEX request_nonces_seen ON request_nonces (seen_at);

ALTER TABLE uploads ADD COLUMN contributor TEXT;
ALTER TABLE uploads ADD COLUMN rewardable INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN observations_accepted INTEGER;
ALTER TABLE uploads ADD COLUMN observations_rejected INTEGER;
CREATE INDEX uploads_contributor ON uploads (contributor, id);

CREATE TABLE rejected_observations (
    upload_id INTEGER NOT NULL REFERENCES uploads (id),
    seq       INTEGER  NOT NULL,
    stage     TEXT   NOT NULL CHECK (stage IN ('fix', 'frame', 'radio')),
    item      INTEGER NOT NULL, -- index of the fix, frame, item or CSV row in the upload
    reason    TEXT   NOT NULL,
    detail    TEXT,
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX rejected_observations_reason ON rejected_observations (reason);

CREATE TABLE radio_observations (
    upload_id    INTEGER           NOT NULL REFERENCES uploads (id),
    seq          INTEGER            NOT NULL,
    observed_at  INTEGER          NOT NULL,
    emitter_kind TEXT             NOT NULL CHECK (emitter_kind IN ('cell', 'wifi', 'bluetooth')),
    radio        TEXT,
    emitter      TEXT             NOT NULL,
    signal_dbm   INTEGER,
    accuracy_m   REAL            ,
    cell         INTEGER           NOT NULL,
    lat          REAL             NOT NULL,
    lon          REAL             NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
CREATE INDEX radio_observations_cell ON radio_observations (cell);
CREATE INDEX radio_observations_emitter ON radio_observations (emitter);
CREATE INDEX radio_observations_pos ON radio_observations (lat, lon);

CREATE TABLE frames (
    upload_id   INTEGER           NOT NULL REFERENCES uploads (id),
    frame       INTEGER            NOT NULL, -- index of the frame in the drive
    sequence    INTEGER            NOT NULL,
    sha256      TEXT             NOT NULL,
    blob_key    TEXT             NOT NULL,
    captured_at INTEGER          NOT NULL,
    heading_deg REAL             NOT NULL,
    width       INTEGER            NOT NULL,
    height      INTEGER            NOT NULL,
    cell        INTEGER           NOT NULL,
    lat         REAL             NOT NULL,
    lon         REAL             NOT NULL,
    PRIMARY KEY (upload_id, frame)
);
CREATE INDEX frames_cell ON frames (cell);
CREATE INDEX frames_pos ON frames (lat, lon);

CREATE TABLE upload_sessions (
    id             TEXT PRIMARY KEY,
    device         TEXT        NOT NULL,
    kind           TEXT        NOT NULL,
    size_bytes     INTEGER      NOT NULL CHECK (size_bytes > 0),
    sha256         TEXT        NOT NULL,
    received_bytes INTEGER      NOT NULL DEFAULT 0,
    created_at     INTEGER     NOT NULL,
    updated_at     INTEGER     NOT NULL
);

CREATE TABLE upload_session_parts (
    session_id   TEXT   NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    offset_bytes INTEGER NOT NULL,
    size_bytes   INTEGER NOT NULL CHECK (size_bytes > 0),
    blob_key     TEXT   NOT NULL,
    PRIMARY KEY (session_id, offset_bytes)
);
