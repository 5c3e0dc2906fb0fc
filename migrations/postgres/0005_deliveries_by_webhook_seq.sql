-- Deliveries name their webhook by a small integer key instead of its 36-character id, as on
-- SQLite (its migration 0007), so both backends have one schema and run the same statements.
--
-- The webhook id was the largest value in a delivery row and the first column of both of its
-- queue indexes (deliveries_by_event, deliveries_queued_by_webhook): every event writes one
-- delivery per webhook, so a webhook that never answers pays that for each event while its
-- deliveries wait, and every delivery pays it on its way through the queue. Attempts keep the
-- id: the log is read by it and written once per attempt.
--
-- Webhooks get `seq`, never reused (an identity never hands out a value twice): deliveries
-- outlive their webhook, and a later webhook must not inherit them. `id` stays the primary
-- key, so the row locks on webhooks (`KEY SHARE` for fan-outs and retries, `NO KEY UPDATE` for
-- health, `FOR UPDATE` to switch one off) keep their meaning: nothing updates `seq`.
--
-- Nodes of an earlier Herald name deliveries by webhook id: stop them before this runs. The
-- backfill writes every delivery row once and the table is locked meanwhile, so on a large
-- queue it takes a while.
ALTER TABLE webhooks ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
ALTER TABLE webhooks ADD CONSTRAINT webhooks_seq_key UNIQUE (seq);

-- Deliveries of webhooks deleted before this migration have finished (deleting a webhook
-- ends its deliveries) and only count towards their events' statuses; they keep key 0,
-- which no webhook has: the default every existing delivery starts from, dropped once the
-- others have their webhook's key (Herald always writes the key).
ALTER TABLE deliveries ADD COLUMN webhook_seq BIGINT NOT NULL DEFAULT 0;
UPDATE deliveries AS d SET webhook_seq = w.seq FROM webhooks AS w WHERE w.id = d.webhook_id;
ALTER TABLE deliveries ALTER COLUMN webhook_seq DROP DEFAULT;

-- Dropping the column drops deliveries_by_event and deliveries_queued_by_webhook with it;
-- both are made again on the key.
ALTER TABLE deliveries DROP COLUMN webhook_id;
CREATE INDEX deliveries_by_event ON deliveries (event_seq, webhook_seq);
CREATE INDEX deliveries_queued_by_webhook ON deliveries (webhook_seq, next_attempt_at)
    WHERE state = 'queued';
