//! A typed walk over the merged configuration tree that records every problem with its key path
//! instead of stopping at the first, and reports keys nobody read (typos) as problems too.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

/// One configuration problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `sources.support.port`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Collected problems.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// A table of the tree, tracking which keys were read.
pub struct Table<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    read: BTreeSet<String>,
}

impl<'a> Table<'a> {
    pub fn root(value: &'a Value) -> Table<'a> {
        Table {
            path: String::new(),
            map: value.as_object(),
            read: BTreeSet::new(),
        }
    }

    /// A table at an explicit path (items of a list of tables).
    pub fn at(path: &str, value: &'a Value) -> Table<'a> {
        Table {
            path: path.to_string(),
            map: value.as_object(),
            read: BTreeSet::new(),
        }
    }

    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The keys present (for maps of named entries such as `[sources.NAME]`).
    pub fn keys(&self) -> Vec<String> {
        self.map
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn raw(&mut self, key: &str) -> Option<&'a Value> {
        self.read.insert(key.to_string());
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub fn table(&mut self, key: &str, problems: &mut Problems) -> Table<'a> {
        let path = self.path(key);
        let map = match self.raw(key) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                problems.push(&path, "must be a table");
                None
            }
        };
        Table {
            path,
            map,
            read: BTreeSet::new(),
        }
    }

    /// A string; numbers and booleans (as environment overrides parse them) are accepted as text.
    pub fn string(&mut self, key: &str, problems: &mut Problems) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                problems.push(self.path(key), "must be a string");
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &str, problems: &mut Problems) -> Option<String> {
        let v = self.string(key, problems);
        if v.as_deref().is_none_or(|s| s.trim().is_empty())
            && self.map.is_some_and(|m| !m.contains_key(key))
        {
            problems.push(self.path(key), "is required");
        }
        v.filter(|s| !s.trim().is_empty())
    }

    pub fn bool(&mut self, key: &str, default: bool, problems: &mut Problems) -> bool {
        match self.raw(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(_) => {
                problems.push(self.path(key), "must be true or false");
                default
            }
        }
    }

    pub fn u64(&mut self, key: &str, default: u64, problems: &mut Problems) -> u64 {
        match self.raw(key) {
            None => default,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(default),
            Some(Value::String(s)) if s.parse::<u64>().is_ok() => s.parse().unwrap_or(default),
            Some(_) => {
                problems.push(self.path(key), "must be a whole number ≥ 0");
                default
            }
        }
    }

    /// A duration such as `15m`, `90s`, `1h 30m`.
    pub fn duration(&mut self, key: &str, default: Duration, problems: &mut Problems) -> Duration {
        match self.string(key, problems) {
            None => default,
            Some(s) => parse_duration(&s).unwrap_or_else(|e| {
                problems.push(self.path(key), e);
                default
            }),
        }
    }

    pub fn string_list(&mut self, key: &str, problems: &mut Problems) -> Vec<String> {
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    // An empty entry matches nothing, whatever the list is for.
                    Value::String(s) if s.trim().is_empty() => {
                        problems.push(
                            format!("{}[{i}]", self.path(key)),
                            "is empty: an empty entry can never match",
                        );
                        None
                    }
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        problems.push(format!("{}[{i}]", self.path(key)), "must be a string");
                        None
                    }
                })
                .collect(),
            // A single value (e.g. from the environment) is a list of one; commas separate more.
            Some(Value::String(s)) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            Some(_) => {
                problems.push(self.path(key), "must be a list of strings");
                Vec::new()
            }
        }
    }

    /// Reports keys present but never read: misspellings must not pass silently.
    pub fn finish(self, problems: &mut Problems) {
        if let Some(map) = self.map {
            for key in map.keys().filter(|k| !self.read.contains(*k)) {
                problems.push(self.path(key), "unknown key");
            }
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 15m or 90s ({e})"))
}
