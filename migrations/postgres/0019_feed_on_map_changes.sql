-- The change feed reports what changes a map, and only that. An upload's trust matters to the
-- maps only as flagged or not (they leave out flagged uploads): from pending to trusted at an
-- epoch's close nothing on a map changes, and reporting every cell of every upload of the epoch
-- dropped every cached tile over them and cost the close seconds. A radio sighting an epoch marks
-- as not counted leaves the radio map: its own cell is reported (it used to ride on its upload's
-- trust changing in the same transaction), and so is a cell whose bounty an epoch paid (the
-- demand map's open bounties). An upload flagged or cleared also reports the cells of its matched
-- stretches (the road driven in a cell counts only unflagged uploads' stretches).
CREATE OR REPLACE FUNCTION covermap_upload_trust_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cell_changes (cell)
        SELECT cell FROM cell_observations WHERE upload_id = NEW.id
        UNION SELECT cell FROM radio_observations WHERE upload_id = NEW.id
        UNION SELECT cell FROM frames WHERE upload_id = NEW.id
        UNION SELECT cell FROM matched_stretches WHERE upload_id = NEW.id;
    RETURN NULL;
END $$;
DROP TRIGGER uploads_trust_changed ON uploads;
CREATE TRIGGER uploads_trust_changed AFTER UPDATE OF trust ON uploads
    FOR EACH ROW WHEN ((OLD.trust = 'flagged') IS DISTINCT FROM (NEW.trust = 'flagged'))
    EXECUTE FUNCTION covermap_upload_trust_changed();
CREATE TRIGGER radio_observations_updated AFTER UPDATE ON radio_observations
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_updated();
CREATE TRIGGER bounty_claims_inserted AFTER INSERT ON bounty_claims
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION covermap_cells_inserted();
