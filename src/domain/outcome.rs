//! What an attempt's result means. A failing partner endpoint is data, not an error: every
//! result is classified once into success, retry or give up.

use std::time::Duration;

/// How an attempt ended, as the sender saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// The receiver answered (any status, redirects included: they are never followed).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer within the delivery timeout.
    TimedOut,
    /// Connection, TLS or protocol failure before an answer.
    TransportFailed,
    /// The destination is not allowed (scheme or address); attempting again will not help.
    Refused,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Succeeded,
    /// Try again per the schedule; the receiver may have asked for a delay.
    Retry {
        retry_after: Option<Duration>,
    },
    GiveUp,
}

/// 2xx succeeds; 5xx, 408, 429, 3xx, timeouts and transport errors are retried; other 4xx and
/// refused destinations are final. `Retry-After` is honoured on 429 and 503.
pub fn classify(result: &AttemptResult) -> Verdict {
    match *result {
        AttemptResult::Answered {
            status,
            retry_after,
        } => match status {
            200..=299 => Verdict::Succeeded,
            429 | 503 => Verdict::Retry { retry_after },
            408 | 300..=399 | 500..=599 => Verdict::Retry { retry_after: None },
            _ => Verdict::GiveUp,
        },
        AttemptResult::TimedOut | AttemptResult::TransportFailed => {
            Verdict::Retry { retry_after: None }
        }
        AttemptResult::Refused => Verdict::GiveUp,
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// The most of a response body kept in the delivery log, in bytes of UTF-8.
pub const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// A partner's reply as the log keeps it: valid UTF-8 (invalid bytes become U+FFFD), U+0000
/// replaced by U+FFFD too (PostgreSQL's text refuses it), cut to [`RESPONSE_BODY_LIMIT`]
/// bytes on a character boundary.
pub fn response_body_text(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(RESPONSE_BODY_LIMIT)];
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.contains('\0') {
        text = text.replace('\0', "\u{FFFD}");
    }
    // A replacement mark takes three bytes where the byte it replaced took one.
    if text.len() > RESPONSE_BODY_LIMIT {
        let mut end = RESPONSE_BODY_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Verdict {
        classify(&AttemptResult::Answered {
            status,
            retry_after: None,
        })
    }

    #[test]
    fn statuses_are_classified_per_the_contract() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(answered(status), Verdict::Succeeded, "{status}");
        }
        for status in [500, 502, 503, 504, 408, 429, 301, 302, 307, 308] {
            assert!(
                matches!(answered(status), Verdict::Retry { .. }),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 410, 422, 100] {
            assert_eq!(answered(status), Verdict::GiveUp, "{status}");
        }
        assert!(matches!(
            classify(&AttemptResult::TimedOut),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            classify(&AttemptResult::TransportFailed),
            Verdict::Retry { .. }
        ));
        assert_eq!(classify(&AttemptResult::Refused), Verdict::GiveUp);
    }

    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        let asked = Some(Duration::from_secs(7));
        assert_eq!(
            classify(&AttemptResult::Answered {
                status: 429,
                retry_after: asked
            }),
            Verdict::Retry { retry_after: asked }
        );
        assert_eq!(
            classify(&AttemptResult::Answered {
                status: 500,
                retry_after: asked
            }),
            Verdict::Retry { retry_after: None }
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(0))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // Absurd values parse without panicking; the policy caps what they ask for.
        assert_eq!(
            parse_retry_after("99999999999999999", now),
            Some(Duration::from_secs(99_999_999_999_999_999))
        );
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some());
        assert_eq!(parse_retry_after("999999999999999999999999", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn response_bodies_are_kept_as_valid_text_without_nul() {
        assert_eq!(response_body_text(b"ok"), "ok");
        assert_eq!(response_body_text(b"a\0b"), "a\u{FFFD}b");
        assert_eq!(response_body_text(b"a\xffb\xc3"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(response_body_text("é".as_bytes()), "é");
        let long = vec![b'x'; RESPONSE_BODY_LIMIT * 3];
        assert_eq!(response_body_text(&long).len(), RESPONSE_BODY_LIMIT);
        // Every byte replaced: three bytes out for one in, cut on a character boundary.
        let nuls = vec![0u8; RESPONSE_BODY_LIMIT];
        let text = response_body_text(&nuls);
        assert!(text.len() <= RESPONSE_BODY_LIMIT && text.len() > RESPONSE_BODY_LIMIT - 3);
        assert!(text.chars().all(|c| c == '\u{FFFD}'));
    }

    proptest::proptest! {
        #[test]
        fn any_reply_becomes_bounded_text_without_nul(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..(RESPONSE_BODY_LIMIT + 4096)),
        ) {
            let text = response_body_text(&bytes);
            proptest::prop_assert!(text.len() <= RESPONSE_BODY_LIMIT);
            proptest::prop_assert!(!text.contains('\0'));
            // Text that needed no repair is kept as sent (up to the limit).
            if let Ok(sent) = std::str::from_utf8(&bytes) {
                if !sent.contains('\0') && sent.len() <= RESPONSE_BODY_LIMIT {
                    proptest::prop_assert_eq!(text.as_str(), sent);
                }
            }
        }
    }
}
