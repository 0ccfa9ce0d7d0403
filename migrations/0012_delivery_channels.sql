-- Delivery channels as rows, not a CHECK list: adding a channel inserts its name here (with its
-- target table, its target column on deliveries and its partial due index) in its own migration.
-- The names are the code's channel registry (services/delivery/registry.py); a test compares them.
CREATE TABLE delivery_channels (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$')
);
INSERT INTO delivery_channels (name) VALUES ('webhook'), ('email');

ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries
    ADD CONSTRAINT deliveries_channel_known FOREIGN KEY (channel) REFERENCES delivery_channels (name);
