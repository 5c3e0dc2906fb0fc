//! The database URL, whose password never reaches a log line or an error message.

use std::fmt;

/// A database URL, whose password is shown as `***` wherever it is printed or logged
/// (`Display` and `Debug`); the URL itself is reached through `Deref` to connect.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_password(&self.0))
    }
}

impl PartialEq<&str> for DatabaseUrl {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// `text` with the password of a URL in it shown as `***`: the password of its user
/// information (`scheme://user:PASSWORD@host`) and a `password=` query parameter. Anything
/// else is left as it is, so a message still says which database it is about.
pub fn redact_password(text: &str) -> String {
    let mut out = text.to_string();
    if let Some(start) = text.find("://").map(|i| i + 3) {
        // A password may hold `/` or `@` unencoded: the user information runs to the last
        // `@` before the query.
        let end = text[start..]
            .find(['?', '#'])
            .map_or(text.len(), |i| start + i);
        if let Some(at) = text[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = text[start..at].find(':').map(|i| start + i) {
                out = format!("{}***{}", &text[..=colon], &text[at..]);
            }
        }
    }
    let mut from = 0;
    while let Some(found) = out[from..].find("password=").map(|i| from + i) {
        let value = found + "password=".len();
        let is_parameter = found > 0 && matches!(out.as_bytes()[found - 1], b'?' | b'&');
        let value_end = out[value..]
            .find(['&', '#'])
            .map_or(out.len(), |i| value + i);
        if is_parameter && out[value..value_end] != *"***" {
            out.replace_range(value..value_end, "***");
        }
        from = value;
    }
    out
}
