-- Claims walk the queue one webhook at a time (see `claim_work`): the due deliveries of each
-- webhook in due order, and the webhooks that have any, each a seek in this index.
CREATE INDEX deliveries_queued_by_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE state = 'queued';
-- The due index now only answers "when is the next delivery due"; the webhook column 0002
-- added for the old claim scan is dead weight on every queued delivery.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'queued';
