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
