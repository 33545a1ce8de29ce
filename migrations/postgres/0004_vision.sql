-- Vision: each kept frame's verdict. A frame is published (its blurred derivative stored under
-- published_key) only once faces and plates were found and blurred; until the vision stage has
-- looked at it, it stays pending and nothing of it is served.
ALTER TABLE frames ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'published'));
ALTER TABLE frames ADD COLUMN published_key TEXT;
ALTER TABLE frames ADD COLUMN phash TEXT;
ALTER TABLE frames ADD COLUMN faces INT;
ALTER TABLE frames ADD COLUMN plates INT;
