//! The only code that calls partner URLs. One shared HTTP client (connection pooling, no
//! redirects, the delivery timeout, no proxy from the environment) whose DNS resolver drops
//! forbidden addresses, so the destination check runs on every new connection and DNS
//! rebinding cannot get around it. Through the configured egress proxy, which resolves names
//! itself, the destination is resolved and checked before each attempt instead.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};

use crate::config::Config;
use crate::domain::destination::{DestinationPolicy, forbidden_reason};
use crate::domain::outcome::{
    AttemptResult, RESPONSE_BODY_LIMIT, parse_retry_after, response_body_text,
};
use crate::domain::signature::{standard_signature, x_signature};
use crate::store::ClaimedDelivery;

/// What a refused attempt's log says: that the destination is not allowed and what kind of
/// address it is, never the address or what the name resolved to (the server log has that).
fn not_allowed(reason: &str) -> String {
    format!(
        "Destination refused: this destination is not allowed (its host is a {reason} address; \
         set HERALD_ALLOW_PRIVATE_TARGETS to allow)"
    )
}

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
    /// Whether attempts go through a forward proxy (which resolves names itself).
    proxied: bool,
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
            .tcp_nodelay(true)
            // reqwest reads HTTP_PROXY and friends by default; through a proxy the guarded
            // resolver below would never run.
            .no_proxy();
        match &config.egress_proxy {
            // The operator's proxy is trusted wherever it lives: the resolver only ever
            // sees its name, so the destination is checked before each attempt instead.
            Some(proxy) => builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?),
            None if !policy.allow_private_targets => {
                builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
            }
            None => {}
        }
        Ok(Sender {
            client: builder.build()?,
            policy,
            proxied: config.egress_proxy.is_some(),
            timeout: config.delivery_timeout,
            user_agent: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Signs and sends one attempt. Never fails: what went wrong is part of the result.
    pub async fn send(&self, delivery: &ClaimedDelivery) -> SentAttempt {
        let timestamp = unix_seconds();
        let signed = vec![
            ("x-timestamp", timestamp.to_string()),
            (
                "x-signature",
                x_signature(delivery.api_key.expose(), timestamp, &delivery.body),
            ),
            ("webhook-id", delivery.event_id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                standard_signature(
                    delivery.api_key.expose(),
                    delivery.event_id.as_str(),
                    timestamp,
                    &delivery.body,
                ),
            ),
        ];
        self.post(&delivery.url, &delivery.body, signed).await
    }

    /// POSTs `body` to `url` as JSON with Herald's user agent and the `signed` headers, under
    /// the destination rules (a refused destination is a failed attempt). Never fails.
    pub(super) async fn post(
        &self,
        url: &str,
        body: &str,
        signed: Vec<(&'static str, String)>,
    ) -> SentAttempt {
        let request_headers = self.request_headers(signed);
        if let Err((result, message)) = self.allowed(url).await {
            return SentAttempt::failed(result, request_headers, message);
        }
        let started = Instant::now();
        let response = self
            .client
            .post(url)
            .headers(header_map(&request_headers))
            .body(body.to_string())
            .send()
            .await;
        match response {
            Ok(response) => self.read_reply(response, started, request_headers).await,
            Err(error) => {
                let (result, message) = self.describe(&error);
                SentAttempt::failed(result, request_headers, message)
            }
        }
    }

    /// The headers of every request, Herald's first, then the `signed` ones, in order.
    fn request_headers(&self, signed: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        let mut request_headers = vec![
            ("content-type", "application/json".to_string()),
            ("user-agent", self.user_agent.clone()),
        ];
        request_headers.extend(signed);
        request_headers
    }

    /// The destination rules: the URL's own, and through a proxy (which resolves names
    /// itself) what its host resolves to.
    async fn allowed(&self, url: &str) -> Result<(), (AttemptResult, String)> {
        self.check_destination(url)
            .map_err(|message| (AttemptResult::Refused, message))?;
        if self.proxied && !self.policy.allow_private_targets {
            check_resolved(url).await?;
        }
        Ok(())
    }

    /// The attempt a reply makes: its status, `Retry-After` and body (a prefix of it), and
    /// how long the attempt took from `started` to the body's end.
    async fn read_reply(
        &self,
        response: reqwest::Response,
        started: Instant,
        request_headers: Vec<(&'static str, String)>,
    ) -> SentAttempt {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let (body, broken) = read_body_prefix(response).await;
        let duration_ms = Some(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX));
        // A reply cut off before its end (reset, or still arriving at the timeout) is a
        // failed attempt whatever its status said: the partner may not have finished.
        let (result, error_message) = match broken {
            None => (
                AttemptResult::Answered {
                    status,
                    retry_after,
                },
                None,
            ),
            Some(error) => {
                let (result, message) = self.describe(&error);
                (result, Some(format!("Response body incomplete: {message}")))
            }
        };
        SentAttempt {
            result,
            request_headers,
            response_status: Some(status),
            response_body: Some(response_body_text(&body)),
            error_message,
            duration_ms,
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
            Some((ip, reason)) => {
                tracing::warn!(%ip, reason, "destination refused: a forbidden address");
                Err(not_allowed(reason))
            }
            None => Ok(()),
        }
    }

    fn describe(&self, error: &reqwest::Error) -> (AttemptResult, String) {
        let mut source: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(forbidden) = cause.downcast_ref::<ForbiddenDestination>() {
                forbidden.log();
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

/// The request's headers as reqwest takes them; a value that is not a valid header value
/// (none of Herald's) is left out.
fn header_map(request_headers: &[(&'static str, String)]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(request_headers.len());
    for (name, value) in request_headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    debug_assert!(headers.contains_key(CONTENT_TYPE) && headers.contains_key(USER_AGENT));
    headers
}

/// Now, as `webhook-timestamp` and `X-Timestamp` give it.
pub(super) fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
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

/// Reads at most [`RESPONSE_BODY_LIMIT`] bytes of the body and stops there, so however much
/// a partner sends costs no more; the error that cut the body short, if one did.
async fn read_body_prefix(mut response: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_LIMIT - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(error) => return (bytes, Some(error)),
        }
    }
    (bytes, None)
}

/// Resolves the URL's host (as the proxy will) and refuses the attempt if any address it
/// resolves to is forbidden.
async fn check_resolved(url: &str) -> Result<(), (AttemptResult, String)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| (AttemptResult::Refused, format!("Invalid webhook URL: {e}")))?;
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) => name.to_string(),
        // Literal addresses were checked with the scheme.
        _ => return Ok(()),
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|error| {
            (
                AttemptResult::TransportFailed,
                format!("Connection failed: could not resolve the webhook URL's host: {error}"),
            )
        })?
        .collect();
    match resolved
        .iter()
        .find_map(|addr| forbidden_reason(addr.ip()).map(|reason| (addr.ip(), reason)))
    {
        Some((ip, reason)) => {
            let forbidden = ForbiddenDestination { host, ip, reason };
            forbidden.log();
            Err((AttemptResult::Refused, forbidden.to_string()))
        }
        None => Ok(()),
    }
}

/// A destination the rules refuse. Shown to the partner without the address; logged with it.
#[derive(Debug)]
struct ForbiddenDestination {
    host: String,
    ip: IpAddr,
    reason: &'static str,
}

impl ForbiddenDestination {
    fn log(&self) {
        tracing::warn!(
            host = %self.host,
            ip = %self.ip,
            reason = self.reason,
            "destination refused: the host resolves to a forbidden address"
        );
    }
}

impl fmt::Display for ForbiddenDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&not_allowed(self.reason))
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
