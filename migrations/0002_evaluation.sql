-- Evaluation runs and per-entity claims: several evaluator processes split one run's work.
CREATE TABLE evaluation_runs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    as_of        date NOT NULL,
    scope        text NOT NULL,  -- '*' (every watched entity) or the sorted --tickers list
    entity_count integer NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
-- At most one open run per (as_of, scope): evaluators started together join it.
CREATE UNIQUE INDEX evaluation_runs_one_open ON evaluation_runs (as_of, scope) WHERE finished_at IS NULL;
CREATE INDEX evaluation_runs_latest ON evaluation_runs (as_of DESC) WHERE finished_at IS NOT NULL;

CREATE TABLE evaluation_claims (
    run_id        uuid NOT NULL REFERENCES evaluation_runs (id) ON DELETE CASCADE,
    entity_id     uuid NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    claimed_by    text,
    claimed_at    timestamptz,
    finished_at   timestamptz,
    error_message text,
    PRIMARY KEY (run_id, entity_id)
);
CREATE INDEX evaluation_claims_open ON evaluation_claims (run_id, entity_id)
    WHERE status IN ('pending', 'processing');

-- "Last stored signal before D" for alert texts.
CREATE INDEX entity_signals_latest ON entity_signals (entity_id, as_of DESC);
