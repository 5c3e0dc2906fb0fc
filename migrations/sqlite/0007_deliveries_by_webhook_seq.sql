-- Deliveries name their webhook by a small integer key instead of its 36-character id.
--
-- The webhook id was the largest value in a delivery row and the first column of both of its
-- queue indexes: about 110 of the ~175 bytes each new delivery wrote to the table and its two
-- indexes. Every event writes one delivery per webhook, so a webhook that never answers pays
-- that for each event while its deliveries wait (herald bench h) and every delivery pays it
-- on its way through the queue (herald bench d). Attempts keep the id: the log is read by it
-- and written once per attempt.
--
-- Webhooks get `seq`, never reused (AUTOINCREMENT): deliveries outlive their webhook, and a
-- later webhook must not inherit them. Both tables are rebuilt (SQLite cannot change a
-- primary key or a column's type); Herald runs its migrations with foreign keys off.
CREATE TABLE webhooks_new (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    tenant      TEXT NOT NULL REFERENCES tenants (name),
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    api_key     TEXT NOT NULL,
    event_types TEXT NOT NULL, -- JSON array of patterns
    is_active   INTEGER NOT NULL,
    metadata    TEXT NOT NULL, -- JSON object
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
INSERT INTO webhooks_new (id, tenant, name, url, api_key, event_types, is_active, metadata,
                          created_at, updated_at)
SELECT id, tenant, name, url, api_key, event_types, is_active, metadata, created_at, updated_at
FROM webhooks
ORDER BY rowid;
DROP TABLE webhooks;
ALTER TABLE webhooks_new RENAME TO webhooks;
CREATE INDEX webhooks_by_tenant ON webhooks (tenant, created_at);

-- Deliveries of webhooks deleted before this migration have finished (deleting a webhook
-- ends its deliveries) and only count towards their events' statuses; they keep key 0,
-- which no webhook has.
CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY,
    event_seq       INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    webhook_seq     INTEGER NOT NULL,
    cycle           INTEGER NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    locked_by       TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO deliveries_new (id, event_seq, webhook_seq, cycle, state, attempts, next_attempt_at,
                            locked_until, locked_by, created_at, updated_at)
SELECT d.id, d.event_seq, COALESCE(w.seq, 0), d.cycle, d.state, d.attempts, d.next_attempt_at,
       d.locked_until, d.locked_by, d.created_at, d.updated_at
FROM deliveries AS d LEFT JOIN webhooks AS w ON w.id = d.webhook_id
ORDER BY d.id;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;

CREATE INDEX deliveries_leased ON deliveries (locked_until) WHERE state = 'in_flight';
CREATE INDEX deliveries_by_event ON deliveries (event_seq, webhook_seq);
CREATE INDEX deliveries_queued_by_webhook ON deliveries (webhook_seq, next_attempt_at)
    WHERE state = 'queued';
