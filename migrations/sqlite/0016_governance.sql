-- Governance (times are microseconds since 1970): the policy in force is the database's, the same for every process. Epoch
-- `from_epoch` onwards closes under `source` until a later row; the row at 0 is the genesis
-- policy, seeded by the first process that starts on an empty schedule. Later rows come only
-- from passed proposals.
CREATE TABLE policy_schedule (
    from_epoch  BIGINT PRIMARY KEY CHECK (from_epoch >= 0),
    policy_hash TEXT        NOT NULL,
    version     INTEGER     NOT NULL,
    source      TEXT        NOT NULL,
    proposal    BIGINT,     -- the proposal that brought it in; NULL for genesis
    recorded_at INTEGER NOT NULL
);

-- A proposed policy, the rules it is voted under (the [governance] section of the policy in
-- force when it was made), its simulated effect on the last closed epochs, and, once its vote
-- closed, the result.
CREATE TABLE policy_proposals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    title           TEXT        NOT NULL,
    rationale       TEXT        NOT NULL,
    source          TEXT        NOT NULL,
    policy_hash     TEXT        NOT NULL,
    version         INTEGER     NOT NULL,
    proposed_by     TEXT        NOT NULL,
    proposed_at     INTEGER NOT NULL,
    base_hash       TEXT        NOT NULL,   -- the policy in force it amends
    voting_rules    TEXT        NOT NULL,   -- JSON
    electorate_from BIGINT,                 -- epochs whose rewards drew the electorate
    electorate_to   BIGINT,
    simulation      TEXT        NOT NULL,   -- JSON
    voting_ends_at  INTEGER NOT NULL,
    decided_at      INTEGER,
    outcome         TEXT CHECK (outcome IN ('passed', 'failed', 'superseded')),
    tally           TEXT,                   -- JSON
    activates_epoch BIGINT
);
CREATE INDEX policy_proposals_undecided ON policy_proposals (voting_ends_at, id)
    WHERE decided_at IS NULL;

-- Who may vote on a proposal and what their vote weighs, fixed when it is made.
CREATE TABLE policy_electorate (
    proposal    BIGINT NOT NULL REFERENCES policy_proposals (id),
    contributor TEXT   NOT NULL,
    weight      BIGINT NOT NULL CHECK (weight > 0),
    PRIMARY KEY (proposal, contributor)
);

-- Every ballot as it was signed: the request a device signed (covermap-signature-v2 over the
-- method, path, body, time and nonce), kept whole so anyone can check it with the public key.
-- A contributor's last ballot before the vote closed counts.
CREATE TABLE policy_votes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal    BIGINT      NOT NULL REFERENCES policy_proposals (id),
    contributor TEXT        NOT NULL,
    device      TEXT        NOT NULL,
    public_key  TEXT        NOT NULL,
    choice      TEXT        NOT NULL CHECK (choice IN ('yes', 'no', 'abstain')),
    method      TEXT        NOT NULL,
    path        TEXT        NOT NULL,
    body        TEXT        NOT NULL,
    signed_at   BIGINT      NOT NULL,
    nonce       TEXT        NOT NULL,
    signature   TEXT        NOT NULL,
    cast_at     INTEGER NOT NULL
);
CREATE INDEX policy_votes_proposal ON policy_votes (proposal, id);
