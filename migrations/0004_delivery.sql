-- Delivery outside the app: webhook endpoints and the deliveries outbox (docs/api.md, "Delivery").
-- Delivery rows are written in the evaluation's per-entity transaction, next to the alert.

ALTER TABLE users
    ADD COLUMN email_digest text NOT NULL DEFAULT 'daily'
        CHECK (email_digest IN ('off', 'immediate', 'daily', 'weekly')),
    -- When the last digest email went out: DAILY waits 20 h after it, WEEKLY 6.5 days.
    ADD COLUMN last_digest_sent_at timestamptz;

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url                  text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description          text CHECK (length(description) <= 500),
    secret               text NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, created_at, id);

CREATE TABLE deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- NULL for a webhook.test event.
    alert_id         uuid REFERENCES alert_history (id) ON DELETE CASCADE,
    channel          text NOT NULL CHECK (channel IN ('webhook', 'email')),
    webhook_id       uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type       text NOT NULL DEFAULT 'alert.created'
                     CHECK (event_type IN ('alert.created', 'webhook.test')),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- The lease of the deliverer sending it; expired leases are taken over.
    locked_by        text,
    locked_until     timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT deliveries_channel_target CHECK ((channel = 'webhook') = (webhook_id IS NOT NULL)),
    CONSTRAINT deliveries_event_alert CHECK ((event_type = 'alert.created') = (alert_id IS NOT NULL))
);
-- One delivery per alert per endpoint, and one email delivery per alert.
CREATE UNIQUE INDEX deliveries_alert_webhook ON deliveries (alert_id, webhook_id)
    WHERE channel = 'webhook' AND alert_id IS NOT NULL;
CREATE UNIQUE INDEX deliveries_alert_email ON deliveries (alert_id) WHERE channel = 'email';
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_user_created ON deliveries (user_id, created_at DESC, id DESC);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id) WHERE webhook_id IS NOT NULL;
