-- The claim query skips due deliveries of webhooks at their in-flight limit. With the webhook
-- in the index it can do so from the index alone, instead of reading every skipped row: a
-- slow endpoint's backlog then costs each claim much less (measured with herald bench h).
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, webhook_id) WHERE state = 'queued';
