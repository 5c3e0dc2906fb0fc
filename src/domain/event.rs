//! Validation of what producers publish (`POST /v1/events` and each batch item), with one
//! clear message per problem, naming the field.

use serde_json::{Map, Value};

use super::body::known_fields;
use super::envelope::RESERVED_KEYS;
use super::event_type::is_valid_type;
use super::ids::{BusinessEventId, EventId, TenantId};
use super::text::check_no_control;
use super::time::parse_iso8601_ms;

/// The fields of a publish body, in the order messages list them.
pub const FIELDS: [&str; 7] = [
    "tenant",
    "eventType",
    "payload",
    "eventId",
    "userId",
    "sourceService",
    "occurredAt",
];
const MAX_TEXT_CHARS: usize = 255;
const OCCURRED_AT: &str =
    "occurredAt must be an ISO 8601 timestamp such as 2025-12-29T10:00:00.000Z";

/// A validated event accepted from a producer, not stored yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Record id (UUID v7: time-ordered, so the primary index stays append-mostly).
    pub id: EventId,
    /// Business id: the producer's `eventId`, or a new UUID.
    pub event_id: BusinessEventId,
    pub tenant: TenantId,
    pub event_type: String,
    /// Compact JSON text of an object, keys in the producer's order.
    pub payload: String,
    pub user_id: Option<String>,
    pub source_service: Option<String>,
    pub occurred_at_ms: i64,
}

/// A publish body's fields as sent, each any JSON (`None`: absent).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventInput {
    pub tenant: Option<Value>,
    pub event_type: Option<Value>,
    pub payload: Option<Value>,
    pub event_id: Option<Value>,
    pub user_id: Option<Value>,
    pub source_service: Option<Value>,
    pub occurred_at: Option<Value>,
}

impl EventInput {
    /// The fields of a body object that holds only [`FIELDS`]
    /// ([`known_fields`] checks that).
    pub fn from_fields(mut object: Map<String, Value>) -> EventInput {
        EventInput {
            tenant: object.remove("tenant"),
            event_type: object.remove("eventType"),
            payload: object.remove("payload"),
            event_id: object.remove("eventId"),
            user_id: object.remove("userId"),
            source_service: object.remove("sourceService"),
            occurred_at: object.remove("occurredAt"),
        }
    }

    /// Validates one publish received at `now_ms`.
    pub fn validate(self, now_ms: i64) -> Result<NewEvent, String> {
        self.check_texts()?;
        let tenant = required_string("tenant", self.tenant)?;
        let event_type = required_string("eventType", self.event_type)?;
        if !is_valid_type(&event_type) {
            return Err(
                "eventType must be lowercase segments of a-z, 0-9 and _ joined by dots, such as \
                 kyc.status.changed"
                    .into(),
            );
        }
        let payload = parse_payload(self.payload)?;
        let event_id = match self.event_id {
            None | Some(Value::Null) => BusinessEventId::generate(),
            Some(Value::String(text)) => {
                BusinessEventId::parse(&text).ok_or("eventId must be a valid UUID")?
            }
            Some(_) => return Err("eventId must be a valid UUID".into()),
        };
        let occurred_at_ms = match self.occurred_at {
            None | Some(Value::Null) => now_ms,
            Some(Value::String(text)) => parse_iso8601_ms(&text).ok_or(OCCURRED_AT)?,
            Some(_) => return Err(OCCURRED_AT.into()),
        };
        Ok(NewEvent {
            id: EventId::generate(),
            event_id,
            tenant: TenantId::from(tenant),
            event_type,
            payload,
            user_id: optional_string("userId", self.user_id)?,
            source_service: optional_string("sourceService", self.source_service)?,
            occurred_at_ms,
        })
    }

    /// Text with control characters is refused before the other checks, so the message says
    /// what is wrong with such text.
    fn check_texts(&self) -> Result<(), String> {
        for (field, value) in [
            ("tenant", &self.tenant),
            ("eventId", &self.event_id),
            ("eventType", &self.event_type),
            ("userId", &self.user_id),
            ("sourceService", &self.source_service),
        ] {
            if let Some(Value::String(text)) = value {
                check_no_control(field, text)?;
            }
        }
        Ok(())
    }
}

