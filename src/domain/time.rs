//! Timestamps: Herald keeps every instant as Unix milliseconds (`i64`) in memory and in both
//! stores, and renders them one way at the edges: ISO 8601 UTC with milliseconds and `Z`.

use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::macros::format_description;

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Renders Unix milliseconds as `2025-12-29T10:00:00.000Z`.
pub fn format_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// Parses an ISO 8601 / RFC 3339 instant into Unix milliseconds. A value without an offset is
/// read as UTC, which is what producers sending `2025-12-29T10:00:00` mean in practice.
pub fn parse_iso8601_ms(text: &str) -> Option<i64> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .or_else(|_| {
            time::PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|at| at.assume_utc())
        })
        .ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Serde helpers so response types can hold milliseconds and still render ISO strings.
pub mod serde_ms {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_ms(*ms))
    }

    pub mod option {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(
            ms: &Option<i64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => serializer.serialize_str(&super::super::format_ms(*ms)),
                None => serializer.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_milliseconds_and_z() {
        assert_eq!(format_ms(1_767_002_400_000), "2025-12-29T10:00:00.000Z");
        assert_eq!(format_ms(1_767_002_400_123), "2025-12-29T10:00:00.123Z");
    }

    #[test]
    fn parses_common_iso_forms() {
        assert_eq!(
            parse_iso8601_ms("2025-12-29T10:00:00.000Z"),
            Some(1_767_002_400_000)
        );
        assert_eq!(
            parse_iso8601_ms("2025-12-29T11:00:00+01:00"),
            Some(1_767_002_400_000)
        );
        assert_eq!(
            parse_iso8601_ms("2025-12-29T10:00:00Z"),
            Some(1_767_002_400_000)
        );
        assert_eq!(
            parse_iso8601_ms("2025-12-29T10:00:00"),
            Some(1_767_002_400_000)
        );
        assert_eq!(parse_iso8601_ms("yesterday"), None);
        assert_eq!(parse_iso8601_ms(""), None);
    }
}
