-- Per-scope response-cache versions and maintained watcher counts (docs/api.md, "Response
-- cache"). A cached answer records the scopes it read; a write bumps only the scopes of the
-- rows it changed, so one user's writes, or an evaluation of a stock an answer does not show,
-- leave every other answer cached:
--   user:<id>        that user's own rows (0005's triggers, unchanged)
--   stock:<entity>   the entity row, its signals and its backfill jobs
--   watchers:<entity> how many watchlists hold the entity (only answers showing watcherCount)
--   stocks           which entities exist and their tickers and names (search, lookups)
--   popularity:<n>   watch counts of the entities of shard n (0..15): lists ordered by them
--                    read all 16, while an add or remove locks only its entity's shard
--   public           every answer reads it; only a TRUNCATE (no rows to name) bumps it
-- The `public` counter is no longer bumped by ordinary writes.

-- The writer of the latest bump, so a reader can tell whether that bump had committed before
-- a given snapshot (services/cache_versions.py: settled versions).
ALTER TABLE cache_versions ADD COLUMN bumped_by xid8;

-- Noting stays transaction-local and the bump stays one deferred statement at commit in sorted
-- order (0005), but the noted scopes go to a session temp table instead of a setting that was
-- re-concatenated on every note: a transaction noting 80,000 scopes over many statements does
-- linear work. Created once per session, emptied at commit; `mc.cache_noting` says whether
-- this transaction has queued its flush.
CREATE OR REPLACE FUNCTION cache_note(scopes text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF scopes IS NULL OR cardinality(scopes) = 0 THEN
        RETURN;
    END IF;
    IF coalesce(current_setting('mc.cache_noting', true), '') = '' THEN
        IF to_regclass('pg_temp.cache_noted') IS NULL THEN
            CREATE TEMP TABLE cache_noted (scope text PRIMARY KEY) ON COMMIT DELETE ROWS;
        END IF;
        INSERT INTO cache_flush_requests DEFAULT VALUES ON CONFLICT DO NOTHING;
        PERFORM set_config('mc.cache_noting', 'on', true);
    END IF;
    INSERT INTO pg_temp.cache_noted (scope)
    SELECT DISTINCT s FROM unnest(scopes) AS s WHERE s IS NOT NULL
    ON CONFLICT DO NOTHING;
END
$$;

-- Emptying the table and the flag lets a deferred trigger that writes after this one (e.g. a
-- commit-order trigger updating rows) note and queue another flush.
CREATE OR REPLACE FUNCTION cache_flush() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('mc.cache_noting', '', true);
    DELETE FROM cache_flush_requests WHERE xact = NEW.xact;
    IF to_regclass('pg_temp.cache_noted') IS NULL THEN
        RETURN NULL;
    END IF;
    WITH noted AS (DELETE FROM pg_temp.cache_noted RETURNING scope)
    INSERT INTO cache_versions AS c (scope, version, bumped_by)
    SELECT scope, 1, pg_current_xact_id() FROM noted
    ORDER BY 1
    ON CONFLICT (scope) DO UPDATE SET version = c.version + 1, bumped_by = EXCLUDED.bumped_by;
    RETURN NULL;
END
$$;

-- The public counter now only for TRUNCATE.
DROP TRIGGER cache_public ON entities;
DROP TRIGGER cache_public ON entity_signals;
DROP TRIGGER cache_public ON watchlists;
DROP TRIGGER cache_public ON backfill_queue;
DROP TRIGGER cache_public_update ON backfill_queue;
CREATE TRIGGER cache_public AFTER TRUNCATE ON entities
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
CREATE TRIGGER cache_public AFTER TRUNCATE ON entity_signals
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
CREATE TRIGGER cache_public AFTER TRUNCATE ON watchlists
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();
CREATE TRIGGER cache_public AFTER TRUNCATE ON backfill_queue
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_public();

-- The popularity shard of an entity (Python lists all shards: services/cache_versions.py).
CREATE FUNCTION cache_popularity_scope(entity_id uuid) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'popularity:' || (hashtext(entity_id::text) & 15)
$$;

-- entities: a new or deleted entity changes which stocks exist; an update bumps the stock
-- only when a column really changed (get-or-create's no-op upsert changes nothing), and
-- `stocks` too when the ticker or name did.
-- An upsert fires the INSERT trigger even when every row conflicted: only rows inserted count.
CREATE FUNCTION cache_note_entities_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        PERFORM cache_note(ARRAY['stocks']);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION cache_note_entities_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY['stocks'] || ARRAY(SELECT 'stock:' || id FROM changed));
    RETURN NULL;
END
$$;

CREATE FUNCTION cache_note_entities_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY(
        SELECT 'stock:' || n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.*) IS DISTINCT FROM (o.*)
    ));
    IF EXISTS (
        SELECT 1 FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.ticker IS DISTINCT FROM o.ticker OR n.name IS DISTINCT FROM o.name
    ) THEN
        PERFORM cache_note(ARRAY['stocks']);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER cache_entities_insert AFTER INSERT ON entities
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_entities_inserted();
CREATE TRIGGER cache_entities_update AFTER UPDATE ON entities
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_entities_updated();
CREATE TRIGGER cache_entities_delete AFTER DELETE ON entities
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_entities_deleted();