/// Validates one publish body received at `now_ms`.
pub fn validate_new_event(body: &Value, now_ms: i64) -> Result<NewEvent, String> {
    EventInput::from_fields(known_fields(body.clone(), &FIELDS)?).validate(now_ms)
}

/// `payload`: an object without the envelope's keys, as compact JSON text.
fn parse_payload(value: Option<Value>) -> Result<String, String> {
    let payload = match value {
        None | Some(Value::Null) => return Err("payload is required".into()),
        Some(Value::Object(payload)) => payload,
        Some(_) => return Err("payload must be a JSON object".into()),
    };
    if let Some(key) = RESERVED_KEYS.iter().find(|key| payload.contains_key(**key)) {
        return Err(format!(
            "payload may not contain the reserved key {key} (envelope keys: {})",
            RESERVED_KEYS.join(", ")
        ));
    }
    Ok(Value::Object(payload).to_string())
}

fn required_string(field: &str, value: Option<Value>) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Err(format!("{field} is required")),
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(_) => Err(format!("{field} must be a non-empty string")),
    }
}

fn optional_string(field: &str, value: Option<Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_TEXT_CHARS => Ok(Some(text)),
        Some(_) => Err(format!(
            "{field} must be a string of at most {MAX_TEXT_CHARS} characters"
        )),
    }
}

