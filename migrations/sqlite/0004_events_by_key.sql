-- Idempotency through a compact integer key instead of UNIQUE (tenant, event_id).
--
-- Business ids are mostly random UUIDs, so every publish inserted into a random place of that
-- index: at a few thousand events per commit nearly every page of it was dirtied, written to
-- the WAL and copied back by the checkpoint, about 4 KiB of disk per event (5 of the 6 KiB an
-- event cost in all). `event_key` holds the first 60 bits of the business id (a UUID) in an
-- index of small integer entries, about a quarter of the old one's size and time-ordered for
-- time-ordered ids (UUIDv7, which Herald now generates when a producer sends none). It is not
-- unique: the publishing transaction looks the keys up and compares tenant and eventId, and
-- SQLite's single writer makes that check and the insert one step.
--
-- The rebuilt table also goes without the old (tenant, status, seq) index: no query used it
-- (lists filter on status while walking events_by_tenant in seq order), and every status
-- change rewrote an entry of it.
--
-- SQLite cannot drop a table constraint, so the table is rebuilt (the documented way: a new
-- table, a copy, the old one dropped, the new one renamed). Herald runs its migrations with
-- foreign keys off so the drop does not cascade to deliveries and attempts.
CREATE TABLE events_new (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    tenant         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_key      INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    payload        TEXT NOT NULL, -- compact JSON object; the delivery body is rendered from it
    user_id        TEXT,
    source_service TEXT,
    occurred_at    INTEGER NOT NULL,
    status         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    queued_at      INTEGER,
    processed_at   INTEGER
);

-- The key of a stored id: its first 15 hex digits (the UUID's text is canonical, lowercase
-- and hyphenated) read as an integer, which `event_key` in src/store/sqlite/events.rs also
-- computes.
INSERT INTO events_new (seq, id, tenant, event_id, event_key, event_type, payload, user_id,
                        source_service, occurred_at, status, created_at, queued_at, processed_at)
SELECT e.seq, e.id, e.tenant, e.event_id,
       (SELECT SUM((instr('0123456789abcdef', substr(d.hex, p.n, 1)) - 1) << (4 * (15 - p.n)))
        FROM (SELECT substr(e.event_id, 1, 8) || substr(e.event_id, 10, 4)
                     || substr(e.event_id, 15, 3) AS hex) AS d,
             (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
              UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8
              UNION ALL SELECT 9 UNION ALL SELECT 10 UNION ALL SELECT 11 UNION ALL SELECT 12
              UNION ALL SELECT 13 UNION ALL SELECT 14 UNION ALL SELECT 15) AS p),
       e.event_type, e.payload, e.user_id, e.source_service, e.occurred_at, e.status,
       e.created_at, e.queued_at, e.processed_at
FROM events AS e
ORDER BY e.seq;

DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE INDEX events_by_key ON events (event_key);
CREATE INDEX events_by_tenant ON events (tenant, seq);
-- The fan-out queue: events stored but not yet matched to webhooks.
CREATE INDEX events_pending ON events (seq) WHERE status = 'pending';
