-- The change feed: every write that changes what a map cell shows adds the cell here, in the
-- writing transaction (triggers, so no write path can forget), with that transaction's id. Each
-- serving process keeps a snapshot (`pg_current_snapshot()`) as its place in the feed and reads
-- the rows of the transactions that committed since: visible in the new snapshot, not in the old.
-- Transaction ids, not clocks: nothing is skipped however commits interleave or clocks disagree,
-- and a long transaction delays only its own rows. Statement-level triggers write each cell once
-- per statement (a job's thousands of observations of a few cells are a few rows); rows older
-- than a day are pruned.
CREATE TABLE cell_changes (
    xid  XID8        NOT NULL DEFAULT pg_current_xact_id(),
    cell BIGINT      NOT NULL,
    at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cell_changes_xid ON cell_changes (xid);
CREATE INDEX cell_changes_at ON cell_changes (at);

CREATE FUNCTION covermap_cells_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (cell) SELECT DISTINCT cell FROM new_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION covermap_cells_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (cell) SELECT DISTINCT cell FROM old_rows;
    RETURN NULL;
END $$;
CREATE FUNCTION covermap_cells_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (cell)
        SELECT cell FROM new_rows UNION SELECT cell FROM old_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER cell_observations_inserted AFTER INSERT ON cell_observations REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER cell_observations_deleted AFTER DELETE ON cell_observations REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER radio_observations_inserted AFTER INSERT ON radio_observations REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER radio_observations_deleted AFTER DELETE ON radio_observations REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER frames_inserted AFTER INSERT ON frames REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER frames_deleted AFTER DELETE ON frames REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER demand_cells_inserted AFTER INSERT ON demand_cells REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER demand_cells_deleted AFTER DELETE ON demand_cells REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER frames_updated AFTER UPDATE ON frames
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_updated();

-- A frame reported, or its report decided; a refused frame decided by an auditor.
CREATE FUNCTION covermap_frame_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (cell)
        SELECT cell FROM frames WHERE upload_id = NEW.upload_id AND frame = NEW.frame
        UNION SELECT cell FROM frame_rejections
            WHERE upload_id = NEW.upload_id AND frame = NEW.frame;
    RETURN NULL;
END $$;
CREATE TRIGGER frame_reports_changed AFTER INSERT OR UPDATE ON frame_reports
    FOR EACH ROW EXECUTE FUNCTION covermap_frame_changed();
CREATE TRIGGER frame_decisions_changed AFTER INSERT ON frame_decisions
    FOR EACH ROW EXECUTE FUNCTION covermap_frame_changed();

-- An upload's trust changed (flagged uploads leave every map): all of its cells.
CREATE FUNCTION covermap_upload_trust_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (cell)
        SELECT cell FROM cell_observations WHERE upload_id = NEW.id
        UNION SELECT cell FROM radio_observations WHERE upload_id = NEW.id
        UNION SELECT cell FROM frames WHERE upload_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER uploads_trust_changed AFTER UPDATE OF trust ON uploads
    FOR EACH ROW WHEN (OLD.trust IS DISTINCT FROM NEW.trust)
    EXECUTE FUNCTION covermap_upload_trust_changed();
