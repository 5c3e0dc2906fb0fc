-- Every index is written on each change of a row that is not a HOT update, and an event's or
-- a delivery's state changes are never HOT (the state is in index predicates): three indexes
-- cost work on every event without a query that needs them, as on SQLite (its migrations
-- 0004 and 0005). The next due time is the least of each webhook's first due time (the skip
-- scan the claims use, over deliveries_queued_by_webhook); a webhook's unfinished deliveries
-- are its queued ones there and its in-flight ones in deliveries_leased; event lists walk
-- events_by_tenant in seq order whatever status they filter on.
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_unfinished_by_webhook;
DROP INDEX IF EXISTS events_by_tenant_status;
