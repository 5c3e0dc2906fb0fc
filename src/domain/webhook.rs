//! Validation of webhook create and update bodies (snake_case, as the contract fixes them),
//! with one clear message per problem, naming the field.

use serde_json::{Map, Value};

use super::destination::{DestinationPolicy, check_url_literal};
use super::event_type::is_valid_pattern;
use super::text::{check_json_no_control, check_no_control};

/// Largest `metadata` accepted, as serialized JSON.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
const MAX_NAME_CHARS: usize = 255;
const MAX_URL_CHARS: usize = 2048;
const MAX_EVENT_TYPES: usize = 100;
const FIELDS: [&str; 5] = ["name", "url", "event_types", "is_active", "metadata"];

/// A validated subset of webhook fields: every field for a create, any subset for an update.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WebhookFields {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub is_active: Option<bool>,
    /// Compact JSON text of an object.
    pub metadata: Option<String>,
}

/// Validates a create body: `name`, `url`, `event_types` required.
pub fn validate_create(body: &Value, policy: &DestinationPolicy) -> Result<WebhookFields, String> {
    let fields = validate_fields(body, policy)?;
    for (present, field) in [
        (fields.name.is_some(), "name"),
        (fields.url.is_some(), "url"),
        (fields.event_types.is_some(), "event_types"),
    ] {
        if !present {
            return Err(format!("{field} is required"));
        }
    }
    Ok(fields)
}

/// Validates a partial update body: any subset of the create fields.
pub fn validate_update(body: &Value, policy: &DestinationPolicy) -> Result<WebhookFields, String> {
    validate_fields(body, policy)
}

fn validate_fields(body: &Value, policy: &DestinationPolicy) -> Result<WebhookFields, String> {
    let object = body
        .as_object()
        .ok_or_else(|| "Request body must be a JSON object".to_string())?;
    reject_unknown_fields(object)?;
    let mut fields = WebhookFields::default();
    if let Some(value) = present(object, "name") {
        let name = value.as_str().ok_or("name must be a string")?;
        check_no_control("name", name)?;
        let chars = name.trim().chars().count();
        if chars == 0 || name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "name must be between 1 and {MAX_NAME_CHARS} characters"
            ));
        }
        fields.name = Some(name.to_string());
    }
    if let Some(value) = present(object, "url") {
        let url = value.as_str().ok_or("url must be a string")?;
        // The URL parser would drop tabs and newlines silently; the text is stored as given.
        check_no_control("url", url)?;
        if url.len() > MAX_URL_CHARS {
            return Err(format!("url must be at most {MAX_URL_CHARS} characters"));
        }
        check_url_literal(url, policy)?;
        fields.url = Some(url.to_string());
    }
    if let Some(value) = present(object, "event_types") {
        fields.event_types = Some(validate_event_types(value)?);
    }
    if let Some(value) = present(object, "is_active") {
        fields.is_active = Some(value.as_bool().ok_or("is_active must be a boolean")?);
    }
    if let Some(value) = object.get("metadata") {
        let metadata = match value {
            Value::Null => "{}".to_string(),
            Value::Object(_) => {
                check_json_no_control("metadata", value)?;
                value.to_string()
            }
            _ => return Err("metadata must be a JSON object".into()),
        };
        if metadata.len() > MAX_METADATA_BYTES {
            return Err("metadata must be at most 8 KiB".into());
        }
        fields.metadata = Some(metadata);
    }
    Ok(fields)
}

/// A field given as `null` counts as absent, except `metadata`, where null clears it.
fn present<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).filter(|value| !value.is_null())
}

fn reject_unknown_fields(object: &Map<String, Value>) -> Result<(), String> {
    match object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        Some(key) => Err(format!(
            "Unknown field: {key} (expected name, url, event_types, is_active, metadata)"
        )),
        None => Ok(()),
    }
}

