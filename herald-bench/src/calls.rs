//! The requests the loads send: a single publish, a batch publish, and the raw baseline's
//! delivery-shaped POST straight to the receiver. A publish can note when each event's request
//! was sent ([`SendLog`]), which first-attempt latencies are measured from: that is the
//! instant an outside producer starts waiting, whatever the publish call itself takes.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::bail;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use uuid::Uuid;

use crate::app::HeraldApi;
use crate::load::{Call, EVENT_TYPE, batch_json_with, event_json};

/// When each acknowledged event's publish request was sent, by event id. An event enters the
/// log only once its publish is answered 201, so a refused event has no latency.
#[derive(Default)]
pub struct SendLog(Mutex<Vec<(u128, Instant)>>);

impl SendLog {
    fn record(&self, event: u128, sent: Instant) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.push((event, sent));
    }

    /// Every acknowledged event so far and when its request was sent.
    pub fn entries(&self) -> Vec<(u128, Instant)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `POST /v1/events` of one new event for `tenant`; expects 201.
pub fn publish_single(api: &HeraldApi, tenant: &str, sends: Option<Arc<SendLog>>) -> Call {
    publish_single_with(api, tenant, sends, Uuid::new_v4)
}

/// [`publish_single`] with event ids made by `new_id`.
pub fn publish_single_with(
    api: &HeraldApi,
    tenant: &str,
    sends: Option<Arc<SendLog>>,
    new_id: fn() -> Uuid,
) -> Call {
    let client = api.client.clone();
    let url = api.url("/v1/events");
    let auth = format!("Bearer {}", api.producer);
    let tenant = tenant.to_string();
    Arc::new(move |sequence| {
        let (client, url, auth, sends) = (client.clone(), url.clone(), auth.clone(), sends.clone());
        let event = new_id();
        let body = event_json(&tenant, event, sequence);
        Box::pin(async move {
            let sent = Instant::now();
            let response = client
                .post(url)
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let answer = response.bytes().await?;
            if status.as_u16() != 201 {
                bail!(
                    "POST /v1/events answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            if let Some(sends) = sends {
                sends.record(event.as_u128(), sent);
            }
            Ok(1)
        })
    })
}

/// `POST /v1/events/batch` of `size` new events for `tenant`; expects every item stored
/// (`"status":201`).
pub fn publish_batch(api: &HeraldApi, tenant: &str, size: usize) -> Call {
    publish_batch_with(api, tenant, size, Uuid::new_v4)
}

/// [`publish_batch`] with event ids made by `new_id`.
pub fn publish_batch_with(
    api: &HeraldApi,
    tenant: &str,
    size: usize,
    new_id: fn() -> Uuid,
) -> Call {
    let client = api.client.clone();
    let url = api.url("/v1/events/batch");
    let auth = format!("Bearer {}", api.producer);
    let tenant = tenant.to_string();
    Arc::new(move |sequence| {
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        let body = batch_json_with(&tenant, size, sequence * size as u64, new_id);
        Box::pin(async move {
            let response = client
                .post(url)
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let answer = response.bytes().await?;
            let text = String::from_utf8_lossy(&answer);
            let stored = text.matches(r#""status":201"#).count();
            if status.as_u16() != 200 || stored != size {
                let start: String = text.chars().take(300).collect();
                bail!(
                    "POST /v1/events/batch answered {status} with {stored}/{size} stored: {start}"
                );
            }
            Ok(size as u64)
        })
    })
}

/// A POST shaped like one of Herald's deliveries (same headers, a body of the same size),
/// sent straight to `url`; expects 200.
pub fn raw_delivery(client: &reqwest::Client, url: &str) -> Call {
    let client = client.clone();
    let url = url.to_string();
    Arc::new(move |sequence| {
        let (client, url) = (client.clone(), url.clone());
        let event = Uuid::new_v4();
        Box::pin(async move {
            let timestamp = "1767002400";
            let body = format!(
                r#"{{"api_version":"v1","event_id":"{event}","event_type":"{EVENT_TYPE}","event_category":"bench","user_id":null,"occurred_at":"2025-12-29T10:00:00.000Z","sequence":{sequence},"status":"approved","customer":"cus_{sequence:012}","amount":1250,"currency":"EUR","note":"benchmark event"}}"#
            );
            let response = client
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .header("user-agent", "Herald/0.1.0")
                .header("x-timestamp", timestamp)
                .header("x-signature", "0".repeat(64))
                .header("webhook-id", event.to_string())
                .header("webhook-timestamp", timestamp)
                .header("webhook-signature", format!("v1,{}=", "A".repeat(43)))
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let _ = response.bytes().await?;
            if status.as_u16() != 200 {
                bail!("the receiver answered {status}");
            }
            Ok(1)
        })
    })
}
