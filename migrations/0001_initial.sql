-- Core tables: users, stocks (entities), watchlists, signals, alerts and the backfill queue.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           text UNIQUE,
    investing_style text CHECK (investing_style IN ('value', 'growth', 'blend')),
    onboarded_at    timestamptz,
    alerts_enabled  boolean NOT NULL DEFAULT true,
    alert_types     text[] NOT NULL DEFAULT ARRAY['valuation_regime_change', 'trend_break', 'fundamental_inflection'],
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_alert_types_valid CHECK (
        alert_types <@ ARRAY['valuation_regime_change', 'trend_break', 'fundamental_inflection']
    )
);

CREATE TABLE entities (
    id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ticker                    text NOT NULL UNIQUE CHECK (ticker = upper(ticker) AND ticker <> ''),
    name                      text,
    sector                    text,
    exchange                  text,
    is_etf                    boolean NOT NULL DEFAULT false,
    has_price_data            boolean NOT NULL DEFAULT false,
    has_fundamental_data      boolean NOT NULL DEFAULT false,
    price_data_min_date       date,
    price_data_max_date       date,
    fundamental_data_min_date date,
    fundamental_data_max_date date,
    data_status               text NOT NULL DEFAULT 'none'
                              CHECK (data_status IN ('none', 'queued', 'ready', 'unavailable')),
    in_symbol_universe        boolean NOT NULL DEFAULT false,
    last_data_update          timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entities_ticker_trgm ON entities USING gin (ticker gin_trgm_ops);
CREATE INDEX entities_name_trgm ON entities USING gin (name gin_trgm_ops);
CREATE INDEX entities_ticker_prefix ON entities (ticker text_pattern_ops);
CREATE INDEX entities_with_price_data ON entities (ticker) WHERE has_price_data;

CREATE TABLE watchlists (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entity_id      uuid NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    added_at       timestamptz NOT NULL DEFAULT now(),
    alerts_enabled boolean NOT NULL DEFAULT true,
    UNIQUE (user_id, entity_id)
);
CREATE INDEX watchlists_user_added ON watchlists (user_id, added_at DESC, id DESC);
CREATE INDEX watchlists_entity ON watchlists (entity_id);

CREATE TABLE user_entity_settings (
    user_id                    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entity_id                  uuid NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    last_valuation_regime      text CHECK (last_valuation_regime IN ('CHEAP', 'NORMAL', 'EXPENSIVE', 'UNKNOWN')),
    last_trend_position        text CHECK (last_trend_position IN ('ABOVE_200DMA', 'BELOW_200DMA', 'UNKNOWN')),
    last_fundamental_direction text CHECK (last_fundamental_direction IN ('IMPROVING', 'DETERIORATING', 'UNKNOWN')),
    last_evaluated_at          timestamptz,
    last_evaluated_as_of       date,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, entity_id)
);

CREATE TABLE entity_signals (
    entity_id             uuid NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    as_of                 date NOT NULL,
    close                 double precision,
    sma200                double precision,
    trend_position        text NOT NULL CHECK (trend_position IN ('ABOVE_200DMA', 'BELOW_200DMA', 'UNKNOWN')),
    valuation_metric      text CHECK (valuation_metric IN ('EV/EBITDA', 'EV/SALES')),
    valuation_multiple    double precision,
    valuation_percentile  double precision,
    valuation_regime      text NOT NULL CHECK (valuation_regime IN ('CHEAP', 'NORMAL', 'EXPENSIVE', 'UNKNOWN')),
    eps_ttm               double precision,
    fundamental_direction text NOT NULL CHECK (fundamental_direction IN ('IMPROVING', 'DETERIORATING', 'UNKNOWN')),
    details               jsonb NOT NULL DEFAULT '{}'::jsonb,
    computed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_id, as_of)
);

CREATE TABLE alert_history (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entity_id         uuid NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    alert_type        text NOT NULL
                      CHECK (alert_type IN ('valuation_regime_change', 'trend_break', 'fundamental_inflection')),
    as_of             date NOT NULL,
    previous_state    text,
    new_state         text NOT NULL,
    headline          text NOT NULL,
    what_changed      text NOT NULL,
    why_it_matters    text NOT NULL,
    before_vs_now     text NOT NULL,
    what_didnt_change text NOT NULL,
    data_snapshot     jsonb NOT NULL DEFAULT '{}'::jsonb,
    sent_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    opened_at         timestamptz,
    UNIQUE (user_id, entity_id, alert_type, as_of)
);
CREATE INDEX alert_history_user_sent ON alert_history (user_id, sent_at DESC, id DESC);
CREATE INDEX alert_history_user_type_sent ON alert_history (user_id, alert_type, sent_at DESC, id DESC);
CREATE INDEX alert_history_entity ON alert_history (entity_id, user_id, sent_at DESC);

CREATE TABLE backfill_queue (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ticker          text NOT NULL CHECK (ticker = upper(ticker) AND ticker <> ''),
    requested_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    priority        integer NOT NULL DEFAULT 1,
    started_at      timestamptz,
    completed_at    timestamptz,
    error_message   text,
    retry_count     integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    locked_by       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX backfill_queue_one_pending_per_ticker ON backfill_queue (ticker) WHERE status = 'pending';
CREATE INDEX backfill_queue_claim_order ON backfill_queue (priority DESC, requested_at) WHERE status = 'pending';
CREATE INDEX backfill_queue_processing ON backfill_queue (started_at) WHERE status = 'processing';
CREATE INDEX backfill_queue_ticker_latest ON backfill_queue (ticker, requested_at DESC);
