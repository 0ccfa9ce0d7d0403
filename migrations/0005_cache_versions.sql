-- Version counters for the API's response cache (docs/api.md, "Response cache").
-- 'public' changes with anything a public field can show (stocks, signals, backfill jobs,
-- watcher counts); 'user:<id>' with anything of that user's own. They are bumped inside the
-- transaction that makes the change, so once it commits no process serves an older answer.
CREATE TABLE cache_versions (
    scope   text PRIMARY KEY,
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO cache_versions (scope) VALUES ('public');

-- How: statement triggers note the scopes a transaction touched in a transaction-local
-- setting, and the first note also queues one deferred trigger, which bumps every noted
-- counter at commit, in sorted order, in one statement. Counter rows are therefore locked
-- only while committing and always in the same order: no deadlock, and a long transaction
-- never holds up other writers.
CREATE TABLE cache_flush_requests (
    xact xid8 PRIMARY KEY DEFAULT pg_current_xact_id()
);

CREATE FUNCTION cache_note(scopes text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    noted text := coalesce(current_setting('mc.cache_scopes', true), '');
BEGIN
    IF scopes IS NULL OR cardinality(scopes) = 0 THEN
        RETURN;
    END IF;
    IF noted = '' THEN
        INSERT INTO cache_flush_requests DEFAULT VALUES ON CONFLICT DO NOTHING;
    END IF;
    PERFORM set_config('mc.cache_scopes', noted || ',' || array_to_string(scopes, ','), true);
END
$$;

CREATE FUNCTION cache_flush() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    noted text := coalesce(current_setting('mc.cache_scopes', true), '');
BEGIN
    PERFORM set_config('mc.cache_scopes', '', true);
    DELETE FROM cache_flush_requests WHERE xact = NEW.xact;
    INSERT INTO cache_versions AS c (scope, version)
    SELECT DISTINCT s, 1 FROM unnest(string_to_array(noted, ',')) AS s
    WHERE s <> ''
    ORDER BY 1
    ON CONFLICT (scope) DO UPDATE SET version = c.version + 1;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER cache_flush AFTER INSERT ON cache_flush_requests
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cache_flush();

CREATE FUNCTION cache_note_public() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY['public']);
    RETURN NULL;
END
$$;

-- From the transition table `changed`, whose user column is `user_id`.
CREATE FUNCTION cache_note_changed_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY(SELECT DISTINCT 'user:' || user_id FROM changed));
    RETURN NULL;
END
$$;

-- The users table itself (its key is `id`).
CREATE FUNCTION cache_note_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY(SELECT DISTINCT 'user:' || id FROM changed));
    RETURN NULL;
END
$$;

-- Row-level, where an UPDATE that matters is told apart by its columns (lease bookkeeping
-- of deliveries changes nothing a field shows).
CREATE FUNCTION cache_note_row_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY['user:' || NEW.user_id]);
    RETURN NULL;
END
$$;

-- Public data.
CREATE TRIGGER cache_public AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON entities
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
CREATE TRIGGER cache_public AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON entity_signals
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
-- Watcher counts (watchlist rows appear and disappear).
CREATE TRIGGER cache_public AFTER INSERT OR DELETE OR TRUNCATE ON watchlists
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
-- Backfill jobs as Stock.backfill shows them; heartbeats only move the lease.
CREATE TRIGGER cache_public AFTER INSERT OR DELETE OR TRUNCATE ON backfill_queue
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
CREATE TRIGGER cache_public_update
    AFTER UPDATE OF status, priority, requested_at, retry_count, error_message, completed_at,
        started_at, next_attempt_at ON backfill_queue
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();

-- Each user's own data.
CREATE TRIGGER cache_user_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_users();
CREATE TRIGGER cache_user_update AFTER UPDATE ON users
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_users();

CREATE TRIGGER cache_user_insert AFTER INSERT ON watchlists
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update AFTER UPDATE ON watchlists
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON watchlists
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();

CREATE TRIGGER cache_user_insert AFTER INSERT ON user_entity_settings
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update AFTER UPDATE ON user_entity_settings
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON user_entity_settings
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();

CREATE TRIGGER cache_user_insert AFTER INSERT ON alert_history
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update AFTER UPDATE ON alert_history
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON alert_history
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();

CREATE TRIGGER cache_user_insert AFTER INSERT ON webhook_endpoints
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update AFTER UPDATE ON webhook_endpoints
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON webhook_endpoints
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();

CREATE TRIGGER cache_user_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update
    AFTER UPDATE OF status, attempts, next_attempt_at, last_status_code, last_error,
        delivered_at ON deliveries
    FOR EACH ROW EXECUTE FUNCTION cache_note_row_user();
