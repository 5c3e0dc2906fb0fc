//! What the operator is told when a webhook's health changes: the JSON body of a notification.

use serde::Serialize;
use uuid::Uuid;

use super::health::Transition;
use super::time::format_ms;

/// The webhook a notification is about, as it stood at the transition.
pub struct Subject<'a> {
    pub tenant: &'a str,
    pub webhook_id: Uuid,
    pub url: &'a str,
    pub consecutive_failures: i64,
    pub failing_since_ms: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tenant: &'a str,
    webhook_id: Uuid,
    url: &'a str,
    at: String,
    consecutive_failures: i64,
    failing_since: Option<String>,
    reason: String,
}

/// The body of the notification that tells of `transition` at `at_ms`.
pub fn render(transition: &Transition, subject: &Subject<'_>, at_ms: i64) -> String {
    let (consecutive_failures, failing_since_ms, reason) = match transition {
        Transition::Failing => (
            subject.consecutive_failures,
            subject.failing_since_ms,
            format!("{} attempts in a row failed", subject.consecutive_failures),
        ),
        Transition::Disabled { reason } => (
            subject.consecutive_failures,
            subject.failing_since_ms,
            reason.clone(),
        ),
        Transition::Recovered {
            streak_since_ms,
            failures,
        } => (
            0,
            Some(*streak_since_ms),
            format!("The endpoint answered again after {failures} failed attempts"),
        ),
    };
    serde_json::to_string(&Body {
        kind: transition.kind(),
        tenant: subject.tenant,
        webhook_id: subject.webhook_id,
        url: subject.url,
        at: format_ms(at_ms),
        consecutive_failures,
        failing_since: failing_since_ms.map(format_ms),
        reason,
    })
    .expect("a notification body serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_has_the_contract_fields() {
        let subject = Subject {
            tenant: "acme",
            webhook_id: Uuid::nil(),
            url: "https://example.com/hook",
            consecutive_failures: 5,
            failing_since_ms: Some(0),
        };
        let body: serde_json::Value =
            serde_json::from_str(&render(&Transition::Failing, &subject, 1_000)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "webhook.failing",
                "tenant": "acme",
                "webhookId": "00000000-0000-0000-0000-000000000000",
                "url": "https://example.com/hook",
                "at": "1970-01-01T00:00:01.000Z",
                "consecutiveFailures": 5,
                "failingSince": "1970-01-01T00:00:00.000Z",
                "reason": "5 attempts in a row failed"
            })
        );
        let recovered = Transition::Recovered {
            streak_since_ms: 0,
            failures: 7,
        };
        let body: serde_json::Value =
            serde_json::from_str(&render(&recovered, &subject, 1_000)).unwrap();
        assert_eq!(body["type"], "webhook.recovered");
        assert_eq!(body["consecutiveFailures"], 0);
        assert_eq!(body["failingSince"], "1970-01-01T00:00:00.000Z");
    }
}
