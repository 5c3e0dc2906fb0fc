//! Herald's settings: built-in defaults, then a TOML file, then `HERALD_*` environment
//! variables, then command-line flags (flags win). Loading has no side effects: the caller
//! hands in the environment, so tests and two apps in one process never share state.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::domain::destination::DestinationPolicy;
use crate::domain::retry::RetryPolicy;

/// One setting: its key in the TOML file, its environment variable and its default.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every setting Herald reads, in the order the README documents them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "database_url",
        env: "HERALD_DATABASE_URL",
        default: "sqlite://herald.db",
        help: "`sqlite://PATH` (created if missing) or `postgres://...`",
    },
    Setting {
        key: "listen",
        env: "HERALD_LISTEN",
        default: "127.0.0.1:8080",
        help: "address to serve on",
    },
    Setting {
        key: "notifications_enabled",
        env: "HERALD_NOTIFICATIONS_ENABLED",
        default: "true",
        help: "`false` makes every `/v1/webhooks*` route answer 503",
    },
    Setting {
        key: "max_webhooks_per_tenant",
        env: "HERALD_MAX_WEBHOOKS_PER_TENANT",
        default: "5",
        help: "webhook cap per tenant, inactive ones included",
    },
    Setting {
        key: "retry_schedule",
        env: "HERALD_RETRY_SCHEDULE",
        default: "1s,5s,25s,2m,10m",
        help: "delays after attempts 1..N-1 (N-1 delays = N attempts)",
    },
    Setting {
        key: "delivery_timeout",
        env: "HERALD_DELIVERY_TIMEOUT",
        default: "30s",
        help: "per-attempt timeout",
    },
    Setting {
        key: "allow_http",
        env: "HERALD_ALLOW_HTTP",
        default: "false",
        help: "accept `http://` webhook URLs (development only)",
    },
    Setting {
        key: "allow_private_targets",
        env: "HERALD_ALLOW_PRIVATE_TARGETS",
        default: "false",
        help: "deliver to loopback/private addresses (development only)",
    },
    Setting {
        key: "log_retention",
        env: "HERALD_LOG_RETENTION",
        default: "7d",
        help: "how long delivery logs are kept",
    },
    Setting {
        key: "max_in_flight",
        env: "HERALD_MAX_IN_FLIGHT",
        default: "512",
        help: "attempts in flight at once on this node",
    },
    Setting {
        key: "max_in_flight_per_webhook",
        env: "HERALD_MAX_IN_FLIGHT_PER_WEBHOOK",
        default: "128",
        help: "attempts in flight at once to one webhook on this node",
    },
    Setting {
        key: "max_in_flight_per_tenant",
        env: "HERALD_MAX_IN_FLIGHT_PER_TENANT",
        default: "128",
        help: "attempts of one tenant in flight at once on this node",
    },
    Setting {
        key: "http_header_timeout",
        env: "HERALD_HTTP_HEADER_TIMEOUT",
        default: "10s",
        help: "a connection that has not sent a complete request head by then is closed",
    },
    Setting {
        key: "http_body_timeout",
        env: "HERALD_HTTP_BODY_TIMEOUT",
        default: "30s",
        help: "a request body must arrive within this (else 408)",
    },
    Setting {
        key: "http_idle_timeout",
        env: "HERALD_HTTP_IDLE_TIMEOUT",
        default: "60s",
        help: "idle keep-alive connections are closed after this",
    },
    Setting {
        key: "max_connections",
        env: "HERALD_MAX_CONNECTIONS",
        default: "10000",
        help: "HTTP connections open at once; further ones wait to be accepted",
    },
    Setting {
        key: "partner_write_rate",
        env: "HERALD_PARTNER_WRITE_RATE",
        default: "20/s",
        help: "partner writes per tenant (`N/s` or `N/m`); beyond it 429",
    },
    Setting {
        key: "partner_write_burst",
        env: "HERALD_PARTNER_WRITE_BURST",
        default: "100",
        help: "partner writes a tenant may make at once before the rate applies",
    },
    Setting {
        key: "egress_proxy",
        env: "HERALD_EGRESS_PROXY",
        default: "",
        help: "`http://host:port` forward proxy for every attempt (empty: connect directly)",
    },
];

const MAX_RETRY_DELAYS: usize = 20;
/// The longest delay a schedule may hold, so that every next-attempt instant stays far
/// inside what timers and `i64` milliseconds can represent.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(7 * 86_400);

