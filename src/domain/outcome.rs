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
    }
}
