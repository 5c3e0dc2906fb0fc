//! Finding events by business id on SQLite: the `event_keys` index, written in sorted runs of
//! many events at a time, and the tail of events published since the last run, which the
//! writer keeps in memory (migration 0006 says why: a random UUID's key lands on a random page
//! of an index, so a key per publish dirtied a page per event).
//!
//! Every event with `seq` up to `event_keys_merged.through_seq` has its key in `event_keys`;
//! the later ones are the tail. [`RecentKeys`] holds the tail's keys for `seq` in
//! `(through, known]`; anything after `known` (committed by another process, or by this one a
//! moment before it noted it) is found by scanning the rows after `known`, which is also what a
//! process that never published does, from `through`.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::StoreResult;

/// Tail length at which the next publish moves the tail's keys into `event_keys`. A run of n
/// keys dirties each index page at most once, so the larger the run, the fewer pages per
/// event; the memory held is a few dozen bytes a key.
pub(super) const MERGE_AT: usize = 32_768;

/// The index key of a business id (a UUID, as [`crate::domain::event`] renders it): its first
/// 60 bits, so the key of a time-ordered id (UUIDv7) grows with time. Migration 0004 computes
/// the same from the text of stored ids. A text that is not a UUID cannot be stored, and gets
/// a key no stored event has.
pub(super) fn event_key(event_id: &str) -> i64 {
    Uuid::parse_str(event_id).map_or(-1, |id| (id.as_u128() >> 68) as i64)
}

/// The keys of the tail, as far as this process knows it. `None` until the first publish
/// reads it.
#[derive(Default)]
pub(super) struct RecentKeys(Mutex<Option<Tail>>);

struct Tail {
    /// Events up to this `seq` are in `event_keys`.
    through: i64,
    /// Events in `(through, known]` are in `keys`.
    known: i64,
    /// `(event_key, seq)`: a key can belong to several events (one business id under several
    /// tenants, or two ids that share 60 bits).
    keys: BTreeSet<(i64, i64)>,
}

impl Tail {
    /// The `seq` of every tail event holding `key`.
    fn seqs(&self, key: i64) -> impl Iterator<Item = i64> + '_ {
        self.keys
            .range((key, i64::MIN)..=(key, i64::MAX))
            .map(|&(_, seq)| seq)
    }
}

/// What a lookup in a publishing transaction starts from; see [`RecentKeys::cover`].
pub(super) struct Covered {
    through: i64,
    known: i64,
    /// The tail is moved into `event_keys` in this transaction.
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
    /// published meanwhile): `through` and `last_seq` are what that transaction reads.
    pub async fn cover(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        through: i64,
        last_seq: i64,
    ) -> StoreResult<Covered> {
        // Rows after `from` are read: the new ones if the memory is behind, or the whole tail
        // if it has none or a merge it did not make moved `through`.
        let from = match self.tail().as_ref() {
            Some(tail) if tail.through == through && tail.known == last_seq => None,
            Some(tail) if tail.through == through && tail.known < last_seq => Some(tail.known),
            _ => Some(through),
        };
        if let Some(from) = from {
            let rows: Vec<(i64, i64)> =
                sqlx::query_as("SELECT event_key, seq FROM events WHERE seq > ?")
                    .bind(from)
                    .fetch_all(&mut **tx)
                    .await?;
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
        }
        let merge = self
            .tail()
            .as_ref()
            .is_some_and(|t| t.keys.len() >= MERGE_AT);
        if merge {
            sqlx::query(
                "INSERT INTO event_keys (event_key, seq) SELECT event_key, seq FROM events \
                 WHERE seq > ?1 AND seq <= ?2 ORDER BY event_key, seq",
            )
            .bind(through)
            .bind(last_seq)
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE event_keys_merged SET through_seq = ?")
                .bind(last_seq)
                .execute(&mut **tx)
                .await?;
        }
        Ok(Covered {
            through,
            known: last_seq,
            merge,
        })
    }

    /// The `seq` of every tail event holding one of `keys`.
    pub fn seqs_of(&self, keys: &[i64]) -> Vec<i64> {
        let tail = self.tail();
        let Some(tail) = tail.as_ref() else {
            return Vec::new();
        };
        keys.iter().flat_map(|&key| tail.seqs(key)).collect()
    }

    /// Notes a committed publishing transaction: what [`Self::cover`] merged, and the events
    /// it stored as `(event_key, seq)`.
    pub fn committed(&self, covered: Covered, stored: Vec<(i64, i64)>) {
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

    /// For a reader: the `seq`s the memory holds for `key`, and the `seq` after which rows
    /// must be scanned (`None`: from `through`, since nothing is known).
    pub fn lookup(&self, key: i64) -> (Vec<i64>, Option<i64>) {
        let tail = self.tail();
        match tail.as_ref() {
            Some(tail) => (tail.seqs(key).collect(), Some(tail.known)),
            None => (Vec::new(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_of_a_business_id_is_its_first_fifteen_hex_digits() {
        assert_eq!(
            event_key("4f9c2a1e-7b3d-4c58-9e21-0a6b8d3f5c77"),
            0x04f9_c2a1_e7b3_d4c5
        );
        assert_eq!(
            event_key("ffffffff-ffff-4fff-bfff-ffffffffffff"),
            0xfff_ffff_ffff_f4ff
        );
        assert_eq!(event_key("not a uuid"), -1);
    }

    #[test]
    fn keys_of_time_ordered_ids_grow_with_time() {
        let ids: Vec<String> = (0..1_000).map(|_| Uuid::now_v7().to_string()).collect();
        let keys: Vec<i64> = ids.iter().map(|id| event_key(id)).collect();
        assert!(keys.is_sorted(), "keys of UUIDv7 ids keep their order");
        assert!(keys.iter().all(|key| *key >= 0));
    }
}
