-- The outbox per channel (docs/operations.md, "Deliveries"): each channel's claim reads a
-- partial index of its own pending rows, so a backlog of one channel (say 300,000 queued emails)
-- costs the other channel's claim nothing.
DROP INDEX deliveries_due;

-- Webhook claims take due rows in (next_attempt_at, id) order.
CREATE INDEX deliveries_webhook_due ON deliveries (next_attempt_at, id)
    WHERE status = 'pending' AND channel = 'webhook';

-- Email claims first find users with due rows (by next_attempt_at), then take all of those
-- users' due rows together (by user_id): one message per user.
CREATE INDEX deliveries_email_due ON deliveries (next_attempt_at, user_id)
    WHERE status = 'pending' AND channel = 'email';
CREATE INDEX deliveries_email_user ON deliveries (user_id, next_attempt_at)
    WHERE status = 'pending' AND channel = 'email';

-- Retention: `deliver` deletes delivered and failed rows finished more than
-- DELIVERY_RETENTION_DAYS ago. A finished row's updated_at is when it finished: every change
-- of status sets it, and nothing else updates a finished row (redeliver makes it pending).
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status <> 'pending';
