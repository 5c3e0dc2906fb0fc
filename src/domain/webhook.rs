//! Validation of webhook create and update bodies (snake_case, as the contract fixes them),
//! with one clear message per problem, naming the field: a [`WebhookInput`] as sent becomes
//! [`WebhookFields`] (an update) or [`WebhookSettings`] (a create, every field set).

use serde_json::{Map, Value};

use super::destination::{DestinationPolicy, check_url_literal};
use super::event_type::is_valid_pattern;
use super::ids::{TenantId, WebhookId};
use super::keys::ApiKey;
use super::text::{check_json_no_control, check_no_control};

/// Largest `metadata` accepted, as serialized JSON.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
const MAX_NAME_CHARS: usize = 255;
const MAX_URL_CHARS: usize = 2048;
const MAX_EVENT_TYPES: usize = 100;
/// The fields of a create or update body, in the order they are checked.
pub const FIELDS: [&str; 5] = ["name", "url", "event_types", "is_active", "metadata"];

/// A webhook body's fields as sent, each any JSON (`None`: absent).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WebhookInput {
    pub name: Option<Value>,
    pub url: Option<Value>,
    pub event_types: Option<Value>,
    pub is_active: Option<Value>,
    pub metadata: Option<Value>,
}

impl WebhookInput {
    /// The fields of a body object that holds only [`FIELDS`]
    /// ([`known_fields`](super::body::known_fields) checks that).
    pub fn from_fields(mut object: Map<String, Value>) -> WebhookInput {
        WebhookInput {
            name: object.remove("name"),
            url: object.remove("url"),
            event_types: object.remove("event_types"),
            is_active: object.remove("is_active"),
            metadata: object.remove("metadata"),
        }
    }

    /// Validates an update: any subset of the fields, each checked in the order of
    /// [`FIELDS`].
    pub fn validate_update(self, policy: &DestinationPolicy) -> Result<WebhookFields, String> {
        Ok(WebhookFields {
            name: parse_name(self.name)?,
            url: parse_url(self.url, policy)?,
            event_types: parse_event_types(self.event_types)?,
            is_active: parse_is_active(self.is_active)?,
            metadata: parse_metadata(self.metadata)?,
        })
    }

    /// Validates a create: the fields as for an update, then `name`, `url` and
    /// `event_types` required.
    pub fn validate_create(self, policy: &DestinationPolicy) -> Result<WebhookSettings, String> {
        self.validate_update(policy)?.into_settings()
    }
}

/// A validated subset of webhook fields: what an update replaces.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WebhookFields {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub is_active: Option<bool>,
    /// Compact JSON text of an object.
    pub metadata: Option<String>,
}

/// What a create sets, validated: every field has its value.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub is_active: bool,
    /// Compact JSON text of an object.
    pub metadata: String,
}

impl WebhookFields {
    /// The settings of a new webhook: `name`, `url` and `event_types` are required;
    /// `is_active` is false and `metadata` `{}` unless given.
    fn into_settings(self) -> Result<WebhookSettings, String> {
        let required = |field: &str| format!("{field} is required");
        let name = self.name.ok_or_else(|| required("name"))?;
        let url = self.url.ok_or_else(|| required("url"))?;
        let event_types = self.event_types.ok_or_else(|| required("event_types"))?;
        Ok(WebhookSettings {
            name,
            url,
            event_types,
            is_active: self.is_active.unwrap_or(false),
            metadata: self.metadata.unwrap_or_else(|| "{}".into()),
        })
    }
}

/// A webhook not stored yet: a tenant's validated settings, with a new id and a new key.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub tenant: TenantId,
    pub api_key: ApiKey,
    pub settings: WebhookSettings,
}

impl NewWebhook {
    pub fn new(tenant: TenantId, settings: WebhookSettings) -> NewWebhook {
        NewWebhook {
            id: WebhookId::generate(),
            tenant,
            api_key: ApiKey::generate(),
            settings,
        }
    }
}

/// A field given as `null` counts as absent (except `metadata`, where null clears it).
fn present(value: Option<Value>) -> Option<Value> {
    value.filter(|value| !value.is_null())
}

/// `name`: 1 to 255 characters, not only spaces, no control characters.
fn parse_name(value: Option<Value>) -> Result<Option<String>, String> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    let Value::String(name) = value else {
        return Err("name must be a string".into());
    };
    check_no_control("name", &name)?;
    let chars = name.trim().chars().count();
    if chars == 0 || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "name must be between 1 and {MAX_NAME_CHARS} characters"
        ));
    }
    Ok(Some(name))
}

/// `url`: at most 2,048 characters, no control characters, a destination `policy` allows.
fn parse_url(value: Option<Value>, policy: &DestinationPolicy) -> Result<Option<String>, String> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    let Value::String(url) = value else {
        return Err("url must be a string".into());
    };
    // The URL parser would drop tabs and newlines silently; the text is stored as given.
    check_no_control("url", &url)?;
    if url.len() > MAX_URL_CHARS {
        return Err(format!("url must be at most {MAX_URL_CHARS} characters"));
    }
    check_url_literal(&url, policy)?;
    Ok(Some(url))
}

/// `event_types`: 1 to 100 patterns, each kept once, in the order given.
fn parse_event_types(value: Option<Value>) -> Result<Option<Vec<String>>, String> {
    const SHAPE: &str = "event_types must be a non-empty array of event type patterns";
    let Some(value) = present(value) else {
        return Ok(None);
    };
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
    Ok(Some(patterns))
}

/// `is_active`: a boolean.
fn parse_is_active(value: Option<Value>) -> Result<Option<bool>, String> {
    present(value)
        .map(|value| {
            value
                .as_bool()
                .ok_or_else(|| "is_active must be a boolean".into())
        })
        .transpose()
}

/// `metadata`: a JSON object of at most 8 KiB, stored as compact text; `null` means `{}`.
fn parse_metadata(value: Option<Value>) -> Result<Option<String>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let metadata = match value {
        Value::Null => "{}".to_string(),
        Value::Object(_) => {
            check_json_no_control("metadata", &value)?;
            value.to_string()
        }
        _ => return Err("metadata must be a JSON object".into()),
    };
    if metadata.len() > MAX_METADATA_BYTES {
        return Err("metadata must be at most 8 KiB".into());
    }
    Ok(Some(metadata))
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
