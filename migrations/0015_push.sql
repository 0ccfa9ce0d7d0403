-- Web Push (docs/api.md, "Web Push"): a user's browser subscriptions, the third delivery channel.

-- One row per browser subscription. The endpoint is the push service's capability URL for one
-- browser profile and our key: unique, so a browser that signs in as another user moves to that
-- user instead of getting both users' alerts.
--
-- At most 10 per user without a per-user lock: each row takes one of the user's slots 1..10,
-- and (user_id, slot) is unique. A registration inserts into the lowest free slot; two that
-- race for the same slot meet the unique index and the loser tries the next free one, and with
-- all ten taken there is no slot to insert into.
CREATE TABLE push_subscriptions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    slot        smallint NOT NULL CHECK (slot BETWEEN 1 AND 10),
    endpoint    text NOT NULL UNIQUE CHECK (length(endpoint) BETWEEN 1 AND 2048),
    -- The browser's P-256 public key (65 bytes) and auth secret (16 bytes), base64url.
    p256dh      text NOT NULL CHECK (length(p256dh) BETWEEN 80 AND 100),
    auth        text NOT NULL CHECK (length(auth) BETWEEN 16 AND 32),
    user_agent  text CHECK (length(user_agent) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT push_subscriptions_user_slot UNIQUE (user_id, slot)
);

-- The user's answers (User.pushSubscriptions) change with their subscriptions. An update can
-- move a row between users: both the old and the new owner are noted.
CREATE TRIGGER cache_user_insert AFTER INSERT ON push_subscriptions
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update AFTER UPDATE ON push_subscriptions
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_update_old AFTER UPDATE ON push_subscriptions
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();
CREATE TRIGGER cache_user_delete AFTER DELETE ON push_subscriptions
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cache_note_changed_users();

-- The push channel in the outbox (services/delivery/channels/push.py): one delivery per alert
-- per subscription, written with the alert like the other channels' rows. Deleting a
-- subscription (by the user, or because its push service answered 404/410) deletes its
-- deliveries, as deleting a webhook endpoint does.
INSERT INTO delivery_channels (name) VALUES ('push');
ALTER TABLE deliveries
    ADD COLUMN push_subscription_id uuid REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    ADD CONSTRAINT deliveries_push_target
        CHECK ((channel = 'push') = (push_subscription_id IS NOT NULL));
CREATE UNIQUE INDEX deliveries_alert_push ON deliveries (alert_id, push_subscription_id)
    WHERE channel = 'push';
CREATE INDEX deliveries_push_subscription ON deliveries (push_subscription_id)
    WHERE push_subscription_id IS NOT NULL;
-- Push claims take due rows in (next_attempt_at, id) order from their own partial index, so a
-- backlog of another channel costs them nothing (as 0010 did for webhook and email).
CREATE INDEX deliveries_push_due ON deliveries (next_attempt_at, id)
    WHERE status = 'pending' AND channel = 'push';
