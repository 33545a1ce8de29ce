-- Times are microseconds since 1970, as everywhere in this backend.
-- Erasure: a contributor may ask for their uploads to be deleted (DELETE /api/v1/uploads/{id},
-- POST /api/v1/erasures; an admin on their behalf, or `covermap uploads erase`). The upload's
-- bytes and its frames' originals and blurred derivatives leave the object store, and its rows
-- go, but those a reward epoch that counted it reads, which stay stripped of pixels, keys,
-- hashes, road segments and exact places (a frame's place becomes its cell's centre), so that
-- epoch still verifies: the ledger keeps amounts, not pixels. An erased upload is never counted
-- in an epoch again, and a later epoch's "driven before" leaves out uploads erased before its
-- end. upload_erasures records each erasure: who asked, when, what went, and the blobs still to
-- delete should the object store have failed (tried again by the next request and the workers).
ALTER TABLE uploads ADD COLUMN erased_at INTEGER;
CREATE INDEX uploads_erased ON uploads (erased_at) WHERE erased_at IS NOT NULL;

CREATE TABLE upload_erasures (
    upload_id        INTEGER     PRIMARY KEY REFERENCES uploads (id),
    requested_by     TEXT        NOT NULL, -- a contributor, key:<id>, a device, or an operator
    requested_at     INTEGER     NOT NULL,
    counted_in_epoch INTEGER,              -- the epoch that had counted it, whose inputs stay
    erased           TEXT        NOT NULL, -- JSON: what went, counted by kind
    pending_blobs    TEXT,                 -- JSON array of blob keys still to delete
    completed_at     INTEGER               -- when the last of its blobs was deleted
);
CREATE INDEX upload_erasures_requested ON upload_erasures (requested_at);
CREATE INDEX upload_erasures_pending ON upload_erasures (upload_id) WHERE pending_blobs IS NOT NULL;

-- Whether a derivative is still published or shown anywhere, before its blob is deleted.
CREATE INDEX frames_published_key ON frames (published_key) WHERE published_key IS NOT NULL;
CREATE INDEX frame_rejections_review ON frame_rejections (review_key) WHERE review_key IS NOT NULL;
