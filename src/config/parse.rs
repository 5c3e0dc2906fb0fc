//! Parsing each setting's text, with a message saying what was expected; the [`Parser`]
//! collects every problem, each naming its setting and where the value came from.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::database_url::{DatabaseUrl, redact_password};
use super::sources::Values;
use super::{OperatorWebhook, WriteRate};

const MAX_RETRY_DELAYS: usize = 20;
/// The longest delay a schedule may hold, so that every next-attempt instant stays far
/// inside what timers and `i64` milliseconds can represent.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(7 * 86_400);

/// Parses the layered values, collecting a problem for each that does not parse.
pub(super) struct Parser<'a> {
    values: &'a Values,
    problems: Vec<String>,
}

impl<'a> Parser<'a> {
    /// A parser over `values`, starting with the problems found while layering them.
    pub(super) fn new(values: &'a Values, problems: Vec<String>) -> Parser<'a> {
        Parser { values, problems }
    }

    /// Every problem found, in the order found.
    pub(super) fn into_problems(self) -> Vec<String> {
        self.problems
    }

    /// The setting `key` parsed by `parse`; on failure, a problem naming the setting, its
    /// source and the (password-redacted) value, and the type's default.
    pub(super) fn get<T: Default>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        let (value, source) = &self.values[key];
        match parse(value.trim()) {
            Ok(parsed) => parsed,
            Err(expected) => {
                let value = redact_password(value);
                self.problems
                    .push(format!("{key} (from {source}): {expected}, got {value:?}"));
                T::default()
            }
        }
    }
}

pub(super) fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    let sqlite = value.starts_with("sqlite:") && value.len() > "sqlite:".len();
    let postgres = value.starts_with("postgres://") || value.starts_with("postgresql://");
    if sqlite || postgres {
        Ok(DatabaseUrl::new(value))
    } else {
        Err("expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE".into())
    }
}

pub(super) fn parse_listen(value: &str) -> Result<String, String> {
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(value.to_string())
    } else {
        Err("expected HOST:PORT such as 127.0.0.1:8080".into())
    }
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn parse_bounded(value: &str, min: u32, max: u32) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected a whole number from {min} to {max}"))
}

/// Parses `500ms`, `30s`, `2m`, `1h` or `7d`.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
}

/// `N/s` or `N/m`, from one a minute to 100,000 a second.
pub(super) fn parse_rate(value: &str) -> Result<WriteRate, String> {
    const EXPECTED: &str = "expected a rate such as 20/s or 600/m, from 1/m to 100000/s";
    let (count, unit) = value.split_once('/').ok_or(EXPECTED)?;
    let count: u32 = count.trim().parse().map_err(|_| EXPECTED)?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        _ => return Err(EXPECTED.into()),
    };
    if count == 0 || count > 100_000 {
        return Err(EXPECTED.into());
    }
    Ok(WriteRate { count, per })
}

/// Empty (no proxy) or `http://host:port` (port 80 when left out).
pub(super) fn parse_proxy(value: &str) -> Result<Option<String>, String> {
    const EXPECTED: &str = "expected empty or http://HOST:PORT";
    if value.is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(value).map_err(|_| EXPECTED)?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if url.scheme() != "http" || url.host_str().is_none() || !bare {
        return Err(EXPECTED.into());
    }
    Ok(Some(value.to_string()))
}

pub(super) fn parse_duration_between(
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    parse_duration(value)
        .filter(|d| (min..=max).contains(d))
        .ok_or_else(|| {
            format!(
                "expected a duration such as 30s, 2m or 7d, from {} to {}",
                humanize(min),
                humanize(max)
            )
        })
}

/// `0` (off) or a duration within bounds.
pub(super) fn parse_duration_or_off(
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Option<Duration>, String> {
    if value == "0" {
        return Ok(None);
    }
    parse_duration_between(value, min, max)
        .map(Some)
        .map_err(|expected| format!("{expected}, or 0 for off"))
}

/// The operator's endpoint: both settings or neither. The secret is never echoed.
pub(super) fn operator_webhook(parser: &mut Parser<'_>) -> Option<OperatorWebhook> {
    let url = parser.values["operator_webhook_url"].0.trim().to_string();
    let (secret, source) = &parser.values["operator_webhook_secret"];
    let secret = secret.trim();
    match (url.is_empty(), secret.is_empty()) {
        (true, true) => return None,
        (false, true) | (true, false) => {
            parser.problems.push(
                "operator_webhook_url and operator_webhook_secret: set both or neither".into(),
            );
            return None;
        }
        (false, false) => {}
    }
    let parsed = url::Url::parse(&url).ok();
    if !parsed
        .as_ref()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
    {
        let source = &parser.values["operator_webhook_url"].1;
        parser.problems.push(format!(
            "operator_webhook_url (from {source}): expected an http(s) URL, got {url:?}"
        ));
        return None;
    }
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|key| !key.is_empty());
    let Some(key) = key else {
        parser.problems.push(format!(
            "operator_webhook_secret (from {source}): expected whsec_ followed by base64 (value not shown)"
        ));
        return None;
    };
    Some(OperatorWebhook { url, key })
}

pub(super) fn parse_schedule(value: &str) -> Result<Vec<Duration>, String> {
    const EXPECTED: &str = "expected comma-separated delays such as 1s,5s,25s,2m,10m";
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let delays = value
        .split(',')
        .map(|part| parse_duration(part.trim()).ok_or(EXPECTED))
        .collect::<Result<Vec<_>, _>>()?;
    if delays.len() > MAX_RETRY_DELAYS {
        return Err(format!("{EXPECTED}, at most {MAX_RETRY_DELAYS} of them"));
    }
    if delays.iter().any(|delay| *delay > MAX_RETRY_DELAY) {
        return Err(format!(
            "{EXPECTED}, none longer than {}",
            humanize(MAX_RETRY_DELAY)
        ));
    }
    Ok(delays)
}

pub(super) fn humanize(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const UNITS: [(&str, u64); 5] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];

    proptest! {
        #[test]
        fn a_number_and_a_unit_parse_to_that_duration(n in 0u64..=1_000_000_000, unit in 0..UNITS.len()) {
            let (suffix, ms) = UNITS[unit];
            prop_assert_eq!(
                parse_duration(&format!("{n}{suffix}")),
                Some(Duration::from_millis(n * ms))
            );
        }

        #[test]
        fn a_humanized_duration_parses_back(ms in 0u64..=10 * 365 * 86_400_000) {
            let duration = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&humanize(duration)), Some(duration));
        }

        #[test]
        fn a_schedule_of_humanized_delays_parses_back(
            ms in prop::collection::vec(0u64..=MAX_RETRY_DELAY.as_millis() as u64, 1..=MAX_RETRY_DELAYS),
        ) {
            let delays: Vec<Duration> = ms.into_iter().map(Duration::from_millis).collect();
            let text = delays.iter().map(|d| humanize(*d)).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_schedule(&text), Ok(delays));
        }

        #[test]
        fn any_text_is_judged_without_panicking(text in "\\PC*", digits in "[0-9]{1,30}[a-z]{0,3}") {
            let _ = parse_duration(&text);
            let _ = parse_duration(&digits);
            let _ = parse_schedule(&text);
            let _ = parse_rate(&text);
            let _ = parse_proxy(&text);
            if let Ok(delays) = parse_schedule(&digits) {
                prop_assert!(delays.iter().all(|d| *d <= MAX_RETRY_DELAY));
            }
        }
    }
}
