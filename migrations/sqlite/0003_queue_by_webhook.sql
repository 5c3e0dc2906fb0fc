-- Claims walk the queue one webhook at a time (see `claim_work`): the due deliveries of each
-- webhook in due order, and the webhooks that have any, each a seek in this index.
CREATE INDEX deliveries_queued_by_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE state = 'queued';
