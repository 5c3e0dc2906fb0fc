//! Validation of what producers publish (`POST /v1/events` and each batch item), with one
//! clear message per problem, naming the field.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::envelope::RESERVED_KEYS;
use super::event_type::is_valid_type;
use super::text::check_no_control;
use super::time::parse_iso8601_ms;

const FIELDS: [&str; 7] = [
    "tenant",
    "eventType",
    "payload",
    "eventId",
    "userId",
    "sourceService",
    "occurredAt",
];
const MAX_TEXT_CHARS: usize = 255;

/// A validated event accepted from a producer, not stored yet.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Record id (UUID v7: time-ordered, so the primary index stays append-mostly).
    pub id: Uuid,
    /// Business id: the producer's `eventId`, or a new UUID.
    pub event_id: String,
    pub tenant: String,
    pub event_type: String,
    /// Compact JSON text of an object, keys in the producer's order.
    pub payload: String,
    pub user_id: Option<String>,
    pub source_service: Option<String>,
    pub occurred_at_ms: i64,
}

/// Validates one publish body received at `now_ms`.
pub fn validate_new_event(body: &Value, now_ms: i64) -> Result<NewEvent, String> {
    let object = body
        .as_object()
        .ok_or_else(|| "Request body must be a JSON object".to_string())?;
    if let Some(key) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Unknown field: {key} (expected tenant, eventType, payload, eventId, userId, \
             sourceService, occurredAt)"
        ));
    }
    // Before the other checks, so the message says what is wrong with such text.
    for field in ["tenant", "eventId", "eventType", "userId", "sourceService"] {
        if let Some(Value::String(text)) = object.get(field) {
            check_no_control(field, text)?;
        }
    }
    let tenant = required_string(object, "tenant")?;
    let event_type = required_string(object, "eventType")?;
    if !is_valid_type(event_type) {
        return Err(
            "eventType must be lowercase segments of a-z, 0-9 and _ joined by dots, such as \
             kyc.status.changed"
                .into(),
        );
    }
    let payload = match object.get("payload") {
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
    let event_id = match object.get("eventId") {
        None | Some(Value::Null) => Uuid::now_v7().to_string(),
        Some(Value::String(text)) => Uuid::parse_str(text)
            .map_err(|_| "eventId must be a valid UUID".to_string())?
            .to_string(),
        Some(_) => return Err("eventId must be a valid UUID".into()),
    };
    let occurred_at_ms = match object.get("occurredAt") {
        None | Some(Value::Null) => now_ms,
        Some(Value::String(text)) => parse_iso8601_ms(text).ok_or_else(|| {
            "occurredAt must be an ISO 8601 timestamp such as 2025-12-29T10:00:00.000Z".to_string()
        })?,
        Some(_) => {
            return Err(
                "occurredAt must be an ISO 8601 timestamp such as 2025-12-29T10:00:00.000Z".into(),
            );
        }
    };
    Ok(NewEvent {
        id: Uuid::now_v7(),
        event_id,
        tenant: tenant.to_string(),
        event_type: event_type.to_string(),
        payload: Value::Object(payload.clone()).to_string(),
        user_id: optional_string(object, "userId")?,
        source_service: optional_string(object, "sourceService")?,
        occurred_at_ms,
    })
}

fn required_string<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match object.get(field) {
        None | Some(Value::Null) => Err(format!("{field} is required")),
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(_) => Err(format!("{field} must be a non-empty string")),
    }
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= MAX_TEXT_CHARS => {
            Ok(Some(text.clone()))
        }
        Some(_) => Err(format!(
            "{field} must be a string of at most {MAX_TEXT_CHARS} characters"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_767_002_400_000;

    #[test]
    fn a_minimal_event_gets_ids_and_times() {
        let event = validate_new_event(
            &json!({"tenant": "acme", "eventType": "kyc.status.changed", "payload": {"b": 1, "a": 2}}),
            NOW,
        )
        .unwrap();
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.payload, r#"{"b":1,"a":2}"#);
        assert_eq!(event.occurred_at_ms, NOW);
        assert!(Uuid::parse_str(&event.event_id).is_ok());
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
        assert_eq!(event.event_id, "0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b11");
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
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

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
            prop_assert_eq!(&event.tenant, &body["tenant"]);
            prop_assert_eq!(&event.event_type, &body["eventType"]);
            let payload: Value = serde_json::from_str(&event.payload).unwrap();
            prop_assert_eq!(&payload, &body["payload"]);
            match body["eventId"].as_str() {
                Some(id) => prop_assert_eq!(&event.event_id, id),
                None => prop_assert!(Uuid::parse_str(&event.event_id).is_ok()),
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
