-- Map consumers (issue 18): keys of a `consumer` role with a quota of requests per UTC day,
-- their use per day and per area, and the lookers that usage demand counts.

ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('device', 'auditor', 'planner', 'admin', 'consumer'));
-- Requests per UTC day a consumer key may make; consumer keys have one, other keys none.
ALTER TABLE api_keys ADD COLUMN quota_per_day BIGINT CHECK (quota_per_day > 0);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_quota_is_consumers
    CHECK ((role = 'consumer') = (quota_per_day IS NOT NULL));

-- Requests a consumer key made on a UTC day: what its quota is checked against, after a
-- restart too.
CREATE TABLE consumer_usage (
    key_id   BIGINT NOT NULL REFERENCES api_keys (id),
    day      DATE   NOT NULL,
    requests BIGINT NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (key_id, day)
);

-- The same requests by the area (an H3 cell at the policy's usage resolution) they looked at,
-- where they looked at one.
CREATE TABLE consumer_area_usage (
    key_id   BIGINT NOT NULL REFERENCES api_keys (id),
    day      DATE   NOT NULL,
    area     BIGINT NOT NULL,
    requests BIGINT NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (key_id, day, area)
);

-- Who looked at an area in an epoch, once each: a consumer key (`key:ID`) or an anonymous
-- client network (`addr:` and a hash of it). usage_counts.requests is derived from these rows —
-- the keys, plus the anonymous lookers up to a cap — so refreshing a map, restarting a server
-- or a farm of addresses cannot raise it. (The count of the epoch in progress when this ran is
-- recomputed from its lookers at the next look.)
CREATE TABLE usage_lookers (
    epoch     BIGINT  NOT NULL,
    area      BIGINT  NOT NULL,
    looker    TEXT    NOT NULL,
    anonymous BOOLEAN NOT NULL,
    PRIMARY KEY (epoch, area, looker)
);
