-- Late judging: frames kept pending because the vision models were missing are judged once a
-- worker has them (published as their blurred derivative, or refused like any other frame).
-- judged_at is when such a frame was judged; it stays NULL for frames judged while their drive
-- was processed. A frame published late counts once, in the first epoch claimed after it was
-- judged (the claim sets reward_epoch, as it does for approved frames), never in the epoch its
-- upload counted in: a closed epoch's inputs never change.
ALTER TABLE frames ADD COLUMN judged_at TIMESTAMPTZ;
ALTER TABLE frames ADD COLUMN reward_epoch BIGINT;
CREATE INDEX frames_pending ON frames (upload_id, frame) WHERE status = 'pending';
CREATE INDEX frames_judged_late ON frames (judged_at) WHERE judged_at IS NOT NULL;
CREATE INDEX frames_late_reward_epoch ON frames (reward_epoch) WHERE reward_epoch IS NOT NULL;
