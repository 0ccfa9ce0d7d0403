-- Signal kinds in one place (docs/architecture.md, "Signal kinds"): the alert types are rows
-- of a lookup table instead of literals in CHECK constraints, a stock's states and numbers
-- are kept per kind in two objects, and a user's per-type switches store the types turned
-- off, so a type added by a row is on for every user, new and existing.

-- One row per signal kind; a test asserts it equals the code's registry.
CREATE TABLE alert_types (
    alert_type text PRIMARY KEY,
    kind       text NOT NULL UNIQUE,
    position   integer NOT NULL UNIQUE
);
INSERT INTO alert_types (alert_type, kind, position) VALUES
    ('valuation_regime_change', 'valuation', 1),
    ('trend_break', 'trend', 2),
    ('fundamental_inflection', 'fundamentals', 3);

-- Alerts name a known type by reference. NOT VALID then VALIDATE: the check of existing rows
-- does not block writers.
ALTER TABLE alert_history DROP CONSTRAINT alert_history_alert_type_check;
ALTER TABLE alert_history ADD CONSTRAINT alert_history_alert_type_known
    FOREIGN KEY (alert_type) REFERENCES alert_types (alert_type) NOT VALID;
ALTER TABLE alert_history VALIDATE CONSTRAINT alert_history_alert_type_known;

-- Every kind's state (kind name -> state) and numbers (name -> value) of a signal. The
-- per-kind columns stay for the first three kinds (the API reads them); a reader takes a
-- column's value where the object has none (rows written before this migration).
ALTER TABLE entity_signals
    ADD COLUMN states jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN numbers jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Switches: the types a user turned off; every other row of alert_types is on. The old
-- `alert_types` list (the types on) stays writable for old writers: a trigger turns a list
-- written there into the muted types and clears it, so it is never read.
ALTER TABLE users ADD COLUMN muted_alert_types text[] NOT NULL DEFAULT '{}';
ALTER TABLE users DROP CONSTRAINT users_alert_types_valid;
ALTER TABLE users ALTER COLUMN alert_types DROP NOT NULL, ALTER COLUMN alert_types DROP DEFAULT;
UPDATE users SET muted_alert_types = ARRAY(
        SELECT t.alert_type FROM alert_types t
        WHERE NOT (t.alert_type = ANY(users.alert_types))
        ORDER BY t.position),
    alert_types = NULL
WHERE alert_types IS NOT NULL;
COMMENT ON COLUMN users.alert_types IS
    'Write-only since 0011: a list written here becomes muted_alert_types (the rest).';

CREATE FUNCTION users_alert_switches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.alert_types IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM unnest(NEW.alert_types) AS m(alert_type)
                   WHERE NOT EXISTS (SELECT 1 FROM alert_types t
                                     WHERE t.alert_type = m.alert_type)) THEN
            RAISE EXCEPTION 'unknown alert type in alert_types: %', NEW.alert_types
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.muted_alert_types := ARRAY(
            SELECT t.alert_type FROM alert_types t
            WHERE NOT (t.alert_type = ANY(NEW.alert_types))
            ORDER BY t.position);
        NEW.alert_types := NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(NEW.muted_alert_types) AS m(alert_type)
               WHERE NOT EXISTS (SELECT 1 FROM alert_types t
                                 WHERE t.alert_type = m.alert_type)) THEN
        RAISE EXCEPTION 'unknown alert type in muted_alert_types: %', NEW.muted_alert_types
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER users_alert_switches
    BEFORE INSERT OR UPDATE OF alert_types, muted_alert_types ON users
    FOR EACH ROW
    WHEN (NEW.alert_types IS NOT NULL OR cardinality(NEW.muted_alert_types) > 0)
    EXECUTE FUNCTION users_alert_switches();
