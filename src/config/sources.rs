//! Where each setting's value comes from: the built-in default, the TOML file, a `HERALD_*`
//! variable or a flag, layered in that order (the last one given wins).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::settings::SETTINGS;

/// Each setting's raw value by key, with where it came from.
pub(super) type Values = BTreeMap<&'static str, (String, Source)>;

/// Where a value came from, as a problem names it.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Default,
    File(String),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "the default"),
            Source::File(path) => write!(f, "{path}"),
            Source::Env(name) => write!(f, "{name}"),
            Source::Flag(key) => write!(f, "--{}", key.replace('_', "-")),
        }
    }
}

/// Layers the defaults, the file, the `HERALD_*` variables among `env` and the flags; the
/// problems are those of the file (unreadable, not TOML, an unknown key).
pub(super) fn layer(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[(&'static str, String)],
) -> (Values, Vec<String>) {
    let mut values: Values = SETTINGS
        .iter()
        .map(|s| (s.key, (s.default.to_string(), Source::Default)))
        .collect();
    let mut problems = Vec::new();
    if let Some(path) = file {
        match read_file(path) {
            Ok(entries) => {
                for (key, value) in entries {
                    match SETTINGS.iter().find(|s| s.key == key) {
                        Some(setting) => {
                            let source = Source::File(path.display().to_string());
                            values.insert(setting.key, (value, source));
                        }
                        None => problems.push(unknown_key(&key, path)),
                    }
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    for (name, value) in env {
        if let Some(setting) = SETTINGS.iter().find(|s| s.env == name) {
            values.insert(setting.key, (value, Source::Env(setting.env)));
        }
    }
    for (key, value) in flags {
        values.insert(key, (value.clone(), Source::Flag(key)));
    }
    (values, problems)
}

fn unknown_key(key: &str, path: &Path) -> String {
    format!(
        "unknown setting {key:?} in {} (known: {})",
        path.display(),
        SETTINGS
            .iter()
            .map(|s| s.key)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Reads a TOML file into `(key, raw value)` pairs; arrays become comma-separated lists.
fn read_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let raw = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            Ok((key, raw))
        })
        .collect()
}
