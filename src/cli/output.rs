//! How the operator commands print: `-` for what is absent, and `--json` as one line of
//! compact JSON, like `tenant` and `token` print theirs.

use std::fmt::Display;

use serde::Serialize;

/// The value, or `-` when there is none.
pub fn dash<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
