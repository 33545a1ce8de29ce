-- Vector tiles: the tile cache asks every second which cells changed, through the uploads
-- processed since its last look.
CREATE INDEX uploads_processed ON uploads (processed_at);