/// A database URL, whose password is shown as `***` wherever it is printed or logged
/// (`Display` and `Debug`); the URL itself is reached through `Deref` to connect.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_password(&self.0))
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// `text` with the password of a URL in it shown as `***`: the password of its user
/// information (`scheme://user:PASSWORD@host`) and a `password=` query parameter. Anything
/// else is left as it is, so a message still says which database it is about.
pub fn redact_password(text: &str) -> String {
    let mut out = text.to_string();
    if let Some(start) = text.find("://").map(|i| i + 3) {
        // A password may hold `/` or `@` unencoded: the user information runs to the last
        // `@` before the query.
        let end = text[start..]
            .find(['?', '#'])
            .map_or(text.len(), |i| start + i);
        if let Some(at) = text[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = text[start..at].find(':').map(|i| start + i) {
                out = format!("{}***{}", &text[..=colon], &text[at..]);
            }
        }
    }
    let mut from = 0;
    while let Some(found) = out[from..].find("password=").map(|i| from + i) {
        let value = found + "password=".len();
        let is_parameter = found > 0 && matches!(out.as_bytes()[found - 1], b'?' | b'&');
        let value_end = out[value..]
            .find(['&', '#'])
            .map_or(out.len(), |i| value + i);
        if is_parameter && out[value..value_end] != *"***" {
            out.replace_range(value..value_end, "***");
        }
        from = value;
    }
    out
}

/// The validated configuration of one Herald process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub listen: String,
    pub notifications_enabled: bool,
    pub max_webhooks_per_tenant: u32,
    /// Delays after attempts 1..N-1 of a cycle.
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub allow_http: bool,
    pub allow_private_targets: bool,
    pub log_retention: Duration,
    /// Attempts in flight at once on this node.
    pub max_in_flight: u32,
    /// Attempts in flight at once to one webhook on this node, so a slow endpoint holds at
    /// most this many of the node's slots.
    pub max_in_flight_per_webhook: u32,
    /// Attempts of one tenant in flight at once on this node, so that a tenant with several
    /// dead endpoints cannot hold every slot.
    pub max_in_flight_per_tenant: u32,
    /// A connection must send a complete request head within this.
    pub http_header_timeout: Duration,
    /// A request body must arrive within this (else 408).
    pub http_body_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    pub http_idle_timeout: Duration,
    /// HTTP connections open at once.
    pub max_connections: u32,
    /// Partner writes allowed per tenant and second, on average.
    pub partner_write_rate: WriteRate,
    /// Partner writes a tenant may make back to back before the rate applies.
    pub partner_write_burst: u32,
    /// Forward proxy every attempt goes through; `None` connects directly. Proxy variables
    /// of the environment are never read.
    pub egress_proxy: Option<String>,
}

/// A rate of `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WriteRate {
    pub count: u32,
    pub per: Duration,
}

impl Config {
    /// The defaults alone, as `herald serve` uses them with no configuration.
    pub fn defaults() -> Config {
        Config::load(None, std::iter::empty(), &[]).expect("built-in defaults are valid")
    }

