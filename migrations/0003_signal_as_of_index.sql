-- Health asks for the latest evaluation date on every call (load balancers poll it):
-- an index with as_of first turns max(as_of) into one index probe instead of a table scan.
CREATE INDEX entity_signals_as_of ON entity_signals (as_of DESC);
