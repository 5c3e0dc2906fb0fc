-- Business ids indexed in full, instead of by their first 60 bits.
--
-- `event_keys` held the first 60 bits of each business id: ids that share them (a producer
-- may choose any UUID) had one key, and each publish of such an id read every stored event
-- holding it, payloads included, while it held the writer: 28-45 ms a publish after 2,000
-- of them, against 2-3 ms. `event_ids` holds the whole id, its 16 bytes big-endian, so a
-- time-ordered id (UUIDv7) still sorts by time and is appended, and an entry is found only by
-- its own id (under each tenant that used it), however ids are chosen. It is written the same
-- way, in sorted runs of many events (migration 0006); `event_keys_merged.through_seq` keeps
-- its meaning for the new table. `events.event_key` is no longer read; dropping the column
-- would rewrite every event, so it stays.
CREATE TABLE event_ids (
    event_id BLOB NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (event_id, seq)
) WITHOUT ROWID;

INSERT INTO event_ids (event_id, seq)
SELECT unhex(replace(event_id, '-', '')) AS id, seq FROM events
WHERE seq <= (SELECT through_seq FROM event_keys_merged)
ORDER BY id, seq;

DROP TABLE event_keys;
