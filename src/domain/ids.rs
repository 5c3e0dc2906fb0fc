//! Typed ids: which tenant, webhook, event or node a value names. Each wraps the text or
//! UUID the database and the wire carry, and serializes as it (`serde(transparent)`), so a
//! tenant can no longer be passed where a webhook id was meant.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::tenant::is_valid_tenant_name;

/// A tenant's name, which is its id everywhere: tokens, webhooks and events carry it. It may
/// name a tenant that does not exist (a producer may publish to any name); only a new
/// tenant's name must match the pattern [`TenantId::parse`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// A new tenant's name: `[a-z0-9][a-z0-9_-]{0,62}`, else `None`.
    pub fn parse(name: &str) -> Option<TenantId> {
        is_valid_tenant_name(name).then(|| TenantId(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A name as stored or as a caller sent it, unchecked.
impl From<String> for TenantId {
    fn from(name: String) -> TenantId {
        TenantId(name)
    }
}

/// A name as a caller sent it, unchecked.
impl From<&str> for TenantId {
    fn from(name: &str) -> TenantId {
        TenantId(name.to_string())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Defines a UUID id: `generate` (v7, time-ordered, so the primary index stays
/// append-mostly), `parse` of any UUID text, and the conversions to and from `Uuid`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id (UUID v7).
            pub fn generate() -> $name {
                $name(Uuid::now_v7())
            }

            /// The id a UUID text names (any case, hyphenated or not), else `None`.
            pub fn parse(text: &str) -> Option<$name> {
                Uuid::parse_str(text).ok().map($name)
            }

            pub fn as_uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> $name {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A webhook's id (`id` of a webhook on the wire).
    WebhookId
);

uuid_id!(
    /// A bearer token's id, which names it to list or revoke it (never the token itself).
    TokenId
);

uuid_id!(
    /// Herald's id of a stored event, its record id (`id` of an event on the wire). Not to be
    /// confused with the producer's [`BusinessEventId`].
    EventId
);

/// The producer's `eventId`: the business id of an event, unique within its tenant (the
/// idempotency key of publishing), and the `webhook-id` and `event_id` of every delivery.
/// Always a UUID in lowercase hyphenated form: the producer's, normalised, or a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BusinessEventId(String);

impl BusinessEventId {
    /// A new business id (UUID v7), for an event published without one.
    pub fn generate() -> BusinessEventId {
        BusinessEventId(Uuid::now_v7().to_string())
    }

    /// The business id a UUID text names, normalised to lowercase hyphenated form.
    pub fn parse(text: &str) -> Option<BusinessEventId> {
        Uuid::parse_str(text)
            .ok()
            .map(|id| BusinessEventId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A business id as stored, unchecked.
impl From<String> for BusinessEventId {
    fn from(id: String) -> BusinessEventId {
        BusinessEventId(id)
    }
}

impl fmt::Display for BusinessEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// One running dispatcher, as its claims name it (`locked_by`): `node-` and a random UUID,
/// new on every start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// A new node id (UUID v4).
    pub fn generate() -> NodeId {
        NodeId(format!("node-{}", Uuid::new_v4()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A node id as a claim names it (`locked_by`), or any name a test gives a node.
impl From<&str> for NodeId {
    fn from(name: &str) -> NodeId {
        NodeId(name.to_string())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::{BusinessEventId, EventId, NodeId, TenantId, WebhookId};

    #[test]
    fn a_new_tenant_name_follows_the_pattern_and_a_stored_one_is_kept_as_it_is() {
        assert_eq!(TenantId::parse("acme").unwrap().as_str(), "acme");
        assert_eq!(TenantId::parse("Acme"), None);
        assert_eq!(TenantId::from("Acme".to_string()).as_str(), "Acme");
    }

    #[test]
    fn ids_serialize_as_the_value_they_wrap() {
        let uuid = Uuid::now_v7();
        let webhook = WebhookId::from(uuid);
        assert_eq!(
            serde_json::to_value(webhook).unwrap(),
            serde_json::to_value(uuid).unwrap()
        );
        assert_eq!(WebhookId::parse(&uuid.to_string()), Some(webhook));
        assert_eq!(EventId::parse("not a uuid"), None);
        let tenant = TenantId::parse("acme").unwrap();
        assert_eq!(serde_json::to_value(&tenant).unwrap(), "acme");
    }

    #[test]
    fn business_ids_are_normalised_to_lowercase_hyphenated() {
        let id = BusinessEventId::parse("0B7E8A595D4C4A0E9A432F9D0C1E8B11").unwrap();
        assert_eq!(id.as_str(), "0b7e8a59-5d4c-4a0e-9a43-2f9d0c1e8b11");
        assert!(Uuid::parse_str(BusinessEventId::generate().as_str()).is_ok());
        assert_eq!(BusinessEventId::parse("x"), None);
    }

    #[test]
    fn node_ids_are_new_on_every_start() {
        let node = NodeId::generate();
        assert!(node.as_str().starts_with("node-"), "{node}");
        assert_ne!(NodeId::generate(), node);
    }
}
