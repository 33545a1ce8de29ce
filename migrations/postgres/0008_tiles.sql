-- Vector tiles: the tile cache asks every second which cells changed, through the uploads
-- processed and the auditors' decisions made since its last look.
CREATE INDEX uploads_processed ON uploads (processed_at);
CREATE INDEX frame_decisions_decided ON frame_decisions (decided_at);
