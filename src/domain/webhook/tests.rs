//! Each rule of a webhook body, by example.

use serde_json::{Value, json};

use super::{DestinationPolicy, FIELDS, WebhookFields, WebhookInput, WebhookSettings};
use crate::domain::body::known_fields;

/// A create body, validated as the API does it.
pub(super) fn validate_create(
    body: &Value,
    policy: &DestinationPolicy,
) -> Result<WebhookSettings, String> {
    WebhookInput::from_fields(known_fields(body.clone(), &FIELDS)?).validate_create(policy)
}

/// An update body, validated as the API does it.
pub(super) fn validate_update(
    body: &Value,
    policy: &DestinationPolicy,
) -> Result<WebhookFields, String> {
    WebhookInput::from_fields(known_fields(body.clone(), &FIELDS)?).validate_update(policy)
}

fn strict() -> DestinationPolicy {
    DestinationPolicy::default()
}

#[test]
fn create_requires_name_url_and_event_types() {
    let ok = json!({"name": "n", "url": "https://example.com/h", "event_types": ["a.b"]});
    let settings = validate_create(&ok, &strict()).unwrap();
    assert!(!settings.is_active);
    assert_eq!(settings.metadata, "{}");
    assert_eq!(settings.event_types, vec!["a.b".to_string()]);
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
    let fields = validate_update(&json!({"event_types": ["a.*", "a.*", "*"]}), &strict()).unwrap();
    assert_eq!(fields.event_types.unwrap(), vec!["a.*", "*"]);
}