    /// Layers defaults, the TOML file, the `HERALD_*` variables among `env` and `flags`
    /// (`(key, value)` pairs), then validates. Every problem is reported, each naming its
    /// setting and where the value came from.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&'static str, String)],
    ) -> Result<Config, ConfigError> {
        let mut values: BTreeMap<&'static str, (String, Source)> = SETTINGS
            .iter()
            .map(|s| (s.key, (s.default.to_string(), Source::Default)))
            .collect();
        let mut problems = Vec::new();
        if let Some(path) = file {
            match read_file(path) {
                Ok(entries) => {
                    for (key, value) in entries {
                        match SETTINGS.iter().find(|s| s.key == key) {
                            Some(setting) => {
                                values.insert(
                                    setting.key,
                                    (value, Source::File(path.display().to_string())),
                                );
                            }
                            None => problems.push(format!(
                                "unknown setting {key:?} in {} (known: {})",
                                path.display(),
                                SETTINGS
                                    .iter()
                                    .map(|s| s.key)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        }
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        for (name, value) in env {
            if let Some(setting) = SETTINGS.iter().find(|s| s.env == name) {
                values.insert(setting.key, (value, Source::Env(setting.env)));
            }
        }
        for (key, value) in flags {
            values.insert(key, (value.clone(), Source::Flag(key)));
        }

        let mut parser = Parser {
            values: &values,
            problems,
        };
        let config = Config {
            database_url: parser.get("database_url", parse_database_url),
            listen: parser.get("listen", parse_listen),
            notifications_enabled: parser.get("notifications_enabled", parse_bool),
            max_webhooks_per_tenant: parser
                .get("max_webhooks_per_tenant", |v| parse_bounded(v, 1, 10_000)),
            retry_schedule: parser.get("retry_schedule", parse_schedule),
            delivery_timeout: parser.get("delivery_timeout", |v| {
                parse_duration_between(v, Duration::from_millis(100), Duration::from_secs(600))
            }),
            allow_http: parser.get("allow_http", parse_bool),
            allow_private_targets: parser.get("allow_private_targets", parse_bool),
            log_retention: parser.get("log_retention", |v| {
                parse_duration_between(
                    v,
                    Duration::from_secs(1),
                    Duration::from_secs(3650 * 86_400),
                )
            }),
            max_in_flight: parser.get("max_in_flight", |v| parse_bounded(v, 1, 100_000)),
            max_in_flight_per_webhook: parser.get("max_in_flight_per_webhook", |v| {
                parse_bounded(v, 1, 100_000)
            }),
            max_in_flight_per_tenant: parser
                .get("max_in_flight_per_tenant", |v| parse_bounded(v, 1, 100_000)),
            http_header_timeout: parser.get("http_header_timeout", |v| {
                parse_duration_between(v, Duration::from_millis(100), Duration::from_secs(300))
            }),
            http_body_timeout: parser.get("http_body_timeout", |v| {
                parse_duration_between(v, Duration::from_millis(100), Duration::from_secs(600))
            }),
            http_idle_timeout: parser.get("http_idle_timeout", |v| {
                parse_duration_between(v, Duration::from_secs(1), Duration::from_secs(3600))
            }),
            max_connections: parser.get("max_connections", |v| parse_bounded(v, 1, 1_000_000)),
            partner_write_rate: parser.get("partner_write_rate", parse_rate),
            partner_write_burst: parser
                .get("partner_write_burst", |v| parse_bounded(v, 1, 100_000)),
            egress_proxy: parser.get("egress_proxy", parse_proxy),
        };
        if parser.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: parser.problems,
            })
        }
    }

    /// The retry policy the schedule describes.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            delays: self.retry_schedule.clone(),
        }
    }

    /// The destination switches, as the URL checks take them.
    pub fn destination_policy(&self) -> DestinationPolicy {
        DestinationPolicy {
            allow_http: self.allow_http,
            allow_private_targets: self.allow_private_targets,
        }
    }
}

/// Every problem found while loading, one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
enum Source {
    Default,
    File(String),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "the default"),
            Source::File(path) => write!(f, "{path}"),
            Source::Env(name) => write!(f, "{name}"),
            Source::Flag(key) => write!(f, "--{}", key.replace('_', "-")),
        }
    }
}

struct Parser<'a> {
    values: &'a BTreeMap<&'static str, (String, Source)>,
    problems: Vec<String>,
}

impl Parser<'_> {
    fn get<T: Default>(
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

/// Reads a TOML file into `(key, raw value)` pairs; arrays become comma-separated lists.
fn read_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let raw = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            Ok((key, raw))
        })
        .collect()
}

fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    let sqlite = value.starts_with("sqlite:") && value.len() > "sqlite:".len();
    let postgres = value.starts_with("postgres://") || value.starts_with("postgresql://");
    if sqlite || postgres {
        Ok(DatabaseUrl::new(value))
    } else {
        Err("expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE".into())
    }
}

