-- The map's in-process index keeps each cell's road length and the road driven in it, so the
-- change feed also reports the cells whose road changes: a road network imported (every old and
-- new road cell) and stretches matched or erased.
CREATE TRIGGER road_cells_inserted AFTER INSERT ON road_cells
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell); END;
CREATE TRIGGER road_cells_deleted AFTER DELETE ON road_cells
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell); END;
CREATE TRIGGER matched_stretches_inserted AFTER INSERT ON matched_stretches
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (NEW.cell); END;
CREATE TRIGGER matched_stretches_deleted AFTER DELETE ON matched_stretches
BEGIN INSERT OR REPLACE INTO cell_changes (cell) VALUES (OLD.cell); END;
