//! Finding events by business id on SQLite: the `event_ids` index of every business id in
//! full (16 bytes), written in sorted runs of many events at a time, and the tail of events
//! published since the last run, which the writer keeps in memory (migration 0006 says why
//! runs: a random UUID lands on a random page of an index, so an entry per publish dirtied a
//! page per event; migration 0008 why in full: ids that share a prefix must not share a key).
//!
//! Every event with `seq` up to `event_keys_merged.through_seq` has its id in `event_ids`;
//! the later ones are the tail. [`RecentKeys`] holds the tail's ids for `seq` in
//! `(through, known]`; anything after `known` (committed by another process, or by this one a
//! moment before it noted it) is found by scanning the rows after `known`, which is also what a
//! process that never published does, from `through`.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::StoreResult;

/// Tail length at which the next publish moves the tail's keys into `event_ids`. A run of n
/// keys dirties each index page at most once, so the larger the run, the fewer pages per
/// event; the memory held is a few dozen bytes a key.
pub(super) const MERGE_AT: usize = 32_768;

/// A business id (a UUID, as [`crate::domain::event`] renders it) as the 128-bit number that
/// `event_ids` holds as 16 big-endian bytes, so a time-ordered id (UUIDv7) sorts by time. A
/// text that is not a UUID cannot be stored, and gets an id no stored event has.
pub(super) fn event_number(event_id: &str) -> u128 {
    Uuid::parse_str(event_id).map_or(u128::MAX, |id| id.as_u128())
}

/// The `events.event_key` column of migration 0004: the id's first 60 bits. Only written
/// now (the column cannot be dropped without rewriting the table); lookups use the full id.
pub(super) fn event_key(number: u128) -> i64 {
    (number >> 68) as i64
}

/// How statements take an id: hex text, which `unhex` turns into the stored bytes.
pub(super) fn id_hex(number: u128) -> String {
    format!("{number:032x}")
}

/// The keys of the tail, as far as this process knows it. `None` until the first publish
/// reads it.
#[derive(Default)]
pub(super) struct RecentKeys(Mutex<Option<Tail>>);

struct Tail {
    /// Events up to this `seq` are in `event_ids`.
    through: i64,
    /// Events in `(through, known]` are in `keys`.
    known: i64,
    /// `(business id, seq)`: an id belongs to several events only under several tenants.
    keys: BTreeSet<(u128, i64)>,
}

impl Tail {
    /// The `seq` of every tail event holding the business id `number`.
    fn seqs(&self, number: u128) -> impl Iterator<Item = i64> + '_ {
        self.keys
            .range((number, i64::MIN)..=(number, i64::MAX))
            .map(|&(_, seq)| seq)
    }
}

/// What a lookup in a publishing transaction starts from; see [`RecentKeys::cover`].
pub(super) struct Covered {
    through: i64,
    known: i64,
    /// The tail is moved into `event_ids` in this transaction.
    merge: bool,
}

impl RecentKeys {
    fn tail(&self) -> std::sync::MutexGuard<'_, Option<Tail>> {
        // The tail is rebuilt from the database whenever in doubt, so a panic elsewhere
        // while it was held leaves nothing to distrust.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the memory cover the whole tail, inside a write transaction (so nothing can be
    /// published meanwhile): `through` and `last_seq` are what that transaction reads. Moves
    /// the tail into `event_ids` once it is [`MERGE_AT`] long.
    pub async fn cover(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        through: i64,
        last_seq: i64,
    ) -> StoreResult<Covered> {
        self.catch_up(tx, through, last_seq).await?;
        let merge = self
            .tail()
            .as_ref()
            .is_some_and(|t| t.keys.len() >= MERGE_AT);
        if merge {
            merge_tail(tx, through, last_seq).await?;
        }
        Ok(Covered {
            through,
            known: last_seq,
            merge,
        })
    }

