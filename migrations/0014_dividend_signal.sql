-- The dividend signal kind (docs/signals.md, "Dividends"): one row in the kinds' lookup
-- table. Users store the alert types they turned off, so this row turns `dividend_change` on
-- for every user, existing and new. Its state and numbers live in entity_signals.states /
-- numbers like every kind's; a stock's first evaluation with it sets the state silently.
INSERT INTO alert_types (alert_type, kind, position) VALUES ('dividend_change', 'dividends', 4);
