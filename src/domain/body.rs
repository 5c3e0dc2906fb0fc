//! The shape every JSON request body takes: an object holding only the fields its route
//! knows. Checked before any field, with the contract's messages.

use serde_json::{Map, Value};

/// The object `body` is, if it names only `fields`; else the message saying why not (the
/// first unknown field, in the order sent, and the fields expected).
pub fn known_fields(body: Value, fields: &[&str]) -> Result<Map<String, Value>, String> {
    let Value::Object(object) = body else {
        return Err("Request body must be a JSON object".into());
    };
    if let Some(key) = object.keys().find(|key| !fields.contains(&key.as_str())) {
        return Err(format!(
            "Unknown field: {key} (expected {})",
            fields.join(", ")
        ));
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::known_fields;

    #[test]
    fn a_body_is_an_object_of_known_fields() {
        let fields = ["name", "url"];
        assert_eq!(
            known_fields(json!([1]), &fields).unwrap_err(),
            "Request body must be a JSON object"
        );
        assert_eq!(
            known_fields(json!({"name": 1, "b": 2, "a": 3}), &fields).unwrap_err(),
            "Unknown field: b (expected name, url)"
        );
        let object = known_fields(json!({"url": "u"}), &fields).unwrap();
        assert_eq!(object["url"], "u");
    }
}
