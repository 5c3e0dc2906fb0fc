//! The delivery body: a snake_case envelope followed by the producer's payload keys at the top
//! level. It is rendered from the stored event by one pure function, so every attempt of every
//! cycle sends the same bytes.

use super::event_type::category;
use super::time::format_ms;

/// Envelope keys, reserved: a payload may not contain them at its top level.
pub const RESERVED_KEYS: [&str; 6] = [
    "api_version",
    "event_id",
    "event_type",
    "event_category",
    "user_id",
    "occurred_at",
];

/// The fields of a stored event that make up its delivery body.
pub struct EnvelopeFields<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub user_id: Option<&'a str>,
    pub occurred_at_ms: i64,
    /// The payload as compact JSON text of an object.
    pub payload_json: &'a str,
}

/// Renders the body sent to receivers.
pub fn render_body(fields: &EnvelopeFields<'_>) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    let mut body = String::with_capacity(160 + fields.payload_json.len());
    body.push_str("{\"api_version\":\"v1\",\"event_id\":");
    body.push_str(&quote(fields.event_id));
    body.push_str(",\"event_type\":");
    body.push_str(&quote(fields.event_type));
    body.push_str(",\"event_category\":");
    body.push_str(&quote(category(fields.event_type)));
    body.push_str(",\"user_id\":");
    match fields.user_id {
        Some(user_id) => body.push_str(&quote(user_id)),
        None => body.push_str("null"),
    }
    body.push_str(",\"occurred_at\":");
    body.push_str(&quote(&format_ms(fields.occurred_at_ms)));
    let inner = fields
        .payload_json
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if !inner.is_empty() {
        body.push(',');
        body.push_str(inner);
    }
    body.push('}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(payload: &str) -> EnvelopeFields<'_> {
        EnvelopeFields {
            event_id: "0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b11",
            event_type: "kyc.status.changed",
            user_id: Some("user \"42\""),
            occurred_at_ms: 1_767_002_400_000,
            payload_json: payload,
        }
    }

    #[test]
    fn envelope_comes_first_then_payload_keys() {
        let body = render_body(&fields(r#"{"status":"approved","n":1}"#));
        assert_eq!(
            body,
            r#"{"api_version":"v1","event_id":"0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b11","event_type":"kyc.status.changed","event_category":"kyc","user_id":"user \"42\"","occurred_at":"2025-12-29T10:00:00.000Z","status":"approved","n":1}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["n"], 1);
    }

    #[test]
    fn empty_payload_and_null_user_render_valid_json() {
        let mut f = fields("{}");
        f.user_id = None;
        let body = render_body(&f);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["user_id"], serde_json::Value::Null);
        assert_eq!(parsed.as_object().unwrap().len(), 6);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::domain::arbitrary::event_body;
    use crate::domain::event::validate_new_event;
    use crate::domain::time::parse_iso8601_ms;

    proptest! {
        #[test]
        fn a_valid_event_renders_a_body_that_reads_back_as_its_fields(body in event_body()) {
            let event = validate_new_event(&body, 1_767_002_400_000).unwrap();
            let rendered = render_body(&EnvelopeFields {
                event_id: event.event_id.as_str(),
                event_type: &event.event_type,
                user_id: event.user_id.as_deref(),
                occurred_at_ms: event.occurred_at_ms,
                payload_json: &event.payload,
            });
            let parsed: Value = serde_json::from_str(&rendered).map_err(|e| TestCaseError::fail(format!("{e}: {rendered}")))?;
            let object = parsed.as_object().unwrap();
            prop_assert_eq!(&object["api_version"], "v1");
            prop_assert_eq!(&object["event_id"], event.event_id.as_str());
            prop_assert_eq!(&object["event_type"], event.event_type.as_str());
            prop_assert_eq!(&object["event_category"], category(&event.event_type));
            prop_assert_eq!(object["user_id"].as_str(), event.user_id.as_deref());
            let at = object["occurred_at"].as_str().unwrap();
            prop_assert_eq!(parse_iso8601_ms(at), Some(event.occurred_at_ms));
            let payload: serde_json::Map<String, Value> =
                serde_json::from_str(&event.payload).unwrap();
            for (key, value) in &payload {
                prop_assert_eq!(&object[key], value, "payload key {}", key);
            }
            prop_assert_eq!(object.len(), RESERVED_KEYS.len() + payload.len());
        }
    }
}