fn validate_event_types(value: &Value) -> Result<Vec<String>, String> {
    const SHAPE: &str = "event_types must be a non-empty array of event type patterns";
    let items = value.as_array().ok_or(SHAPE)?;
    if items.is_empty() {
        return Err(SHAPE.into());
    }
    if items.len() > MAX_EVENT_TYPES {
        return Err(format!(
            "event_types may hold at most {MAX_EVENT_TYPES} patterns"
        ));
    }
    let mut patterns: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let pattern = item.as_str().ok_or(SHAPE)?;
        if !is_valid_pattern(pattern) {
            return Err(format!(
                "event_types contains an invalid pattern: {pattern:?} (use a type such as \
                 kyc.status.changed, a wildcard such as card.*, or *)"
            ));
        }
        if !patterns.iter().any(|p| p == pattern) {
            patterns.push(pattern.to_string());
        }
    }
    Ok(patterns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strict() -> DestinationPolicy {
        DestinationPolicy::default()
    }

    #[test]
    fn create_requires_name_url_and_event_types() {
        let ok = json!({"name": "n", "url": "https://example.com/h", "event_types": ["a.b"]});
        let fields = validate_create(&ok, &strict()).unwrap();
        assert_eq!(fields.is_active, None);
        assert_eq!(fields.event_types, Some(vec!["a.b".to_string()]));
        let no_url = json!({"name": "n", "event_types": ["a.b"]});
        assert_eq!(
            validate_create(&no_url, &strict()).unwrap_err(),
            "url is required"
        );
    }

    #[test]
    fn bad_fields_get_messages_naming_them() {
        let cases = [
            (
                json!({"name": ""}),
                "name must be between 1 and 255 characters",
            ),
            (json!({"name": 3}), "name must be a string"),
            (json!({"url": "http://example.com"}), "url must use https"),
            (
                json!({"event_types": []}),
                "event_types must be a non-empty array of event type patterns",
            ),
            (json!({"is_active": "yes"}), "is_active must be a boolean"),
            (json!({"metadata": [1]}), "metadata must be a JSON object"),
            (
                json!({"name": "a\u{0000}b"}),
                "name must not contain control characters",
            ),
            (
                json!({"url": "https://example.com/\u{0009}x"}),
                "url must not contain control characters",
            ),
            (
                json!({"metadata": {"a": [{"b": "\u{0000}"}]}}),
                "metadata must not contain control characters",
            ),
            (
                json!({"metadata": {"k\u{001f}": 1}}),
                "metadata must not contain control characters",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(
                validate_update(&body, &strict()).unwrap_err(),
                message,
                "{body}"
            );
        }
        let err = validate_update(&json!({"eventTypes": ["a"]}), &strict()).unwrap_err();
        assert!(err.starts_with("Unknown field: eventTypes"), "{err}");
        let err = validate_update(&json!({"event_types": ["Bad"]}), &strict()).unwrap_err();
        assert!(
            err.starts_with("event_types contains an invalid pattern"),
            "{err}"
        );
    }

    #[test]
    fn metadata_is_limited_to_8_kib() {
        let big = json!({"metadata": {"k": "x".repeat(9000)}});
        assert_eq!(
            validate_update(&big, &strict()).unwrap_err(),
            "metadata must be at most 8 KiB"
        );
        let cleared = validate_update(&json!({"metadata": null}), &strict()).unwrap();
        assert_eq!(cleared.metadata.as_deref(), Some("{}"));
    }

    #[test]
    fn duplicate_patterns_are_kept_once() {
        let fields =
            validate_update(&json!({"event_types": ["a.*", "a.*", "*"]}), &strict()).unwrap();
        assert_eq!(fields.event_types.unwrap(), vec!["a.*", "*"]);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::arbitrary::{clean_json, event_type, json, object_with, text};

    // Built from the default so that settings added to the policy keep their defaults here.
    #[allow(clippy::field_reassign_with_default)]
    fn policies() -> [DestinationPolicy; 2] {
        let mut open = DestinationPolicy::default();
        open.allow_http = true;
        open.allow_private_targets = true;
        [DestinationPolicy::default(), open]
    }

    /// A subscription: `*`, a type, or a type's wildcard.
    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("*".to_string()),
            4 => event_type(),
            2 => event_type().prop_map(|t| format!("{t}.*")),
        ]
    }

    /// A valid create body; `metadata` small enough.
    fn webhook_body() -> impl Strategy<Value = Value> {
        (
            ("[a-zA-Z0-9]", text(200)).prop_map(|(first, rest)| format!("{first}{rest}")),
            "https://[a-z]{1,12}(\\.[a-z]{1,12}){1,3}(:[1-9][0-9]{0,3})?(/[a-z0-9_.-]{0,10}){0,3}",
            prop::collection::vec(pattern(), 1..=100),
            prop::option::of(any::<bool>()),
            prop::option::of(
                prop::collection::vec((text(16), clean_json()), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
                    .prop_filter("at most 8 KiB", |m| {
                        m.to_string().len() <= MAX_METADATA_BYTES
                    }),
            ),
        )
            .prop_map(|(name, url, event_types, is_active, metadata)| {
                let mut body = json!({"name": name, "url": url, "event_types": event_types});
                if let Some(is_active) = is_active {
                    body["is_active"] = is_active.into();
                }
                if let Some(metadata) = metadata {
                    body["metadata"] = metadata;
                }
                body
            })
    }

    proptest! {
        #[test]
        fn any_json_is_judged_without_panicking(body in json(), fields in object_with(&FIELDS)) {
            for policy in policies() {
                let _ = validate_create(&body, &policy);
                let _ = validate_update(&body, &policy);
                let _ = validate_create(&fields, &policy);
                let _ = validate_update(&fields, &policy);
            }
        }

        #[test]
        fn a_valid_body_is_accepted_as_sent(body in webhook_body()) {
            for policy in policies() {
                let fields = validate_create(&body, &policy).map_err(TestCaseError::fail)?;
                prop_assert_eq!(fields.name.as_deref(), body["name"].as_str());
                prop_assert_eq!(fields.url.as_deref(), body["url"].as_str());
                let mut patterns: Vec<&str> = Vec::new();
                for p in body["event_types"].as_array().unwrap() {
                    let p = p.as_str().unwrap();
                    if !patterns.contains(&p) {
                        patterns.push(p);
                    }
                }
                prop_assert_eq!(fields.event_types.clone().unwrap(), patterns);
                prop_assert_eq!(fields.is_active, body["is_active"].as_bool());
                match body.get("metadata") {
                    Some(metadata) => {
                        let stored: Value =
                            serde_json::from_str(fields.metadata.as_deref().unwrap()).unwrap();
                        prop_assert_eq!(&stored, metadata);
                    }
                    None => prop_assert_eq!(fields.metadata, None),
                }
                // Every field is also a valid partial update on its own.
                for (key, value) in body.as_object().unwrap() {
                    let update = validate_update(&json!({ key: value }), &policy);
                    prop_assert!(update.is_ok(), "{} {:?}", key, update);
                }
            }
        }
    }
}