/// The type of the event `POST /v1/webhooks/{id}/test` sends.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// The event a partner's test of a webhook sends: a new event of the tenant like any other
/// (new ids, so it is logged and retried on its own), with a fixed type and payload.
pub fn test_event(tenant: &TenantId, now_ms: i64) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        event_id: BusinessEventId::generate(),
        tenant: tenant.clone(),
        event_type: TEST_EVENT_TYPE.into(),
        payload: serde_json::json!({"message": "Test event from Herald"}).to_string(),
        user_id: None,
        source_service: None,
        occurred_at_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    const NOW: i64 = 1_767_002_400_000;

    #[test]
    fn a_minimal_event_gets_ids_and_times() {
        let event = validate_new_event(
            &json!({"tenant": "acme", "eventType": "kyc.status.changed", "payload": {"b": 1, "a": 2}}),
            NOW,
        )
        .unwrap();
        assert_eq!(event.tenant.as_str(), "acme");
        assert_eq!(event.payload, r#"{"b":1,"a":2}"#);
        assert_eq!(event.occurred_at_ms, NOW);
        assert!(Uuid::parse_str(event.event_id.as_str()).is_ok());
        assert_eq!(event.user_id, None);
    }

    #[test]
    fn event_ids_are_normalised_to_lowercase_hyphenated() {
        let event = validate_new_event(
            &json!({"tenant": "t", "eventType": "a", "payload": {},
                    "eventId": "0B7E8A595D4C4A0E9A432F9D0C1E8B11",
                    "occurredAt": "2025-12-29T10:00:00Z", "userId": "u1", "sourceService": "kyc"}),
            NOW,
        )
        .unwrap();
        assert_eq!(
            event.event_id.as_str(),
            "0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b11"
        );
        assert_eq!(event.occurred_at_ms, NOW);
        assert_eq!(event.user_id.as_deref(), Some("u1"));
        assert_eq!(event.source_service.as_deref(), Some("kyc"));
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            (json!([]), "Request body must be a JSON object"),
            (
                json!({"eventType": "a", "payload": {}}),
                "tenant is required",
            ),
            (
                json!({"tenant": "t", "payload": {}}),
                "eventType is required",
            ),
            (
                json!({"tenant": "t", "eventType": "a"}),
                "payload is required",
            ),
            (
                json!({"tenant": "t", "eventType": "a", "payload": [1]}),
                "payload must be a JSON object",
            ),
            (
                json!({"tenant": "t", "eventType": "a", "payload": {}, "eventId": "x"}),
                "eventId must be a valid UUID",
            ),
            (
                json!({"tenant": "t", "eventType": "a", "payload": {}, "userId": 5}),
                "userId must be a string of at most 255 characters",
            ),
        ];
        let controls = [
            ("tenant", json!("ac\u{0000}me")),
            (
                "eventId",
                json!("0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b1\u{0000}"),
            ),
            ("eventType", json!("a.\u{0007}b")),
            ("userId", json!("u\u{0000}")),
            ("sourceService", json!("\nkyc")),
        ];
        for (field, text) in controls {
            let mut body = json!({"tenant": "t", "eventType": "a", "payload": {}});
            body[field] = text;
            assert_eq!(
                validate_new_event(&body, NOW).unwrap_err(),
                format!("{field} must not contain control characters"),
                "{body}"
            );
        }
        // Payloads are stored as JSON text, where a control character is an escape.
        let payload = validate_new_event(
            &json!({"tenant": "t", "eventType": "a", "payload": {"k\u{0000}": "a\u{0000}b"}}),
            NOW,
        )
        .unwrap()
        .payload;
        assert_eq!(payload, r#"{"k\u0000":"a\u0000b"}"#);
        for (body, message) in cases {
            assert_eq!(
                validate_new_event(&body, NOW).unwrap_err(),
                message,
                "{body}"
            );
        }
        let bad_type = validate_new_event(
            &json!({"tenant": "t", "eventType": "A.B", "payload": {}}),
            NOW,
        );
        assert!(bad_type.unwrap_err().starts_with("eventType must be"));
        let reserved = validate_new_event(
            &json!({"tenant": "t", "eventType": "a", "payload": {"event_id": 1}}),
            NOW,
        );
        assert!(
            reserved
                .unwrap_err()
                .starts_with("payload may not contain the reserved key event_id")
        );
        let unknown = validate_new_event(
            &json!({"tenant": "t", "eventType": "a", "payload": {}, "type": 1}),
            NOW,
        );
        assert!(unknown.unwrap_err().starts_with("Unknown field: type"));
    }

    #[test]
    fn the_test_event_is_one_a_producer_could_publish() {
        let tenant = TenantId::parse("acme").unwrap();
        let event = test_event(&tenant, NOW);
        let published = validate_new_event(
            &json!({"tenant": "acme", "eventType": event.event_type, "eventId": event.event_id,
                    "payload": serde_json::from_str::<Value>(&event.payload).unwrap()}),
            NOW,
        )
        .unwrap();
        assert_eq!(published.event_type, "webhook.test");
        assert_eq!(published.payload, r#"{"message":"Test event from Herald"}"#);
        assert_eq!(published.event_id, event.event_id);
        assert_ne!(test_event(&tenant, NOW).event_id, event.event_id);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::domain::arbitrary::{event_body, json, object_with};
    use crate::domain::time::format_ms;

    const NOW: i64 = 1_767_002_400_000;

    proptest! {
        #[test]
        fn any_json_is_judged_without_panicking(body in json(), fields in object_with(&FIELDS)) {
            let _ = validate_new_event(&body, NOW);
            let _ = validate_new_event(&fields, NOW);
        }

        #[test]
        fn a_published_number_is_stored_as_sent(number in any::<f64>()) {
            prop_assume!(number.is_finite());
            let text = serde_json::to_string(&number).unwrap();
            let body: Value = serde_json::from_str(&format!(
                r#"{{"tenant":"t","eventType":"a","payload":{{"x":{text}}}}}"#
            ))
            .unwrap();
            let event = validate_new_event(&body, NOW).map_err(TestCaseError::fail)?;
            prop_assert_eq!(event.payload, format!(r#"{{"x":{text}}}"#));
        }

        #[test]
        fn a_valid_body_is_accepted_as_sent(body in event_body()) {
            let event = validate_new_event(&body, NOW).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&body["tenant"], event.tenant.as_str());
            prop_assert_eq!(&event.event_type, &body["eventType"]);
            let payload: Value = serde_json::from_str(&event.payload).unwrap();
            prop_assert_eq!(&payload, &body["payload"]);
            match body["eventId"].as_str() {
                Some(id) => prop_assert_eq!(event.event_id.as_str(), id),
                None => prop_assert!(Uuid::parse_str(event.event_id.as_str()).is_ok()),
            }
            prop_assert_eq!(event.user_id.as_deref(), body["userId"].as_str());
            prop_assert_eq!(event.source_service.as_deref(), body["sourceService"].as_str());
            match body["occurredAt"].as_str() {
                Some(at) => prop_assert_eq!(format_ms(event.occurred_at_ms), at),
                None => prop_assert_eq!(event.occurred_at_ms, NOW),
            }
        }
    }
}
