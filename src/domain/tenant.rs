//! Tenant names: what operators create, producers send and webhooks and events carry.

/// `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn is_valid_tenant_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract_pattern() {
        for ok in ["acme", "a", "0day", "acme_eu-1", &"a".repeat(63)] {
            assert!(is_valid_tenant_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-acme",
            "_acme",
            "Acme",
            "ac me",
            "acmé",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_tenant_name(bad), "{bad}");
        }
    }
}