-- entity_signals: the stock of each changed row.
CREATE FUNCTION cache_note_changed_stocks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY(SELECT DISTINCT 'stock:' || entity_id FROM changed));
    RETURN NULL;
END
$$;

CREATE TRIGGER cache_stock_insert AFTER INSERT ON entity_signals
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_stocks();
CREATE TRIGGER cache_stock_update AFTER UPDATE ON entity_signals
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_stocks();
CREATE TRIGGER cache_stock_delete AFTER DELETE ON entity_signals
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_stocks();

-- backfill_queue rows are by ticker: the stock with that ticker. Updates count only when a
-- column Stock.backfill shows changed (lease heartbeats move locked_by/updated_at only).
CREATE FUNCTION cache_note_job_stocks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY(
        SELECT DISTINCT 'stock:' || e.id FROM changed c JOIN entities e ON e.ticker = c.ticker
    ));
    RETURN NULL;
END
$$;

CREATE FUNCTION cache_note_job_stocks_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_note(ARRAY(
        SELECT DISTINCT 'stock:' || e.id
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        JOIN entities e ON e.ticker IN (n.ticker, o.ticker)
        WHERE (n.ticker, n.status, n.priority, n.requested_at, n.retry_count, n.error_message,
               n.completed_at, n.started_at, n.next_attempt_at)
            IS DISTINCT FROM
              (o.ticker, o.status, o.priority, o.requested_at, o.retry_count, o.error_message,
               o.completed_at, o.started_at, o.next_attempt_at)
    ));
    RETURN NULL;
END
$$;

CREATE TRIGGER cache_stock_insert AFTER INSERT ON backfill_queue
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_job_stocks();
CREATE TRIGGER cache_stock_update AFTER UPDATE ON backfill_queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cache_note_job_stocks_updated();
CREATE TRIGGER cache_stock_delete AFTER DELETE ON backfill_queue
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_job_stocks();

-- Watcher counts, maintained in their own table rather than on the entities row, which
-- backfills and evaluations update: an add or remove holds only its entity's count row (and
-- its popularity shard's counter at commit), nothing unrelated writers need. No foreign key:
-- deleting an entity cascades to its watchlists, whose trigger then finds the count row in any
-- state; a row left behind at 0 is harmless (lists read only positive counts).
CREATE TABLE entity_watch_counts (
    entity_id uuid PRIMARY KEY,
    watchers  integer NOT NULL CHECK (watchers >= 0)
);
CREATE INDEX entity_watch_counts_popular ON entity_watch_counts (watchers DESC, entity_id)
    WHERE watchers > 0;

-- One statement per watchlists statement. Count rows are locked in entity order (the upsert's
-- ORDER BY; FOR UPDATE before a decrement), so concurrent multi-stock statements cannot
-- deadlock on them.
CREATE FUNCTION watchlists_counted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    SELECT array_agg(DISTINCT entity_id ORDER BY entity_id) INTO ids FROM changed;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO entity_watch_counts AS c (entity_id, watchers)
        SELECT entity_id, count(*) FROM changed GROUP BY entity_id ORDER BY entity_id
        ON CONFLICT (entity_id) DO UPDATE SET watchers = c.watchers + EXCLUDED.watchers;
    ELSE
        PERFORM 1 FROM entity_watch_counts WHERE entity_id = ANY(ids)
        ORDER BY entity_id FOR UPDATE;
        UPDATE entity_watch_counts c SET watchers = c.watchers - g.n
        FROM (SELECT entity_id, count(*) AS n FROM changed GROUP BY entity_id) g
        WHERE c.entity_id = g.entity_id;
    END IF;
    PERFORM cache_note(ARRAY(
        SELECT 'watchers:' || i FROM unnest(ids) AS i
        UNION
        SELECT cache_popularity_scope(i) FROM unnest(ids) AS i
    ));
    RETURN NULL;
END
$$;

CREATE FUNCTION watchlists_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM entity_watch_counts;
    RETURN NULL;
END
$$;

CREATE TRIGGER watch_counts_insert AFTER INSERT ON watchlists
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION watchlists_counted();
CREATE TRIGGER watch_counts_delete AFTER DELETE ON watchlists
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION watchlists_counted();
CREATE TRIGGER watch_counts_truncate AFTER TRUNCATE ON watchlists
    FOR EACH STATEMENT EXECUTE FUNCTION watchlists_truncated();

-- Watchlist rows never move between entities; refuse it rather than miscount.
CREATE FUNCTION watchlists_entity_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'watchlists.entity_id cannot change (delete and insert instead)';
END
$$;
CREATE TRIGGER watchlists_entity_fixed BEFORE UPDATE OF entity_id ON watchlists
    FOR EACH ROW WHEN (OLD.entity_id IS DISTINCT FROM NEW.entity_id)
    EXECUTE FUNCTION watchlists_entity_fixed();

-- Existing counts (the triggers above are in place first, in this same transaction).
INSERT INTO entity_watch_counts (entity_id, watchers)
SELECT entity_id, count(*) FROM watchlists GROUP BY entity_id;
