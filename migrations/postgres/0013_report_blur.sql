-- Blurring further: an auditor's third decision on a reported frame. The auditor marks boxes on
-- the hidden frame; its published derivative is blurred there, stored as a new blob (content
-- addressed, so under a key of its own: nothing a cache or another frame holds is overwritten),
-- and the frame points at it and is shown again (unless another report of it is still open).
-- boxes keeps what was marked: a JSON array of {x1, y1, x2, y2} in the frame's pixels.
ALTER TABLE frame_reports DROP CONSTRAINT frame_reports_decision_check;
ALTER TABLE frame_reports ADD CONSTRAINT frame_reports_decision_check
    CHECK (decision IN ('keep', 'remove', 'blur'));
ALTER TABLE frame_reports ADD COLUMN boxes TEXT
    CHECK ((decision = 'blur') = (boxes IS NOT NULL));
