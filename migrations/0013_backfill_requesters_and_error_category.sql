-- Backfill jobs: a public error category beside the raw error text, and who asked for a job.
--
-- `error_message` keeps the source's raw text for operators (`python -m ingest status`); the
-- API shows only `error_category`, so nothing a remote server answered reaches a client.
ALTER TABLE backfill_queue ADD COLUMN error_category text
    CHECK (error_category IN (
        'source unavailable', 'no data at source', 'rejected by source', 'internal error'
    ));

-- Jobs recorded before the category existed: read it off the text the worker wrote.
UPDATE backfill_queue
SET error_category = CASE
    WHEN error_message LIKE '%has no price rows%' OR error_message LIKE '%price rows DoltHub has%'
        THEN 'no data at source'
    WHEN error_message LIKE '%unavailable after%' OR error_message LIKE '%hit its deadline%'
        THEN 'source unavailable'
    WHEN error_message LIKE 'DoltHub %' THEN 'rejected by source'
    ELSE 'internal error'
END
WHERE error_message IS NOT NULL;

-- Priority counts distinct requesting users: a user re-adding a stock is already counted.
CREATE TABLE backfill_requesters (
    job_id  uuid NOT NULL REFERENCES backfill_queue (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, user_id)
);
-- Deleting a user finds their rows without a scan.
CREATE INDEX backfill_requesters_user ON backfill_requesters (user_id);

INSERT INTO backfill_requesters (job_id, user_id)
SELECT id, requested_by FROM backfill_queue
WHERE status IN ('pending', 'processing') AND requested_by IS NOT NULL;
