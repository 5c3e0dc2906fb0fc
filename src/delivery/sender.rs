//! The only code that calls partner URLs. One shared HTTP client (connection pooling, no
//! redirects, the delivery timeout) whose DNS resolver drops forbidden addresses, so the
//! destination check runs on every new connection and DNS rebinding cannot get around it.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};

use crate::config::Config;
use crate::domain::destination::{DestinationPolicy, forbidden_reason};
use crate::domain::outcome::{AttemptResult, parse_retry_after};
use crate::domain::signature::{standard_signature, x_signature};
use crate::store::ClaimedDelivery;

/// The most of a response body kept in the delivery log.
pub const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// What one attempt did, ready to be logged.
#[derive(Debug, Clone)]
pub struct SentAttempt {
    pub result: AttemptResult,
    /// Headers as sent, in order.
    pub request_headers: Vec<(&'static str, String)>,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
}

pub struct Sender {
    client: reqwest::Client,
    policy: DestinationPolicy,
    timeout: Duration,
    user_agent: String,
}

impl Sender {
    pub fn new(config: &Config) -> anyhow::Result<Sender> {
        let policy = config.destination_policy();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.delivery_timeout)
            .connect_timeout(config.delivery_timeout.min(Duration::from_secs(10)))
            // As many idle connections as attempts may be in flight: a smaller pool closed
            // the connections opened beyond it as soon as they were free, and a burst
            // opened them again (herald bench d on PostgreSQL: ~650 new connections a
            // second to one receiver). Idle ones still close after the client's timeout.
            .pool_max_idle_per_host(config.max_in_flight as usize)
            .tcp_nodelay(true);
        if !policy.allow_private_targets {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(Sender {
            client: builder.build()?,
            policy,
            timeout: config.delivery_timeout,
            user_agent: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Signs and sends one attempt. Never fails: what went wrong is part of the result.
    pub async fn send(&self, delivery: &ClaimedDelivery) -> SentAttempt {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let request_headers = vec![
            ("content-type", "application/json".to_string()),
            ("user-agent", self.user_agent.clone()),
            ("x-timestamp", timestamp.to_string()),
            (
                "x-signature",
                x_signature(&delivery.api_key, timestamp, &delivery.body),
            ),
            ("webhook-id", delivery.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                standard_signature(
                    &delivery.api_key,
                    &delivery.event_id,
                    timestamp,
                    &delivery.body,
                ),
            ),
        ];
        if let Err(message) = self.check_destination(&delivery.url) {
            return SentAttempt::failed(AttemptResult::Refused, request_headers, message);
        }
        let mut headers = HeaderMap::with_capacity(request_headers.len());
        for (name, value) in &request_headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        debug_assert!(headers.contains_key(CONTENT_TYPE) && headers.contains_key(USER_AGENT));

        let started = Instant::now();
        let response = self
            .client
            .post(&delivery.url)
            .headers(headers)
            .body(delivery.body.clone())
            .send()
            .await;
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let body = read_body_prefix(response).await;
                SentAttempt {
                    result: AttemptResult::Answered {
                        status,
                        retry_after,
                    },
                    request_headers,
                    response_status: Some(status),
                    response_body: Some(body),
                    error_message: None,
                    duration_ms: Some(started.elapsed().as_millis() as i64),
                }
            }
            Err(error) => {
                let (result, message) = self.describe(&error);
                SentAttempt::failed(result, request_headers, message)
            }
        }
    }

    /// The scheme and literal-address rules, checked before every attempt (a hostname is
    /// checked by the resolver when it is looked up).
    fn check_destination(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("Invalid webhook URL: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.policy.allow_http => {}
            scheme => {
                return Err(format!(
                    "Destination refused: {scheme}:// URLs are not allowed (only https unless HERALD_ALLOW_HTTP is set)"
                ));
            }
        }
        if self.policy.allow_private_targets {
            return Ok(());
        }
        let literal: Option<IpAddr> = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => Some(v4.into()),
            Some(url::Host::Ipv6(v6)) => Some(v6.into()),
            _ => None,
        };
        match literal.and_then(|ip| forbidden_reason(ip).map(|reason| (ip, reason))) {
            Some((ip, reason)) => Err(ForbiddenDestination {
                host: ip.to_string(),
                ip,
                reason,
            }
            .to_string()),
            None => Ok(()),
        }
    }

    fn describe(&self, error: &reqwest::Error) -> (AttemptResult, String) {
        let mut source: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(forbidden) = cause.downcast_ref::<ForbiddenDestination>() {
                return (AttemptResult::Refused, forbidden.to_string());
            }
            source = cause.source();
        }
        if error.is_timeout() {
            let message = format!("Request timed out after {} ms", self.timeout.as_millis());
            return (AttemptResult::TimedOut, message);
        }
        let mut message = if error.is_connect() {
            "Connection failed".to_string()
        } else {
            "Request failed".to_string()
        };
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        (AttemptResult::TransportFailed, message)
    }
}

impl SentAttempt {
    fn failed(
        result: AttemptResult,
        request_headers: Vec<(&'static str, String)>,
        message: String,
    ) -> SentAttempt {
        SentAttempt {
            result,
            request_headers,
            response_status: None,
            response_body: None,
            error_message: Some(message),
            duration_ms: None,
        }
    }
}

/// Reads at most [`RESPONSE_BODY_LIMIT`] bytes of the body, as text.
async fn read_body_prefix(mut response: reqwest::Response) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(RESPONSE_BODY_LIMIT);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // A cut in the middle of a character leaves a replacement mark; keep within the limit.
    while text.len() > RESPONSE_BODY_LIMIT {
        text.pop();
    }
    text
}

/// A destination the rules refuse.
#[derive(Debug)]
struct ForbiddenDestination {
    host: String,
    ip: IpAddr,
    reason: &'static str,
}

impl fmt::Display for ForbiddenDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Destination refused: {} resolves to {}, a {} address (set HERALD_ALLOW_PRIVATE_TARGETS to allow)",
            self.host, self.ip, self.reason
        )
    }
}

impl StdError for ForbiddenDestination {}

/// Resolves with the system resolver and keeps only public addresses.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match forbidden_reason(addr.ip()) {
                    None => true,
                    Some(reason) => {
                        refused.get_or_insert(ForbiddenDestination {
                            host: host.clone(),
                            ip: addr.ip(),
                            reason,
                        });
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(forbidden)) => {
                    Err(Box::new(forbidden) as Box<dyn StdError + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}
