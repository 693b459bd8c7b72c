-- Webhooks: endpoints registered per user, and the deliveries of product events to them.
--
-- No signing secret is stored: each endpoint's secret is derived from WEBHOOK_SIGNING_KEY, its id
-- and its random salt (catalogue/webhooks.py), so a copy of the database signs nothing.

CREATE TABLE webhooks (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    events          TEXT[] NOT NULL CHECK (cardinality(events) > 0),
    secret_salt     BYTEA NOT NULL CHECK (length(secret_salt) = 16),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An endpoint whose deliveries fail for a whole retry schedule, with no success meanwhile,
    -- is disabled (the dispatcher compares last_success_at with the failed delivery's start).
    last_success_at TIMESTAMPTZ,
    disabled_at     TIMESTAMPTZ,
    disabled_reason TEXT
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id, id);

-- One event for one endpoint: delivered at least once, or failed after the whole retry schedule.
-- `body` is the exact JSON signed and sent; `next_attempt_at` is when a dispatcher may try it
-- (pushed ahead while one holds it, so a dispatcher that dies mid-attempt leaves it to another).
CREATE TABLE webhook_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    UNIQUE (webhook_id, event_id)  -- an event redelivered by Kafka is queued once
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_recent_idx ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (finished_at)
    WHERE state <> 'pending';

-- Every attempt, for GET /webhooks/{id}/deliveries and the console.
CREATE TABLE webhook_attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    webhook_id   BIGINT NOT NULL,
    attempt      INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code  INTEGER,
    error        TEXT,
    duration_ms  DOUBLE PRECISION NOT NULL
);
CREATE INDEX webhook_attempts_recent_idx ON webhook_attempts (webhook_id, id DESC);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);
