-- The index of business-id keys, written in bulk instead of one entry per publish.
--
-- Business ids are mostly random UUIDs (v4), so each new key landed on a random leaf of
-- events_by_key: a commit of a few thousand events dirtied nearly every leaf, and each event
-- cost about one 4 KiB page written to the WAL and again by the checkpoint (herald bench c:
-- half of every commit's time went to that index). Keys now reach `event_keys` in sorted runs
-- of many thousand events at a time, which dirty each leaf once per run; the events published
-- since the last run (those with `seq` above `event_keys_merged.through_seq`) are looked up
-- through the writer's memory and a scan of that tail (src/store/sqlite/events.rs).
CREATE TABLE event_keys (
    event_key INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (event_key, seq)
) WITHOUT ROWID;

-- One row: every event with `seq` up to `through_seq` has its key in event_keys.
CREATE TABLE event_keys_merged (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    through_seq INTEGER NOT NULL
);

INSERT INTO event_keys (event_key, seq)
SELECT event_key, seq FROM events ORDER BY event_key, seq;

INSERT INTO event_keys_merged (id, through_seq)
VALUES (1, COALESCE((SELECT MAX(seq) FROM events), 0));

DROP INDEX events_by_key;
