//! Webhook bodies at random: judged without panicking, and a valid one accepted as sent.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::tests::{validate_create, validate_update};
use super::{DestinationPolicy, FIELDS, MAX_METADATA_BYTES};
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
            prop_assert_eq!(Some(fields.name.as_str()), body["name"].as_str());
            prop_assert_eq!(Some(fields.url.as_str()), body["url"].as_str());
            let mut patterns: Vec<&str> = Vec::new();
            for p in body["event_types"].as_array().unwrap() {
                let p = p.as_str().unwrap();
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
            prop_assert_eq!(fields.event_types.clone(), patterns);
            prop_assert_eq!(fields.is_active, body["is_active"].as_bool().unwrap_or(false));
            match body.get("metadata") {
                Some(metadata) => {
                    let stored: Value =
                        serde_json::from_str(&fields.metadata).unwrap();
                    prop_assert_eq!(&stored, metadata);
                }
                None => prop_assert_eq!(fields.metadata.as_str(), "{}"),
            }
            // Every field is also a valid partial update on its own.
            for (key, value) in body.as_object().unwrap() {
                let update = validate_update(&json!({ key: value }), &policy);
                prop_assert!(update.is_ok(), "{} {:?}", key, update);
            }
        }
    }
}
