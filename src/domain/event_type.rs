//! Event types (`kyc.status.changed`) and the patterns webhooks subscribe with: an exact type,
//! a prefix wildcard (`card.*`) or `*`.

/// The longest event type or pattern accepted, so an index entry stays small.
pub const MAX_TYPE_LEN: usize = 255;

/// A type is lowercase segments of `[a-z0-9_]` joined by dots.
pub fn is_valid_type(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TYPE_LEN
        && text.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// A pattern is `*`, a valid type, or a valid type followed by `.*`.
pub fn is_valid_pattern(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    match text.strip_suffix(".*") {
        Some(prefix) => is_valid_type(prefix),
        None => is_valid_type(text),
    }
}

/// The category of a type: its first segment.
pub fn category(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// Whether `pattern` subscribes to `event_type`. `card.*` matches `card.issued` and
/// `card.limit.changed`, not `card` itself nor `cardholder.created`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

/// Whether any of a webhook's patterns subscribes to `event_type`.
pub fn any_pattern_matches<S: AsRef<str>>(patterns: &[S], event_type: &str) -> bool {
    patterns
        .iter()
        .any(|p| pattern_matches(p.as_ref(), event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_lowercase_dotted_segments() {
        for ok in ["kyc.status.changed", "card", "a_b.c1", "x.y.z.w"] {
            assert!(is_valid_type(ok), "{ok}");
        }
        for bad in [
            "",
            "Card.created",
            "card..x",
            ".card",
            "card.",
            "card-x",
            "card.*",
            "*",
            "é",
        ] {
            assert!(!is_valid_type(bad), "{bad}");
        }
        assert!(!is_valid_type(&"a".repeat(256)));
    }

    #[test]
    fn patterns_are_types_wildcards_or_star() {
        for ok in ["*", "card.*", "kyc.status.*", "kyc.status.changed"] {
            assert!(is_valid_pattern(ok), "{ok}");
        }
        for bad in ["", "**", "card*", "*.card", "card.*.x", ".*", "Card.*"] {
            assert!(!is_valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn wildcards_match_whole_segments() {
        assert!(pattern_matches("*", "anything.at.all"));
        assert!(pattern_matches("card.*", "card.issued"));
        assert!(pattern_matches("card.*", "card.limit.changed"));
        assert!(!pattern_matches("card.*", "card"));
        assert!(!pattern_matches("card.*", "cardholder.created"));
        assert!(pattern_matches("kyc.status.changed", "kyc.status.changed"));
        assert!(!pattern_matches("kyc.status.changed", "kyc.status"));
        assert!(any_pattern_matches(&["a.b", "card.*"], "card.x"));
        assert!(!any_pattern_matches::<&str>(&[], "card.x"));
    }

    #[test]
    fn category_is_the_first_segment() {
        assert_eq!(category("kyc.status.changed"), "kyc");
        assert_eq!(category("card"), "card");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Valid types: one to five segments of `[a-z0-9_]`.
    fn event_type() -> impl Strategy<Value = String> {
        "[a-z0-9_]{1,12}(\\.[a-z0-9_]{1,12}){0,4}"
    }

    proptest! {
        #[test]
        fn a_valid_type_is_a_pattern_that_matches_itself(t in event_type()) {
            prop_assert!(is_valid_type(&t));
            prop_assert!(is_valid_pattern(&t));
            prop_assert!(pattern_matches(&t, &t));
            prop_assert!(t.starts_with(category(&t)));
            prop_assert!(!category(&t).contains('.'));
        }

        #[test]
        fn star_matches_every_type(t in event_type(), anything in ".*") {
            prop_assert!(pattern_matches("*", &t));
            prop_assert!(pattern_matches("*", &anything));
        }

        #[test]
        fn a_wildcard_matches_exactly_the_types_under_its_prefix(
            prefix in event_type(),
            rest in event_type(),
            other in event_type(),
        ) {
            let wildcard = format!("{prefix}.*");
            prop_assert!(is_valid_pattern(&wildcard));
            let under = format!("{prefix}.{rest}");
            prop_assert!(pattern_matches(&wildcard, &under));
            prop_assert!(!pattern_matches(&wildcard, &prefix));
            prop_assert_eq!(
                pattern_matches(&wildcard, &other),
                other.starts_with(&format!("{prefix}."))
            );
            // A longer segment that merely starts like the prefix is another category.
            let lookalike = format!("{prefix}x.{rest}");
            prop_assert!(!pattern_matches(&wildcard, &lookalike));
        }

        #[test]
        fn an_exact_pattern_matches_only_its_type(a in event_type(), b in event_type()) {
            prop_assert_eq!(pattern_matches(&a, &b), a == b);
        }

        #[test]
        fn any_text_is_judged_without_panicking(text in "\\PC*", other in ".*") {
            let valid_type = is_valid_type(&text);
            let valid_pattern = is_valid_pattern(&text);
            // Every type is a pattern; a type never holds `*`.
            prop_assert!(!valid_type || valid_pattern);
            prop_assert!(!valid_type || !text.contains('*'));
            prop_assert!(!valid_type || text.len() <= MAX_TYPE_LEN);
            let _ = category(&text);
            let _ = pattern_matches(&text, &other);
            let _ = pattern_matches(&other, &text);
        }
    }
}
