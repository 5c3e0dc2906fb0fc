//! Text that databases refuse: U+0000 (PostgreSQL's `text` cannot hold it) and the other C0
//! control characters, refused in every string field Herald stores as such, with a message
//! naming the field. Payloads are not checked here: they are stored as JSON text, where a
//! control character is an escape (`\u0000`) and survives byte-exact on every backend.

use serde_json::Value;

fn is_control(c: char) -> bool {
    c <= '\u{1f}'
}

/// Refuses `text` if it holds a C0 control character.
pub fn check_no_control(field: &str, text: &str) -> Result<(), String> {
    if text.chars().any(is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// Refuses `value` if any string in it, object keys included, at any depth, holds a C0
/// control character.
pub fn check_json_no_control(field: &str, value: &Value) -> Result<(), String> {
    let clean = match value {
        Value::String(text) => !text.chars().any(is_control),
        Value::Array(items) => items
            .iter()
            .all(|item| check_json_no_control(field, item).is_ok()),
        Value::Object(object) => object.iter().all(|(key, item)| {
            !key.chars().any(is_control) && check_json_no_control(field, item).is_ok()
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    };
    if clean {
        Ok(())
    } else {
        Err(format!("{field} must not contain control characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_c0_character_is_refused_and_others_pass() {
        for c in (0u32..0x20).filter_map(char::from_u32) {
            assert_eq!(
                check_no_control("userId", &format!("a{c}b")).unwrap_err(),
                "userId must not contain control characters"
            );
        }
        for ok in ["plain", "é ü 中文", "emoji 🎉", "del \u{7f}", ""] {
            assert_eq!(check_no_control("name", ok), Ok(()));
        }
    }

    #[test]
    fn nested_strings_and_keys_are_checked() {
        assert_eq!(
            check_json_no_control("metadata", &json!({"a": {"b": [1, "ok"]}})),
            Ok(())
        );
        for bad in [
            json!({"a": "x\u{0}y"}),
            json!({"a": {"b": ["ok", "tab\there"]}}),
            json!({"a": [{"k\u{1b}": 1}]}),
            json!({"\n": true}),
        ] {
            assert_eq!(
                check_json_no_control("metadata", &bad).unwrap_err(),
                "metadata must not contain control characters",
                "{bad}"
            );
        }
    }
}
