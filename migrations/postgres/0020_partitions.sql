-- Time partitions, and a schema Citus can distribute by cell.
--
-- The six high-volume tables (cell_observations, radio_observations, frames, frame_rejections,
-- matched_stretches, rejected_observations) are partitioned by month of `received_at`: when
-- their upload was received (copied from `uploads`, the same for every row of an upload, so a
-- second write of a job's rows still collides with the first). Each month is its own table,
-- `<table>_pYYYYMM` (UTC months), created ahead by covermap_ensure_partitions, which every
-- covermap process calls when it opens the database and its sweeper calls every minute after;
-- `<table>_default` catches a row no month was made for (a clock far off), and the next ensure
-- moves such rows into their month. Old months can be detached (`covermap db partitions
-- --detach-before`) and archived or dropped without rewriting the rest.
--
-- So that a Citus deployment can distribute five of these tables by `cell` (see the README),
-- their unique keys hold `cell` as well as `received_at`, and they no longer reference `uploads`,
-- `frame_decisions` or each other: the writers check what the keys used to (a decision is
-- recorded only for a refused frame read under FOR UPDATE in the same transaction; rows are
-- written for an upload under its job's lease). `rejected_observations` goes with its upload
-- (by `upload_id`) and keeps its reference to `uploads`.
--
-- Existing rows are copied into the partitioned tables in this migration (one transaction).

CREATE FUNCTION covermap_partitioned_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['cell_observations', 'radio_observations', 'frames', 'frame_rejections',
                 'matched_stretches', 'rejected_observations']
$$;

-- Makes sure each partitioned table has its month for `at` and the `months_ahead` months after
-- it (UTC), moving any rows of those months out of the default partition first; returns how many
-- partitions it made. Takes a transaction-scoped advisory lock, so processes starting together
-- take turns.
CREATE FUNCTION covermap_ensure_partitions(at timestamptz, months_ahead int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t       text;
    i       int;
    month   timestamp;
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    waiting bigint;
    made    int := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('covermap_ensure_partitions'));
    FOREACH t IN ARRAY covermap_partitioned_tables() LOOP
        FOR i IN 0..months_ahead LOOP
            month := date_trunc('month', at AT TIME ZONE 'UTC') + make_interval(months => i);
            part := format('%s_p%s', t, to_char(month, 'YYYYMM'));
            CONTINUE WHEN to_regclass(part) IS NOT NULL;
            lo := month AT TIME ZONE 'UTC';
            hi := (month + interval '1 month') AT TIME ZONE 'UTC';
            EXECUTE format('SELECT count(*) FROM %I WHERE received_at >= $1 AND received_at < $2',
                           t || '_default') INTO waiting USING lo, hi;
            IF waiting = 0 THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, t, lo, hi);
            ELSE
                EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                               part, t);
                EXECUTE format('WITH moved AS (DELETE FROM %I WHERE received_at >= $1 '
                               'AND received_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
                               t || '_default', part) USING lo, hi;
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               t, part, lo, hi);
            END IF;
            made := made + 1;
        END LOOP;
    END LOOP;
    RETURN made;
END $$;

-- The published and review derivatives of detached months' frames: an erasure of their upload
-- still finds them here and deletes them, though the frames' rows are outside covermap.
CREATE TABLE detached_blobs (
    upload_id BIGINT NOT NULL,
    key       TEXT   NOT NULL,
    PRIMARY KEY (upload_id, key)
);
CREATE INDEX detached_blobs_key ON detached_blobs (key);

-- The change feed's triggers and the decision log's reference go with the old tables.
ALTER TABLE frame_decisions DROP CONSTRAINT frame_decisions_upload_id_frame_fkey;

-- Each table anew, partitioned, with a default partition; a month for every month uploads were
-- received in so far and this one and the next three; the rows copied with their upload's
-- `received_at`; the old table dropped (its triggers go with it).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY covermap_partitioned_tables() LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_unpartitioned');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, '
                       'received_at TIMESTAMPTZ NOT NULL) PARTITION BY RANGE (received_at)',
                       t, t || '_unpartitioned');
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t || '_default', t);
    END LOOP;
END $$;

