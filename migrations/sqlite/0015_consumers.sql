-- Map consumers (issue 18), embedded (times as integer microseconds, days as 'YYYY-MM-DD'):
-- keys of a `consumer` role with a quota of requests per UTC day, their use per day and per
-- area, and the lookers that usage demand counts.

-- api_keys' CHECK on role cannot be altered in SQLite: the table is rebuilt the way 0009
-- rebuilt uploads. The references to it (devices, frame_decisions, demand_areas) are deferred: the
-- old rows are copied aside, the table dropped, and the new table gets the same ids back.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE api_keys_before_0015 AS SELECT * FROM api_keys;
CREATE TEMP TABLE api_keys_sequence_0015 AS
    SELECT seq FROM sqlite_sequence WHERE name = 'api_keys';
DROP TABLE api_keys;

CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash      TEXT    NOT NULL UNIQUE, -- sha256 of the key; the key itself is never stored
    prefix        TEXT    NOT NULL,        -- its first characters, to tell keys apart in lists
    role          TEXT    NOT NULL
                  CHECK (role IN ('device', 'auditor', 'planner', 'admin', 'consumer')),
    contributor   TEXT,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    -- Requests per UTC day a consumer key may make; consumer keys have one, other keys none.
    quota_per_day INTEGER CHECK (quota_per_day > 0),
    CHECK ((role = 'consumer') = (quota_per_day IS NOT NULL))
);
INSERT INTO api_keys (id, key_hash, prefix, role, contributor, created_at, revoked_at)
SELECT id, key_hash, prefix, role, contributor, created_at, revoked_at
FROM temp.api_keys_before_0015 ORDER BY id;
-- AUTOINCREMENT never hands out an id again, even of a row deleted since: keep its high mark.
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM temp.api_keys_sequence_0015), 0))
WHERE name = 'api_keys';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'api_keys', seq FROM temp.api_keys_sequence_0015
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'api_keys');
DROP TABLE temp.api_keys_before_0015;
DROP TABLE temp.api_keys_sequence_0015;

-- Requests a consumer key made on a UTC day: what its quota is checked against, after a
-- restart too.
CREATE TABLE consumer_usage (
    key_id   INTEGER NOT NULL REFERENCES api_keys (id),
    day      TEXT    NOT NULL,
    requests INTEGER NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (key_id, day)
);

-- The same requests by the area (an H3 cell at the policy's usage resolution) they looked at,
-- where they looked at one.
CREATE TABLE consumer_area_usage (
    key_id   INTEGER NOT NULL REFERENCES api_keys (id),
    day      TEXT    NOT NULL,
    area     INTEGER NOT NULL,
    requests INTEGER NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (key_id, day, area)
);

-- Who looked at an area in an epoch, once each: a consumer key (`key:ID`) or an anonymous
-- client network (`addr:` and a hash of it). usage_counts.requests is derived from these rows —
-- the keys, plus the anonymous lookers up to a cap — so refreshing a map, restarting a server
-- or a farm of addresses cannot raise it. (The count of the epoch in progress when this ran is
-- recomputed from its lookers at the next look.)
CREATE TABLE usage_lookers (
    epoch     INTEGER NOT NULL,
    area      INTEGER NOT NULL,
    looker    TEXT    NOT NULL,
    anonymous INTEGER NOT NULL,
    PRIMARY KEY (epoch, area, looker)
);