    /// Reads into the memory the tail rows it lacks: the new ones if it is behind, or the
    /// whole tail if it has none or a merge it did not make moved `through`.
    async fn catch_up(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        through: i64,
        last_seq: i64,
    ) -> StoreResult<()> {
        let from = match self.tail().as_ref() {
            Some(tail) if tail.through == through && tail.known == last_seq => return Ok(()),
            Some(tail) if tail.through == through && tail.known < last_seq => tail.known,
            _ => through,
        };
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT event_id, seq FROM events WHERE seq > ?")
                .bind(from)
                .fetch_all(&mut **tx)
                .await?;
        let rows = rows
            .into_iter()
            .map(|(event_id, seq)| (event_number(&event_id), seq));
        let mut tail = self.tail();
        match tail.as_mut() {
            Some(behind) if from != through => {
                behind.keys.extend(rows);
                behind.known = last_seq;
            }
            _ => {
                *tail = Some(Tail {
                    through,
                    known: last_seq,
                    keys: rows.into_iter().collect(),
                })
            }
        }
        Ok(())
    }

    /// The `seq` of every tail event holding one of the business ids `keys`.
    pub fn seqs_of(&self, keys: &[u128]) -> Vec<i64> {
        let tail = self.tail();
        let Some(tail) = tail.as_ref() else {
            return Vec::new();
        };
        keys.iter().flat_map(|&key| tail.seqs(key)).collect()
    }

    /// Notes a committed publishing transaction: what [`Self::cover`] merged, and the events
    /// it stored as `(business id, seq)`.
    pub fn committed(&self, covered: Covered, stored: Vec<(u128, i64)>) {
        let mut tail = self.tail();
        let Some(known) = tail.as_mut() else {
            return;
        };
        if known.through != covered.through || known.known != covered.known {
            // Someone else's view got in between; the next publish reads the tail again.
            *tail = None;
            return;
        }
        if covered.merge {
            known.through = covered.known;
            known.keys.clear();
        }
        known.known = stored
            .iter()
            .map(|&(_, seq)| seq)
            .max()
            .unwrap_or(known.known);
        known.keys.extend(stored);
    }

    /// For a reader: the `seq`s the memory holds for the business id `key`, and the `seq`
    /// after which rows must be scanned (`None`: from `through`, since nothing is known).
    pub fn lookup(&self, key: u128) -> (Vec<i64>, Option<i64>) {
        let tail = self.tail();
        match tail.as_ref() {
            Some(tail) => (tail.seqs(key).collect(), Some(tail.known)),
            None => (Vec::new(), None),
        }
    }
}

/// Moves the ids of the events in `(through, last_seq]` into `event_ids`, in one sorted run.
async fn merge_tail(
    tx: &mut Transaction<'_, Sqlite>,
    through: i64,
    last_seq: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO event_ids (event_id, seq) \
         SELECT unhex(replace(event_id, '-', '')) AS id, seq FROM events \
         WHERE seq > ?1 AND seq <= ?2 ORDER BY id, seq",
    )
    .bind(through)
    .bind(last_seq)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE event_keys_merged SET through_seq = ?")
        .bind(last_seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_business_id_is_its_whole_128_bits() {
        let id = "4f9c2a1e-7b3d-4c58-9e21-0a6b8d3f5c77";
        assert_eq!(event_number(id), 0x4f9c2a1e_7b3d_4c58_9e21_0a6b8d3f5c77);
        assert_eq!(id_hex(event_number(id)), "4f9c2a1e7b3d4c589e210a6b8d3f5c77");
        assert_eq!(event_key(event_number(id)), 0x04f9_c2a1_e7b3_d4c5);
        // Ids that share their first 60 bits, or any prefix, are different numbers.
        let twin = "4f9c2a1e-7b3d-4c58-9e21-0a6b8d3f5c78";
        assert_eq!(event_key(event_number(id)), event_key(event_number(twin)));
        assert_ne!(event_number(id), event_number(twin));
        assert_eq!(event_number("not a uuid"), u128::MAX);
    }

    #[test]
    fn ids_of_time_ordered_events_grow_with_time() {
        let ids: Vec<u128> = (0..1_000)
            .map(|_| event_number(&Uuid::now_v7().to_string()))
            .collect();
        assert!(ids.is_sorted(), "UUIDv7 ids keep their order");
    }
}
