//! Proptest strategies shared by the property tests of the domain: arbitrary JSON, and the
//! valid values of the contract (types, tenants, payloads) that validation must accept.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::envelope::RESERVED_KEYS;

/// Any JSON value, nested a few levels, with any text in strings and keys.
pub fn json() -> impl Strategy<Value = Value> {
    json_of(any::<String>().boxed())
}

/// JSON whose strings and keys hold no control characters (what validation accepts
/// everywhere).
pub fn clean_json() -> impl Strategy<Value = Value> {
    json_of(text(20).boxed())
}

fn json_of(strings: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        strings.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((strings.clone(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A JSON object whose keys are mostly `fields` (so validation gets past "unknown field"),
/// with any values.
pub fn object_with(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        9 => prop::sample::select(fields).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::vec((key, json()), 0..=fields.len() + 1)
        .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
}

/// A valid event type.
pub fn event_type() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,12}(\\.[a-z0-9_]{1,12}){0,4}"
}

/// A valid tenant name.
pub fn tenant() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{0,62}"
}

/// Printable text without control characters (which validation refuses in names and ids).
pub fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        any::<char>().prop_filter("printable", |c| !c.is_control()),
        0..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A payload: any object without the envelope's reserved keys at its top level.
pub fn payload() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((text(16), clean_json()), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .filter(|(key, _)| !RESERVED_KEYS.contains(&key.as_str()))
            .collect()
    })
}

/// The latest instant ISO 8601 renders with a four-digit year.
pub const LAST_MS: i64 = 253_402_300_799_999;

/// A valid publish body: every field, the optional ones present or not.
pub fn event_body() -> impl Strategy<Value = Value> {
    (
        tenant(),
        event_type(),
        payload(),
        prop::option::of(any::<u128>()),
        prop::option::of(text(255)),
        prop::option::of(text(255)),
        prop::option::of(0..=LAST_MS),
    )
        .prop_map(|(tenant, event_type, payload, id, user, source, at)| {
            let mut body = serde_json::json!({
                "tenant": tenant, "eventType": event_type, "payload": payload,
            });
            if let Some(id) = id {
                body["eventId"] = uuid::Uuid::from_u128(id).to_string().into();
            }
            if let Some(user) = user {
                body["userId"] = user.into();
            }
            if let Some(source) = source {
                body["sourceService"] = source.into();
            }
            if let Some(at) = at {
                body["occurredAt"] = super::time::format_ms(at).into();
            }
            body
        })
}