fn parse_listen(value: &str) -> Result<String, String> {
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(value.to_string())
    } else {
        Err("expected HOST:PORT such as 127.0.0.1:8080".into())
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_bounded(value: &str, min: u32, max: u32) -> Result<u32, String> {
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
fn parse_rate(value: &str) -> Result<WriteRate, String> {
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
fn parse_proxy(value: &str) -> Result<Option<String>, String> {
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

fn parse_duration_between(value: &str, min: Duration, max: Duration) -> Result<Duration, String> {
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

fn parse_schedule(value: &str) -> Result<Vec<Duration>, String> {
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

fn humanize(duration: Duration) -> String {
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
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::defaults();
        assert_eq!(config.database_url, "sqlite://herald.db");
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert!(config.notifications_enabled);
        assert_eq!(config.max_webhooks_per_tenant, 5);
        let secs: Vec<u64> = config.retry_schedule.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 5, 25, 120, 600]);
        assert_eq!(config.delivery_timeout, Duration::from_secs(30));
        assert!(!config.allow_http && !config.allow_private_targets);
        assert_eq!(config.log_retention, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nmax_webhooks_per_tenant = 7\nretry_schedule = [\"1s\", \"2s\"]\nallow_http = true\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("HERALD_LISTEN", "127.0.0.1:2"),
                ("HERALD_MAX_WEBHOOKS_PER_TENANT", "9"),
                ("OTHER", "x"),
            ]),
            &[("listen", "127.0.0.1:3".to_string())],
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:3");
        assert_eq!(config.max_webhooks_per_tenant, 9);
        assert_eq!(
            config.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert!(config.allow_http);
    }

    #[test]
    fn every_bad_value_is_reported_with_its_setting_and_source() {
        let err = Config::load(
            None,
            env(&[
                ("HERALD_DELIVERY_TIMEOUT", "soon"),
                ("HERALD_NOTIFICATIONS_ENABLED", "maybe"),
            ]),
            &[("max_webhooks_per_tenant", "0".to_string())],
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 3, "{text}");
        assert!(
            text.contains("delivery_timeout (from HERALD_DELIVERY_TIMEOUT)"),
            "{text}"
        );
        assert!(
            text.contains("notifications_enabled (from HERALD_NOTIFICATIONS_ENABLED)"),
            "{text}"
        );
        assert!(
            text.contains("max_webhooks_per_tenant (from --max-webhooks-per-tenant)"),
            "{text}"
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "lsiten = \"x\"\n").unwrap();
        let err = Config::load(Some(&file), Vec::new(), &[]).unwrap_err();
        assert!(
            err.to_string().contains("unknown setting \"lsiten\""),
            "{err}"
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_schedule("").unwrap(), Vec::<Duration>::new());
        assert!(parse_schedule("1s,,2s").is_err());
        assert!(parse_schedule("1s,7d").is_ok());
        assert!(parse_schedule("1s,8d").is_err());
        assert!(parse_schedule("99999999999999d").is_err());
    }

    #[test]
    fn hardening_limits_have_the_contracts_defaults() {
        let config = Config::defaults();
        assert_eq!(config.max_in_flight_per_tenant, 128);
        assert_eq!(config.http_header_timeout, Duration::from_secs(10));
        assert_eq!(config.http_body_timeout, Duration::from_secs(30));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(
            config.partner_write_rate,
            WriteRate {
                count: 20,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(config.partner_write_burst, 100);
        assert_eq!(config.egress_proxy, None);
    }

    #[test]
    fn rates_and_proxies_are_checked() {
        assert_eq!(
            parse_rate("600/m").unwrap(),
            WriteRate {
                count: 600,
                per: Duration::from_secs(60)
            }
        );
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("20").is_err());
        assert!(parse_rate("20/h").is_err());
        assert_eq!(
            parse_proxy("http://127.0.0.1:3128").unwrap().as_deref(),
            Some("http://127.0.0.1:3128")
        );
        assert!(parse_proxy("https://proxy:3128").is_err());
        assert!(parse_proxy("http://proxy:3128/path").is_err());
        assert!(parse_proxy("socks5://proxy:1080").is_err());
        let err = Config::load(
            None,
            env(&[
                ("HERALD_EGRESS_PROXY", "ftp://x"),
                ("HERALD_PARTNER_WRITE_RATE", "fast"),
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.to_string()
                .contains("egress_proxy (from HERALD_EGRESS_PROXY)")
        );
    }

    #[test]
    fn passwords_in_database_urls_are_shown_as_stars() {
        let cases = [
            (
                "postgres://user:secret@127.0.0.1:1/db",
                "postgres://user:***@127.0.0.1:1/db",
            ),
            (
                "postgresql://u:p@ss/w@rd@db.example:5432/herald?sslmode=require",
                "postgresql://u:***@db.example:5432/herald?sslmode=require",
            ),
            (
                "postgres://db.example/herald?user=u&password=secret&sslmode=require",
                "postgres://db.example/herald?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://user@127.0.0.1/db",
                "postgres://user@127.0.0.1/db",
            ),
            ("sqlite://herald.db", "sqlite://herald.db"),
            ("mysql://root:hunter2@db", "mysql://root:***@db"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_password(url), shown, "{url}");
            let url = DatabaseUrl::new(url);
            assert_eq!(url.to_string(), shown);
            assert_eq!(format!("{url:?}"), format!("{shown:?}"));
        }
        let config = Config::load(
            None,
            vec![(
                "HERALD_DATABASE_URL".to_string(),
                "postgres://user:secret@127.0.0.1:1/db".to_string(),
            )],
            &[],
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("secret"));
        assert_eq!(
            &*config.database_url,
            "postgres://user:secret@127.0.0.1:1/db"
        );
        let refused = Config::load(
            None,
            vec![(
                "HERALD_DATABASE_URL".to_string(),
                "mysql://user:secret@127.0.0.1:1/db".to_string(),
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(!refused.contains("secret"), "{refused}");
        assert!(
            refused.contains("mysql://user:***@127.0.0.1:1/db"),
            "{refused}"
        );
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
