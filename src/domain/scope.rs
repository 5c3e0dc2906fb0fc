//! What a bearer token may do: its kind (partner or producer) and its scopes.

/// One permission a token carries; each route needs exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    WebhooksRead,
    WebhooksWrite,
    EventsRead,
    EventsRetry,
    EventsPublish,
}

impl Scope {
    /// The scopes a partner token gets when none are named.
    pub const PARTNER_DEFAULT: [Scope; 4] = [
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::EventsRead,
        Scope::EventsRetry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::EventsRead => "events:read",
            Scope::EventsRetry => "events:retry",
            Scope::EventsPublish => "events:publish",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        [
            Scope::WebhooksRead,
            Scope::WebhooksWrite,
            Scope::EventsRead,
            Scope::EventsRetry,
            Scope::EventsPublish,
        ]
        .into_iter()
        .find(|scope| scope.as_str() == text)
    }

    /// Whether a partner token may hold this scope (publishing is for producer tokens).
    pub fn is_partner_scope(self) -> bool {
        self != Scope::EventsPublish
    }
}

/// Scopes as stored: space-separated names.
pub fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses stored scopes, ignoring names this version does not know.
pub fn scopes_from_text(text: &str) -> Vec<Scope> {
    text.split_whitespace().filter_map(Scope::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_text() {
        let text = scopes_to_text(&Scope::PARTNER_DEFAULT);
        assert_eq!(
            text,
            "webhooks:read webhooks:write events:read events:retry"
        );
        assert_eq!(scopes_from_text(&text), Scope::PARTNER_DEFAULT.to_vec());
        assert_eq!(
            scopes_from_text("events:publish bogus"),
            vec![Scope::EventsPublish]
        );
        assert!(!Scope::EventsPublish.is_partner_scope());
    }
}
