//! Herald's settings: built-in defaults, then a TOML file, then `HERALD_*` environment
//! variables, then command-line flags (flags win). Loading has no side effects: the caller
//! hands in the environment, so tests and two apps in one process never share state.

mod database_url;
mod parse;
mod settings;
mod sources;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use self::database_url::{DatabaseUrl, redact_password};
use self::parse::Parser;
pub use self::parse::{MAX_RETRY_DELAY, parse_duration};
pub use self::settings::{SETTINGS, Setting};
use self::sources::layer;
use crate::domain::destination::DestinationPolicy;
use crate::domain::health::HealthPolicy;
use crate::domain::retry::RetryPolicy;

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
    /// Consecutive failed attempts that make a webhook `failing`.
    pub failing_after: u32,
    /// Continuous failure after which a webhook is disabled; `None`: never.
    pub disable_after: Option<Duration>,
    /// How far back an automatic catch-up reaches; `None`: off.
    pub auto_recover: Option<Duration>,
    /// Where health notifications go, and the secret they are signed with.
    pub operator_webhook: Option<OperatorWebhook>,
}

/// The operator's endpoint for health notifications.
#[derive(Clone, PartialEq)]
pub struct OperatorWebhook {
    pub url: String,
    /// The secret's key bytes (the base64 after `whsec_`, decoded).
    pub key: Vec<u8>,
}

impl fmt::Debug for OperatorWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorWebhook")
            .field("url", &self.url)
            .field("key", &"***")
            .finish()
    }
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
        let (values, problems) = layer(file, env, flags);
        let mut parser = Parser::new(&values, problems);
        let config = Config::parse(&mut parser);
        let problems = parser.into_problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Each setting parsed with its bounds; a value that does not parse leaves a problem in
    /// `parser` and its type's default here.
    fn parse(parser: &mut Parser<'_>) -> Config {
        let duration = |min: Duration, max: Duration| {
            move |v: &str| parse::parse_duration_between(v, min, max)
        };
        let (ms, secs) = (Duration::from_millis, Duration::from_secs);
        let duration_or_off = |min: Duration| {
            move |v: &str| parse::parse_duration_or_off(v, min, secs(3650 * 86_400))
        };
        Config {
            database_url: parser.get("database_url", parse::parse_database_url),
            listen: parser.get("listen", parse::parse_listen),
            notifications_enabled: parser.get("notifications_enabled", parse::parse_bool),
            max_webhooks_per_tenant: parser.get("max_webhooks_per_tenant", |v| {
                parse::parse_bounded(v, 1, 10_000)
            }),
            retry_schedule: parser.get("retry_schedule", parse::parse_schedule),
            delivery_timeout: parser.get("delivery_timeout", duration(ms(100), secs(600))),
            allow_http: parser.get("allow_http", parse::parse_bool),
            allow_private_targets: parser.get("allow_private_targets", parse::parse_bool),
            log_retention: parser.get("log_retention", duration(secs(1), secs(3650 * 86_400))),
            max_in_flight: parser.get("max_in_flight", |v| parse::parse_bounded(v, 1, 100_000)),
            max_in_flight_per_webhook: parser.get("max_in_flight_per_webhook", |v| {
                parse::parse_bounded(v, 1, 100_000)
            }),
            max_in_flight_per_tenant: parser.get("max_in_flight_per_tenant", |v| {
                parse::parse_bounded(v, 1, 100_000)
            }),
            http_header_timeout: parser.get("http_header_timeout", duration(ms(100), secs(300))),
            http_body_timeout: parser.get("http_body_timeout", duration(ms(100), secs(600))),
            http_idle_timeout: parser.get("http_idle_timeout", duration(secs(1), secs(3600))),
            max_connections: parser
                .get("max_connections", |v| parse::parse_bounded(v, 1, 1_000_000)),
            partner_write_rate: parser.get("partner_write_rate", parse::parse_rate),
            partner_write_burst: parser.get("partner_write_burst", |v| {
                parse::parse_bounded(v, 1, 100_000)
            }),
            egress_proxy: parser.get("egress_proxy", parse::parse_proxy),
            failing_after: parser.get("failing_after", |v| parse::parse_bounded(v, 1, 10_000)),
            disable_after: parser.get("disable_after", duration_or_off(secs(1))),
            auto_recover: parser.get("auto_recover", duration_or_off(secs(1))),
            operator_webhook: parse::operator_webhook(parser),
        }
    }

    /// How attempts' results move webhooks' health, as the store applies it.
    pub fn health_policy(&self) -> HealthPolicy {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        HealthPolicy {
            failing_after: self.failing_after,
            disable_after_ms: self.disable_after.map(ms),
            auto_recover_ms: self.auto_recover.map(ms),
            delivery_span_ms: ms(self.retry_schedule.iter().sum::<Duration>()
                + self.delivery_timeout * (self.retry_schedule.len() as u32 + 1)),
            notify_operator: self.operator_webhook.is_some(),
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
