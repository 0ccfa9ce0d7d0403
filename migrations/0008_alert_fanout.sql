-- Alerts at scale (docs/architecture.md, "Alert fan-out" and "Live alerts in commit order").
--
-- 1. Commit order without a row update per alert. 0006 numbered every alert again at COMMIT,
--    row by row, under one global lock: a burst of W alerts cost W extra updates (and W
--    cache-trigger runs) while every other alert writer queued. Now commit_seq is taken at
--    INSERT, and a statement trigger takes the same transaction-level lock (727001006) before
--    the first number is drawn. The lock is held until the transaction ends, so numbers are
--    drawn in commit order: when an alert with commit_seq b is visible, every alert with a
--    smaller number is visible too or was rolled back. The evaluator writes a large burst in
--    chunks of its own transactions, each holding the lock for tens of milliseconds.
DROP TRIGGER alert_commit_seq ON alert_history;
DROP TRIGGER alert_commit_order_note ON alert_history;
DROP TRIGGER alert_commit_order_first ON cache_flush_requests;
DROP FUNCTION alert_assign_commit_seq();
DROP FUNCTION alert_note_commit_order();
DROP FUNCTION alert_commit_lock_before_cache_flush();

-- Rows written while 0006's trigger was disabled have no number; they committed before now.
UPDATE alert_history a SET commit_seq = o.n
FROM (SELECT id, (SELECT coalesce(max(commit_seq), 0) FROM alert_history)
                 + row_number() OVER (ORDER BY sent_at, id) AS n
      FROM alert_history WHERE commit_seq IS NULL) o
WHERE a.id = o.id;
SELECT setval('alert_commit_seq', coalesce(max(commit_seq), 0) + 1, false) FROM alert_history;

ALTER TABLE alert_history ALTER COLUMN commit_seq SET DEFAULT nextval('alert_commit_seq');
ALTER TABLE alert_history ALTER COLUMN commit_seq SET NOT NULL;

CREATE FUNCTION alert_take_commit_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM alert_commit_lock();
    RETURN NULL;
END
$$;

-- BEFORE ... FOR EACH STATEMENT fires before the statement reads its first row, so before
-- any commit_seq default is evaluated; COPY fires it too.
CREATE TRIGGER alert_commit_lock BEFORE INSERT ON alert_history
    FOR EACH STATEMENT EXECUTE FUNCTION alert_take_commit_lock();

-- 2. Lists in commit order, newest first, with one plan per filter (services/alerts.py).
CREATE INDEX alert_history_user_type_seq ON alert_history (user_id, alert_type, commit_seq);
CREATE INDEX alert_history_user_unread_seq ON alert_history (user_id, commit_seq)
    WHERE opened_at IS NULL;
-- `alerts(ticker:)` and `Stock.myAlerts`: one stock's alerts of a user, newest first.
CREATE INDEX alert_history_user_entity_seq ON alert_history (user_id, entity_id, commit_seq);
DROP INDEX alert_history_user_type_sent;

-- 3. Watchers of a stock in user order: the evaluator reads them in keyset chunks.
CREATE INDEX watchlists_entity_user ON watchlists (entity_id, user_id)
    INCLUDE (added_at, alerts_enabled);
DROP INDEX watchlists_entity;

-- 4. Per-user states are no longer stored: a watcher's previous state is the stock's previous
--    signal when the stock was on the watchlist when that signal was computed, and nothing
--    (a silent first evaluation) otherwise. The table and its rows stay for reference; nothing
--    writes or reads it any more, and its cache triggers go.
DROP TRIGGER cache_user_insert ON user_entity_settings;
DROP TRIGGER cache_user_update ON user_entity_settings;
DROP TRIGGER cache_user_delete ON user_entity_settings;
COMMENT ON TABLE user_entity_settings IS
    'Retired by 0008: per-user states are derived from entity_signals and watchlists.added_at.';
