-- Audit: auditors approve or reject the frames the vision stage refused, and every decision is
-- kept. frame_decisions is append-only (a trigger refuses UPDATE and DELETE): the newest row of
-- a frame (the highest id) is its current decision, and a later decision may overturn an
-- earlier one while both stay in the log.
--
-- Approving says the refusal was wrong: in the same transaction as the decision row the frame
-- is inserted into frames as published, its blurred review copy (review_key) as the published
-- derivative, with its original's sha256 and blob, capture time, cell, position, placement in
-- the drive (kept below since this migration), phash, faces and plates, and its scores as its
-- quality; frames.decision_id names the approval. From then on it is in the imagery, served as
-- a published frame, and seen by the repeat search and the demand map. A frame without a
-- review copy (review_key NULL), or refused before its placement was kept, cannot be approved.
-- Rejecting takes an approved frame out of frames again (never a frame the vision stage
-- published). The frame_rejections row stays either way: the queue shows the decision.
--
-- Rewards: an approved frame counts once, in the first epoch claimed after its approval (the
-- claim sets frame_rejections.reward_epoch for approved frames decided before the epoch's end,
-- as it tags uploads), read from that row, not from frames: a closed epoch's inputs never
-- change, and a rejection after that takes the frame off the map without reopening the epoch.
-- Frames the vision stage published (decision_id NULL) count with their upload, as before.
ALTER TABLE frame_rejections ADD COLUMN sequence INT;
ALTER TABLE frame_rejections ADD COLUMN heading_deg DOUBLE PRECISION;
ALTER TABLE frame_rejections ADD COLUMN width INT;
ALTER TABLE frame_rejections ADD COLUMN height INT;
ALTER TABLE frame_rejections ADD COLUMN osm_way_id BIGINT;
ALTER TABLE frame_rejections ADD COLUMN way_piece INT;
ALTER TABLE frame_rejections ADD COLUMN reward_epoch BIGINT;
CREATE INDEX frame_rejections_reward_epoch ON frame_rejections (reward_epoch)
    WHERE reward_epoch IS NOT NULL;

CREATE TABLE frame_decisions (
    id             BIGSERIAL   PRIMARY KEY,
    upload_id      BIGINT      NOT NULL,
    frame          INT         NOT NULL,
    decision       TEXT        NOT NULL CHECK (decision IN ('approve', 'reject')),
    note           TEXT,
    auditor        TEXT        NOT NULL, -- the deciding key's contributor, or key:<id>
    auditor_key_id BIGINT      REFERENCES api_keys (id),
    decided_at     TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (upload_id, frame) REFERENCES frame_rejections (upload_id, frame)
);
CREATE INDEX frame_decisions_frame ON frame_decisions (upload_id, frame, id);

CREATE FUNCTION frame_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'frame_decisions is append-only';
END;
$$;
CREATE TRIGGER frame_decisions_append_only BEFORE UPDATE OR DELETE ON frame_decisions
    FOR EACH ROW EXECUTE FUNCTION frame_decisions_append_only();

ALTER TABLE frames ADD COLUMN decision_id BIGINT REFERENCES frame_decisions (id);
CREATE INDEX frames_approved ON frames (decision_id) WHERE decision_id IS NOT NULL;
