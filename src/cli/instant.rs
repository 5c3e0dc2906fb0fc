//! Instants as operators type them: a duration back from now (`90s`, `1h`, `7d`) or an
//! ISO 8601 instant. Shared by `events list --since` and `webhooks recover --since/--until`.

use anyhow::anyhow;

use crate::config::parse_duration;
use crate::domain::time::parse_iso8601_ms;

/// `text` as Unix milliseconds: a duration counts back from `now_ms`, anything else must be
/// an ISO 8601 instant. `flag` names the option in the error.
pub fn parse_instant(flag: &str, text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Some(ago) = parse_duration(text) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    parse_iso8601_ms(text).ok_or_else(|| {
        anyhow!(
            "{flag} must be a duration back from now (30m, 1h, 7d) or an ISO 8601 instant \
             (2025-12-29T10:00:00Z), not {text:?}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::parse_instant;

    const NOW: i64 = 1_767_000_000_000;

    #[test]
    fn a_duration_counts_back_from_now() {
        assert_eq!(
            parse_instant("--since", "1h", NOW).unwrap(),
            NOW - 3_600_000
        );
        assert_eq!(parse_instant("--since", "90s", NOW).unwrap(), NOW - 90_000);
        assert_eq!(
            parse_instant("--since", "7d", NOW).unwrap(),
            NOW - 7 * 86_400_000
        );
    }

    #[test]
    fn an_iso_instant_is_taken_as_is() {
        assert_eq!(
            parse_instant("--since", "2025-12-29T10:00:00.000Z", NOW).unwrap(),
            1_767_002_400_000
        );
        assert_eq!(
            parse_instant("--since", "2025-12-29T11:00:00+01:00", NOW).unwrap(),
            1_767_002_400_000
        );
    }

    #[test]
    fn anything_else_names_the_flag() {
        for text in ["", "yesterday", "1 hour", "-1h", "2025-13-45"] {
            let error = parse_instant("--until", text, NOW).unwrap_err().to_string();
            assert!(error.starts_with("--until must be"), "{text:?}: {error}");
        }
    }
}
