-- Rewards: epochs, their results and the planners' demand areas.
--
-- Closing epoch N tags every processed upload received before N's end that no epoch counted yet
-- (uploads.reward_epoch = N): an upload processed after its epoch closed counts in the next one,
-- never twice and never lost. The epoch's results are written with its manifest in one
-- transaction; the row's status 'closed' is the mark that it is done. 'closing' rows are held by
-- one closer at a time under a lease, as jobs are.
ALTER TABLE uploads ADD COLUMN reward_epoch INTEGER;
CREATE INDEX uploads_reward_epoch ON uploads (reward_epoch);
CREATE INDEX uploads_untagged ON uploads (received_at) WHERE reward_epoch IS NULL;

CREATE TABLE epochs (
    epoch         INTEGER  PRIMARY KEY CHECK (epoch >= 0),
    start_at      INTEGER NOT NULL,
    end_at        INTEGER NOT NULL,
    status        TEXT        NOT NULL CHECK (status IN ('closing', 'closed')),
    claimed_by    TEXT,
    claim_token   TEXT,
    claimed_until INTEGER,
    closed_at     INTEGER,
    policy        TEXT,   -- the policy file's text, to recompute the epoch under its own rules
    policy_hash   TEXT,
    root          TEXT,
    emission      INTEGER,
    distributed   INTEGER,
    unallocated   INTEGER,
    bounty_paid   INTEGER,
    manifest      TEXT
);

CREATE TABLE epoch_rewards (
    epoch       INTEGER  NOT NULL REFERENCES epochs (epoch),
    contributor TEXT    NOT NULL,
    points      INTEGER  NOT NULL,
    base        INTEGER  NOT NULL,
    bounty      INTEGER  NOT NULL,
    amount      INTEGER  NOT NULL,
    cumulative  TEXT    NOT NULL, -- u128 in decimal
    flagged     INTEGER NOT NULL,
    PRIMARY KEY (epoch, contributor)
);
CREATE INDEX epoch_rewards_contributor ON epoch_rewards (contributor, epoch);

CREATE TABLE epoch_cells (
    epoch       INTEGER       NOT NULL REFERENCES epochs (epoch),
    cell        INTEGER       NOT NULL,
    captures    INTEGER       NOT NULL,
    radio_units INTEGER       NOT NULL,
    points      INTEGER       NOT NULL,
    amount      INTEGER       NOT NULL,
    weight      REAL             NOT NULL,
    last_seen   INTEGER,   -- newest capture counted so far: the next epoch's staleness
    PRIMARY KEY (epoch, cell)
);

CREATE INDEX epoch_cells_cell ON epoch_cells (cell, epoch);

CREATE TABLE epoch_penalties (
    epoch       INTEGER NOT NULL REFERENCES epochs (epoch),
    contributor TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    PRIMARY KEY (epoch, contributor)
);

CREATE TABLE demand_areas (
    id             INTEGER      PRIMARY KEY AUTOINCREMENT,
    name           TEXT             NOT NULL,
    weight         REAL             NOT NULL CHECK (weight >= 0),
    polygon        TEXT             NOT NULL, -- the GeoJSON geometry the planner drew
    created_by     INTEGER       REFERENCES api_keys (id),
    created_at     INTEGER      NOT NULL,
    expires_at     INTEGER,
    budget         INTEGER       CHECK (budget > 0),
    refunded       INTEGER,
    refunded_epoch INTEGER
);

CREATE TABLE demand_cells (
    area_id INTEGER       NOT NULL REFERENCES demand_areas (id),
    cell    INTEGER       NOT NULL,
    lat     REAL             NOT NULL,
    lon     REAL             NOT NULL,
    PRIMARY KEY (area_id, cell)
);
CREATE INDEX demand_cells_cell ON demand_cells (cell);
CREATE INDEX demand_cells_pos ON demand_cells (lat, lon);

CREATE TABLE bounty_claims (
    area_id     INTEGER NOT NULL REFERENCES demand_areas (id),
    cell        INTEGER NOT NULL,
    epoch       INTEGER NOT NULL REFERENCES epochs (epoch),
    contributor TEXT   NOT NULL,
    claimed     INTEGER NOT NULL,
    paid        INTEGER NOT NULL,
    PRIMARY KEY (area_id, cell)
);

-- Map consumers' requests per epoch and area (an H3 cell at the policy's usage resolution):
-- the usage demand of the next epoch.
CREATE TABLE usage_counts (
    epoch    INTEGER NOT NULL,
    area     INTEGER NOT NULL,
    requests INTEGER NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (epoch, area)
);
