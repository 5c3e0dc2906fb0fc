-- Herald's schema on PostgreSQL: the same tables as on SQLite, so the two backends share one
-- model. Instants are BIGINT Unix milliseconds; ids are lowercase hyphenated UUID text, as the
-- API renders them. Several Herald nodes share these tables; claims use row locks and leases.

-- Tenants are named by operators (`herald tenant create acme`). The name is the key the other
-- tables refer to, because it is what producers send and what responses show.
CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- Bearer tokens, stored only as the SHA-256 of the token: a leaked database leaks no
-- credential. Partner tokens are bound to a tenant, producer tokens are not.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL CHECK (kind IN ('partner', 'producer')),
    tenant     TEXT REFERENCES tenants (name),
    scopes     TEXT NOT NULL, -- space-separated scope names
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants (name),
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    api_key     TEXT NOT NULL,
    event_types TEXT NOT NULL, -- JSON array of patterns
    is_active   BOOLEAN NOT NULL,
    metadata    TEXT NOT NULL, -- JSON object
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant, created_at);

-- `seq` orders events (newest first in lists), pages them (cursors) and is what deliveries
-- and attempts point at: an integer key keeps those tables and their indexes small.
CREATE TABLE events (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    tenant         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    payload        TEXT NOT NULL, -- compact JSON object; the delivery body is rendered from it
    user_id        TEXT,
    source_service TEXT,
    occurred_at    BIGINT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    queued_at      BIGINT,
    processed_at   BIGINT,
    -- Idempotency: the first event with a business id wins, per tenant.
    UNIQUE (tenant, event_id)
);
CREATE INDEX events_by_tenant ON events (tenant, seq);
CREATE INDEX events_by_tenant_status ON events (tenant, status, seq);
-- The fan-out queue: events stored but not yet matched to webhooks.
CREATE INDEX events_pending ON events (seq) WHERE status = 'pending';

-- The delivery queue: one row per event, webhook and cycle (a manual retry opens a new
-- cycle). A claim sets `locked_until` (the lease) and `locked_by`; an expired lease makes
-- the row claimable again, so the work of a node that died is never lost.
CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq       BIGINT NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    webhook_id      TEXT NOT NULL,
    cycle           BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    locked_by       TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, webhook_id) WHERE state = 'queued';
CREATE INDEX deliveries_leased ON deliveries (locked_until) WHERE state = 'in_flight';
CREATE INDEX deliveries_by_event ON deliveries (event_seq, webhook_id);
CREATE INDEX deliveries_unfinished_by_webhook ON deliveries (webhook_id)
    WHERE state IN ('queued', 'in_flight');

-- The delivery log: one row per attempt. The request body is not copied here: it is
-- rendered from the event, byte for byte the same on every attempt. Ids are UUID v7, so
-- they sort by creation time too.
CREATE TABLE attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     BIGINT NOT NULL,
    event_seq       BIGINT NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    webhook_id      TEXT NOT NULL,
    attempt_number  BIGINT NOT NULL,
    request_url     TEXT NOT NULL,
    request_headers TEXT NOT NULL, -- JSON object of strings, as sent
    response_status BIGINT,
    response_body   TEXT,
    error_message   TEXT,
    status          TEXT NOT NULL,
    duration_ms     BIGINT,
    created_at      BIGINT NOT NULL,
    next_retry_at   BIGINT
);
CREATE INDEX attempts_by_webhook ON attempts (webhook_id, created_at);
CREATE INDEX attempts_by_event ON attempts (event_seq, created_at);
CREATE INDEX attempts_by_age ON attempts (created_at);
