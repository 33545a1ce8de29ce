-- Times are microseconds since 1970, as everywhere in this backend.
-- The change feed: every write that changes what a map cell shows puts the cell here, in the
-- writing transaction (triggers, so no write path can forget). One row per cell, moved to a new
-- `seq` at each change (INSERT OR REPLACE), so the table holds at most one row per cell and needs
-- no pruning. SQLite has one writer at a time and commits in `seq` order, so a reader that has
-- seen every row up to `seq` N reads the rows after N and skips nothing.
CREATE TABLE cell_changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    cell INTEGER NOT NULL UNIQUE
);
CREATE TRIGGER cell_observations_inserted AFTER INSERT ON cell_observations
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell); END;
CREATE TRIGGER cell_observations_deleted AFTER DELETE ON cell_observations
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell); END;
CREATE TRIGGER radio_observations_inserted AFTER INSERT ON radio_observations
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell); END;
CREATE TRIGGER radio_observations_deleted AFTER DELETE ON radio_observations
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell); END;
CREATE TRIGGER frames_inserted AFTER INSERT ON frames
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell); END;
CREATE TRIGGER frames_deleted AFTER DELETE ON frames
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell); END;
CREATE TRIGGER demand_cells_inserted AFTER INSERT ON demand_cells
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell); END;
CREATE TRIGGER demand_cells_deleted AFTER DELETE ON demand_cells
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell); END;
CREATE TRIGGER frames_updated AFTER UPDATE ON frames
BEGIN
    INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell);
    INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell);
END;

-- A frame reported, or its report decided; a refused frame decided by an auditor.
CREATE TRIGGER frame_reports_inserted AFTER INSERT ON frame_reports
BEGIN
    INSERT OR REPLACE INTO cell_changes (cell)
        SELECT cell FROM frames WHERE upload_id = NEW.upload_id AND frame = NEW.frame
        UNION SELECT cell FROM frame_rejections
            WHERE upload_id = NEW.upload_id AND frame = NEW.frame;
END;
CREATE TRIGGER frame_reports_updated AFTER UPDATE ON frame_reports
BEGIN
    INSERT OR REPLACE INTO cell_changes (cell)
        SELECT cell FROM frames WHERE upload_id = NEW.upload_id AND frame = NEW.frame
        UNION SELECT cell FROM frame_rejections
            WHERE upload_id = NEW.upload_id AND frame = NEW.frame;
END;
CREATE TRIGGER frame_decisions_inserted AFTER INSERT ON frame_decisions
BEGIN
    INSERT OR REPLACE INTO cell_changes (cell)
        SELECT cell FROM frames WHERE upload_id = NEW.upload_id AND frame = NEW.frame
        UNION SELECT cell FROM frame_rejections
            WHERE upload_id = NEW.upload_id AND frame = NEW.frame;
END;

-- An upload's trust changed (flagged uploads leave every map): all of its cells.
CREATE TRIGGER uploads_trust_changed AFTER UPDATE OF trust ON uploads
WHEN OLD.trust IS NOT NEW.trust
BEGIN
    INSERT OR REPLACE INTO cell_changes (cell)
        SELECT cell FROM cell_observations WHERE upload_id = NEW.id
        UNION SELECT cell FROM radio_observations WHERE upload_id = NEW.id
        UNION SELECT cell FROM frames WHERE upload_id = NEW.id;
END;
