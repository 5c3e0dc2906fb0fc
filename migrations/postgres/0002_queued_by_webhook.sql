-- Claims walk the queue one webhook at a time (see the claim in src/store/postgres): this
-- index finds each webhook with queued deliveries and its due ones without reading the
-- backlog of a webhook at its in-flight limit. Scanning `deliveries_due` in due order read
-- past every due delivery of such a webhook on every claim (herald bench h: a dead
-- endpoint's growing backlog cost the healthy webhook beside it a fifth of its deliveries).
CREATE INDEX deliveries_queued_by_webhook ON deliveries (webhook_id, next_attempt_at)
    WHERE state = 'queued';
