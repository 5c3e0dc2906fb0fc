-- Every index on deliveries is written on each delivery's way through the queue (insert,
-- claim, result), and a webhook that never answers doubles those writes for every event
-- (herald bench h). Two of them duplicate what the per-webhook queue index already knows:
-- the next due time is the least of each webhook's first due time (a skip scan, as claims
-- do), and a webhook's unfinished deliveries are its queued ones there plus its in-flight
-- ones in deliveries_leased, which holds only what is being sent.
DROP INDEX deliveries_due;
DROP INDEX deliveries_unfinished_by_webhook;
