-- Endpoint health: each webhook's streak of failures and the state it leads to, kept as
-- attempts finish; the operator notifications its transitions queue; and recoveries, which
-- re-send a range of failed events to one webhook in steps, so that a large one survives a
-- restart and a second one over the same range finds nothing left to queue.
ALTER TABLE webhooks ADD COLUMN health_state TEXT NOT NULL DEFAULT 'healthy';
ALTER TABLE webhooks ADD COLUMN consecutive_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN failing_since BIGINT;
ALTER TABLE webhooks ADD COLUMN last_attempt_at BIGINT;
ALTER TABLE webhooks ADD COLUMN last_success_at BIGINT;
ALTER TABLE webhooks ADD COLUMN last_failure_at BIGINT;
ALTER TABLE webhooks ADD COLUMN last_response_status BIGINT;
ALTER TABLE webhooks ADD COLUMN disabled_at BIGINT;
ALTER TABLE webhooks ADD COLUMN disabled_reason TEXT;

-- The operator's notifications: an outbox, written in the transaction of the transition
-- that causes each, sent and retried under a lease like deliveries.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY, -- also the notification's webhook-id
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,    -- the JSON sent, byte for byte on every attempt
    state           TEXT NOT NULL,    -- queued, sent, failed
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    locked_by       TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'queued';

-- A recovery walks the events of its range in `seq` order, `next_seq` up to `last_seq`, one
-- step per transaction.
CREATE TABLE recoveries (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    since       BIGINT NOT NULL, -- events created in [since, until)
    until       BIGINT NOT NULL,
    ended_since BIGINT,          -- catch-up: only deliveries that ended failed from then on
    next_seq    BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    queued      BIGINT NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,    -- running, done
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX recoveries_running ON recoveries (created_at) WHERE state = 'running';
