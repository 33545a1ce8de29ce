-- The map's in-process index keeps each cell's road length and the road driven in it, so the
-- change feed also reports the cells whose road changes: a road network imported (every old and
-- new road cell) and stretches matched or erased.
CREATE TRIGGER road_cells_inserted AFTER INSERT ON road_cells REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER road_cells_deleted AFTER DELETE ON road_cells REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
CREATE TRIGGER matched_stretches_inserted AFTER INSERT ON matched_stretches
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
CREATE TRIGGER matched_stretches_deleted AFTER DELETE ON matched_stretches
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_deleted();