SELECT covermap_ensure_partitions(month AT TIME ZONE 'UTC', 0)
FROM generate_series(
    date_trunc('month', (SELECT COALESCE(min(received_at), now()) FROM uploads) AT TIME ZONE 'UTC'),
    date_trunc('month', now() AT TIME ZONE 'UTC'),
    interval '1 month') AS g(month);
SELECT covermap_ensure_partitions(now(), 3);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY covermap_partitioned_tables() LOOP
        EXECUTE format('INSERT INTO %I SELECT o.*, u.received_at FROM %I o '
                       'JOIN uploads u ON u.id = o.upload_id', t, t || '_unpartitioned');
        EXECUTE format('DROP TABLE %I', t || '_unpartitioned');
    END LOOP;
END $$;

-- Keys and indexes, as before, each unique key with `cell` and `received_at` added.
ALTER TABLE cell_observations ADD PRIMARY KEY (upload_id, cell, received_at);
CREATE INDEX cell_observations_cell ON cell_observations (cell);
CREATE INDEX cell_observations_geom ON cell_observations USING GIST (geom);

ALTER TABLE radio_observations ADD PRIMARY KEY (upload_id, seq, cell, received_at);
CREATE INDEX radio_observations_cell ON radio_observations (cell);
CREATE INDEX radio_observations_emitter ON radio_observations (emitter);
CREATE INDEX radio_observations_geom ON radio_observations USING GIST (geom);

ALTER TABLE frames ADD PRIMARY KEY (upload_id, frame, cell, received_at);
CREATE INDEX frames_cell ON frames (cell);
CREATE INDEX frames_geom ON frames USING GIST (geom);
CREATE INDEX frames_segment ON frames (osm_way_id, way_piece) WHERE osm_way_id IS NOT NULL;
CREATE INDEX frames_blob ON frames (blob_key);
CREATE INDEX frames_approved ON frames (decision_id) WHERE decision_id IS NOT NULL;
CREATE INDEX frames_pending ON frames (upload_id, frame) WHERE status = 'pending';
CREATE INDEX frames_judged_late ON frames (judged_at) WHERE judged_at IS NOT NULL;
CREATE INDEX frames_late_reward_epoch ON frames (reward_epoch) WHERE reward_epoch IS NOT NULL;
CREATE INDEX frames_published_key ON frames (published_key) WHERE published_key IS NOT NULL;

ALTER TABLE frame_rejections ADD PRIMARY KEY (upload_id, frame, cell, received_at);
CREATE INDEX frame_rejections_reason ON frame_rejections (reason, upload_id, frame);
CREATE INDEX frame_rejections_blob ON frame_rejections (blob_key);
CREATE INDEX frame_rejections_reward_epoch ON frame_rejections (reward_epoch)
    WHERE reward_epoch IS NOT NULL;
CREATE INDEX frame_rejections_review ON frame_rejections (review_key) WHERE review_key IS NOT NULL;

ALTER TABLE matched_stretches ADD PRIMARY KEY (upload_id, seq, cell, received_at);
CREATE INDEX matched_stretches_cell ON matched_stretches (cell);
CREATE INDEX matched_stretches_way ON matched_stretches (osm_way_id, way_piece);

ALTER TABLE rejected_observations ADD PRIMARY KEY (upload_id, seq, received_at);
ALTER TABLE rejected_observations ADD FOREIGN KEY (upload_id) REFERENCES uploads (id);
CREATE INDEX rejected_observations_reason ON rejected_observations (reason);

-- The change feed, as migrations 0017-0019 left it: statement-level triggers on the partitioned
-- tables see the rows of every partition in their transition tables.
CREATE TRIGGER cell_observations_inserted AFTER INSERT ON cell_observations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER cell_observations_deleted AFTER DELETE ON cell_observations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER radio_observations_inserted AFTER INSERT ON radio_observations
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER radio_observations_deleted AFTER DELETE ON radio_observations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER radio_observations_updated AFTER UPDATE ON radio_observations
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_updated();
CREATE TRIGGER frames_inserted AFTER INSERT ON frames
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER frames_deleted AFTER DELETE ON frames
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER frames_updated AFTER UPDATE ON frames
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_updated();
CREATE TRIGGER matched_stretches_inserted AFTER INSERT ON matched_stretches
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER matched_stretches_deleted AFTER DELETE ON matched_stretches
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
