-- Completed `sync-symbols` passes: `daily` refreshes the search universe only when the newest
-- is older than SYMBOLS_MAX_AGE_DAYS. A partial pass (the source failed midway) records nothing.
CREATE TABLE symbol_syncs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT now(),
    symbols     integer NOT NULL,  -- listed symbols seen (test issues excluded)
    added       integer NOT NULL,  -- tickers that entered the universe
    retired     integer NOT NULL   -- tickers no longer listed, taken out of it
);
CREATE INDEX symbol_syncs_latest ON symbol_syncs (finished_at DESC);
