//! The shipped Grafana dashboards as data: panels, their queries, Grafana's variables
//! substituted so promtool or a real Prometheus can run them.

use std::path::PathBuf;

use serde_json::Value;

pub const DASHBOARDS: [&str; 4] = ["wallboard", "compliance", "coverage", "health"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn dashboard(name: &str) -> Value {
    let path = root().join(format!("dashboards/grafana/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not valid JSON: {e}"))
}

/// Every panel, rows' nested panels included.
pub fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// Grafana's variables replaced by what Prometheus can run: the built-in intervals by
/// durations, `$var`/`${var}`/`${var:fmt}`/`[[var]]` by `value` (a duration when inside a
/// range selector).
pub fn substitute(expr: &str, value: &str) -> String {
    let mut s = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    let mut out = String::new();
    let mut in_range = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
                chars.next();
                out.push_str(if in_range { "5m" } else { value });
            }
            '$' => {
                if chars.peek() == Some(&'{') {
                    for c in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                    }
                } else {
                    while chars
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        chars.next();
                    }
                }
                out.push_str(if in_range { "5m" } else { value });
            }
            c => {
                if c == '[' {
                    in_range = true;
                } else if c == ']' {
                    in_range = false;
                }
                out.push(c);
            }
        }
    }
    std::mem::swap(&mut s, &mut out);
    s
}

/// (dashboard, panel title, refId, expr) of every target.
pub fn targets() -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    name.to_string(),
                    p["title"].as_str().unwrap_or_default().to_string(),
                    t["refId"].as_str().unwrap_or_default().to_string(),
                    t["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}
