//! The opaque `nextCursor` of the event list: the record id of a page's last event, in
//! URL-safe base64. It names an event the caller has already seen, so it reveals nothing
//! about other tenants; the store finds its position within the caller's tenant only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::domain::ids::EventId;

/// The cursor that continues after `last`, the last event of a page.
pub fn encode(last: EventId) -> String {
    URL_SAFE_NO_PAD.encode(last.as_uuid().as_bytes())
}

/// The event a cursor continues after; `None` for anything [`encode`] cannot have made.
pub fn decode(cursor: &str) -> Option<EventId> {
    // The engine refuses padding and non-zero trailing bits, so every event has exactly one
    // cursor and any altered character changes the id or fails here.
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok().map(EventId::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_the_event_it_was_made_from() {
        let id = EventId::generate();
        let cursor = encode(id);
        assert_eq!(cursor.len(), 22);
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(decode(&cursor), Some(id));
    }

    #[test]
    fn an_altered_or_foreign_cursor_decodes_to_nothing_or_to_another_id() {
        let id = EventId::generate();
        let cursor = encode(id);
        for bad in [
            "",
            "12345",
            "not a cursor",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "AAAAAAAAAAAAAAAAAAAAAB",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        // Every single-character change either fails or names another event.
        for (i, _) in cursor.char_indices() {
            for replacement in ['A', 'z', '-', '_', '0'] {
                let mut altered = cursor.clone();
                altered.replace_range(i..i + 1, &replacement.to_string());
                if altered != cursor {
                    assert_ne!(decode(&altered), Some(id), "{altered}");
                }
            }
        }
        // The old form (a bare number) is not a cursor.
        assert_eq!(decode("12345678"), None);
    }
}
