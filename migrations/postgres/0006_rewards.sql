-- Rewards: epochs, their results and the planners' demand areas.
--
-- Closing epoch N tags every processed upload received before N's end that no epoch counted yet
-- (uploads.reward_epoch = N): an upload processed after its epoch closed counts in the next one,
-- never twice and never lost. The epoch's results are written with its manifest in one
-- transaction; the row's status 'closed' is the mark that it is done. 'closing' rows are held by
-- one closer at a time under a lease, as jobs are.
ALTER TABLE uploads ADD COLUMN reward_epoch BIGINT;
CREATE INDEX uploads_reward_epoch ON uploads (reward_epoch);
CREATE INDEX uploads_untagged ON uploads (received_at) WHERE reward_epoch IS NULL;

CREATE TABLE epochs (
    epoch         BIGINT      PRIMARY KEY CHECK (epoch >= 0),
    start_at      TIMESTAMPTZ NOT NULL,
    end_at        TIMESTAMPTZ NOT NULL,
    status        TEXT        NOT NULL CHECK (status IN ('closing', 'closed')),
    claimed_by    TEXT,
    claim_token   TEXT,
    claimed_until TIMESTAMPTZ,
    closed_at     TIMESTAMPTZ,
    policy        TEXT,   -- the policy file's text, to recompute the epoch under its own rules
    policy_hash   TEXT,
    root          TEXT,
    emission      BIGINT,
    distributed   BIGINT,
    unallocated   BIGINT,
    bounty_paid   BIGINT,
    manifest      JSONB
);

CREATE TABLE epoch_rewards (
    epoch       BIGINT  NOT NULL REFERENCES epochs (epoch),
    contributor TEXT    NOT NULL,
    points      BIGINT  NOT NULL,
    base        BIGINT  NOT NULL,
    bounty      BIGINT  NOT NULL,
    amount      BIGINT  NOT NULL,
    cumulative  TEXT    NOT NULL, -- u128 in decimal
    flagged     BOOLEAN NOT NULL,
    PRIMARY KEY (epoch, contributor)
);
CREATE INDEX epoch_rewards_contributor ON epoch_rewards (contributor, epoch);

CREATE TABLE epoch_cells (
    epoch       BIGINT           NOT NULL REFERENCES epochs (epoch),
    cell        BIGINT           NOT NULL,
    captures    BIGINT           NOT NULL,
    radio_units BIGINT           NOT NULL,
    points      BIGINT           NOT NULL,
    amount      BIGINT           NOT NULL,
    weight      DOUBLE PRECISION NOT NULL,
    last_seen   TIMESTAMPTZ,   -- newest capture counted so far: the next epoch's staleness
    PRIMARY KEY (epoch, cell)
);

CREATE INDEX epoch_cells_cell ON epoch_cells (cell, epoch);

CREATE TABLE epoch_penalties (
    epoch       BIGINT NOT NULL REFERENCES epochs (epoch),
    contributor TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    PRIMARY KEY (epoch, contributor)
);

CREATE TABLE demand_areas (
    id             BIGSERIAL        PRIMARY KEY,
    name           TEXT             NOT NULL,
    weight         DOUBLE PRECISION NOT NULL CHECK (weight >= 0),
    polygon        JSONB            NOT NULL, -- the GeoJSON geometry the planner drew
    created_by     BIGINT           REFERENCES api_keys (id),
    created_at     TIMESTAMPTZ      NOT NULL,
    expires_at     TIMESTAMPTZ,
    budget         BIGINT           CHECK (budget > 0),
    refunded       BIGINT,
    refunded_epoch BIGINT
);

CREATE TABLE demand_cells (
    area_id BIGINT           NOT NULL REFERENCES demand_areas (id),
    cell    BIGINT           NOT NULL,
    lat     DOUBLE PRECISION NOT NULL,
    lon     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (area_id, cell)
);
CREATE INDEX demand_cells_cell ON demand_cells (cell);
CREATE INDEX demand_cells_pos ON demand_cells (lat, lon);

CREATE TABLE bounty_claims (
    area_id     BIGINT NOT NULL REFERENCES demand_areas (id),
    cell        BIGINT NOT NULL,
    epoch       BIGINT NOT NULL REFERENCES epochs (epoch),
    contributor TEXT   NOT NULL,
    claimed     BIGINT NOT NULL,
    paid        BIGINT NOT NULL,
    PRIMARY KEY (area_id, cell)
);

-- Map consumers' requests per epoch and area (an H3 cell at the policy's usage resolution):
-- the usage demand of the next epoch.
CREATE TABLE usage_counts (
    epoch    BIGINT NOT NULL,
    area     BIGINT NOT NULL,
    requests BIGINT NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (epoch, area)
);
