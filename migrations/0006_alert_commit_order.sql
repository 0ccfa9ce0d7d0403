-- Commit order of alerts (docs/architecture.md, "Live alerts in commit order").
-- `commit_seq` is assigned while the writing transaction commits, under a transaction-level
-- advisory lock that is released only after that commit is visible. So when an alert with
-- commit_seq b is visible, every alert with a smaller commit_seq is visible too or was rolled
-- back: the subscription hub catches up with `commit_seq > the last one it routed`, and
-- `alertCreated(after:)` replays `commit_seq > after's`, neither with a time window.
ALTER TABLE alert_history ADD COLUMN commit_seq bigint;

-- CACHE 1 (the default) matters: numbers must be handed out in the order they are asked for.
CREATE SEQUENCE alert_commit_seq AS bigint CACHE 1;

-- Existing alerts are all committed: number them in the order they were listed until now.
UPDATE alert_history a SET commit_seq = o.n
FROM (SELECT id, row_number() OVER (ORDER BY sent_at, id) AS n FROM alert_history) o
WHERE a.id = o.id;
SELECT setval('alert_commit_seq', coalesce(max(commit_seq), 0) + 1, false) FROM alert_history;

CREATE UNIQUE INDEX alert_history_commit_seq ON alert_history (commit_seq);
CREATE INDEX alert_history_user_commit_seq ON alert_history (user_id, commit_seq);

-- The lock's key, 727001006, is its own (the migration runner's session lock is 727001001).
CREATE FUNCTION alert_commit_lock() RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(727001006)
$$;

-- At COMMIT (deferred), per row in insertion order, so a burst keeps its order. The lock is
-- re-entrant: a transaction waits at most once, and only while another one commits.
CREATE FUNCTION alert_assign_commit_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM alert_commit_lock();
    UPDATE alert_history SET commit_seq = nextval('alert_commit_seq') WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER alert_commit_seq AFTER INSERT ON alert_history
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION alert_assign_commit_seq();

-- No deadlock with the response-cache counters (0005), which are also locked at commit: a
-- transaction that writes alerts takes this lock before any counter. The counters are locked
-- only by cache_flush, and `alert_commit_order_first` fires just before every cache_flush
-- (triggers on one event fire in name order), so the order is always lock, then counters.
CREATE FUNCTION alert_note_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('mc.alert_commit_order', 'on', true);
    RETURN NULL;
END
$$;

CREATE TRIGGER alert_commit_order_note AFTER INSERT ON alert_history
    FOR EACH STATEMENT EXECUTE FUNCTION alert_note_commit_order();

CREATE FUNCTION alert_commit_lock_before_cache_flush() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('mc.alert_commit_order', true) = 'on' THEN
        PERFORM alert_commit_lock();
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER alert_commit_order_first AFTER INSERT ON cache_flush_requests
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION alert_commit_lock_before_cache_flush();
