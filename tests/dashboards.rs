//! The shipped Prometheus rules and Grafana dashboards, checked without Grafana.
//!
//! - the rules pass `promtool check rules --lint=all` and their unit tests, and every alert has
//!   a test case that fires and one that stays silent;
//! - every dashboard panel's PromQL, with Grafana's variables substituted, is valid for promtool;
//! - structure in the spirit of grafana/dashboard-linter: stable unique uids and titles, a
//!   templated Prometheus datasource used by every panel and target, unique panel ids, titles,
//!   descriptions and units, `$__rate_interval` in ranged functions, counters only inside
//!   `rate`/`increase`, job matchers, label variables from PromQL refreshed on time change;
//! - every metric a dashboard or rule names exists in the live `/metrics` of a running slawatch
//!   (or is a recording rule shipped beside them), and that exposition is `promtool check
//!   metrics` clean with every channel × language series present from start-up.
//!
//! promtool missing is a failure with the package to install, never a skip.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::grafana::{self, DASHBOARDS, dashboard, panels, targets};
use support::slawatchd::{Options, Slawatch, require};

const RULES: &str = "dashboards/prometheus/slawatch.rules.yml";
const RULE_TESTS: &str = "dashboards/prometheus/slawatch.rules.test.yml";
const UIDS: [&str; 4] = [
    "slawatch-wallboard",
    "slawatch-compliance",
    "slawatch-coverage",
    "slawatch-health",
];
const ALERTS: [&str; 12] = [
    "SlaBreachImminent",
    "SlaBreached",
    "SlaComplianceBudgetBurn",
    "SlawatchDown",
    "SlawatchNoActiveReplica",
    "SlawatchSourceDown",
    "SlawatchSourceStale",
    "SlawatchNotifierDown",
    "SlawatchLedgerNotWritable",
    "SlawatchBlind",
    "SlawatchClockStepped",
    "SlawatchAlertDeliveryFailing",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    require("promtool", "prometheus")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Grafana's variables replaced by what promtool can parse (see [`grafana::substitute`]).
fn substitute(expr: &str) -> String {
    grafana::substitute(expr, "placeholder")
}

/// The selector inside each variable's `label_values(selector, label)` query.
fn variable_selectors(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().unwrap_or_default();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map(|(sel, _)| sel.to_string())
                .unwrap_or_else(|| panic!("variable {} is not label_values(…): {q}", v["name"]));
            out.push(inner);
        }
    }
    out
}

/// The committed rules and dashboards are what `dashboards/generate.py` writes, so an edit by
/// hand is not lost at the next generation.
#[test]
fn committed_files_match_the_generator() {
    let python = require("python3", "python3");
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, out) = run(Command::new(python)
        .arg(root().join("dashboards/generate.py"))
        .arg(dir.path()));
    assert!(ok, "dashboards/generate.py failed:\n{out}");
    let mut files = vec!["prometheus/slawatch.rules.yml".to_string()];
    files.extend(DASHBOARDS.iter().map(|d| format!("grafana/{d}.json")));
    for f in files {
        let generated = std::fs::read_to_string(dir.path().join(&f)).expect("generated file");
        let committed =
            std::fs::read_to_string(root().join("dashboards").join(&f)).expect("committed file");
        assert!(
            generated == committed,
            "dashboards/{f} differs from what dashboards/generate.py writes; run it and commit"
        );
    }
}

#[test]
fn rules_pass_promtool_lint() {
    let (ok, out) = run(Command::new(promtool())
        .args(["check", "rules", "--lint=all", "--lint-fatal", RULES])
        .current_dir(root()));
    assert!(ok, "promtool check rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn rule_unit_tests_pass() {
    let (ok, out) = run(Command::new(promtool())
        .args(["test", "rules", RULE_TESTS])
        .current_dir(root()));
    assert!(ok, "promtool test rules failed:\n{out}");
}

/// The rules file is generated in a fixed shape (`- alert: "Name"`); the tests file names each
/// case's alert and says `exp_alerts: []` when it must be silent.
#[test]
fn every_alert_has_a_firing_and_a_silent_case() {
    let rules = std::fs::read_to_string(root().join(RULES)).expect("rules");
    let defined: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim_matches('"').to_string())
        .collect();
    let expected: BTreeSet<String> = ALERTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        defined, expected,
        "the alerts the issue asks for, and only those"
    );

    let tests = std::fs::read_to_string(root().join(RULE_TESTS)).expect("rule tests");
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let lines: Vec<&str> = tests.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.trim().strip_prefix("alertname: ") {
            let silent = lines
                .get(i + 1)
                .is_some_and(|n| n.trim() == "exp_alerts: []");
            let e = cases.entry(name.trim().to_string()).or_default();
            if silent { e.1 += 1 } else { e.0 += 1 }
        }
    }
    for alert in ALERTS {
        let (firing, silent) = cases.get(alert).copied().unwrap_or_default();
        assert!(
            firing > 0 && silent > 0,
            "{alert}: {firing} firing and {silent} silent test cases; need at least one of each"
        );
    }
}

#[test]
fn every_le_matcher_accepts_both_spellings() {
    let rules = std::fs::read_to_string(root().join(RULES)).expect("rules");
    let mut all = vec![rules];
    all.extend(targets().into_iter().map(|t| t.3));
    for text in all {
        for (i, _) in text.match_indices("le=") {
            let rest = &text[i..];
            assert!(
                rest.starts_with("le=~\"900(\\\\.0)?\"") || rest.starts_with("le=~\"900(\\.0)?\""),
                "an le matcher must accept 900 and 900.0 (Prometheus 3): {}",
                &rest[..rest.len().min(40)]
            );
        }
    }
}

#[test]
fn every_panel_query_is_valid_promql() {
    let mut rules = Vec::new();
    for (dash, title, refid, expr) in targets() {
        assert!(
            !expr.trim().is_empty(),
            "{dash} / {title} / {refid}: empty expr"
        );
        rules.push(json!({
            "record": "dashboard:expr:check",
            "expr": substitute(&expr),
            "labels": {"dashboard": dash, "panel": title, "refid": refid},
        }));
    }
    for name in DASHBOARDS {
        for (n, sel) in variable_selectors(&dashboard(name)).into_iter().enumerate() {
            rules.push(json!({
                "record": "dashboard:variable:check",
                "expr": substitute(&sel),
                "labels": {"dashboard": name, "variable": n.to_string()},
            }));
        }
    }
    let count = rules.len();
    // YAML is a superset of JSON, so promtool reads this as a rule file.
    let file = json!({"groups": [{"name": "dashboards", "rules": rules}]});
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-exprs.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&file).expect("json")).expect("write");
    let (ok, out) = run(Command::new(promtool()).args(["check", "rules"]).arg(&path));
    assert!(ok, "a dashboard query is not valid PromQL:\n{out}");
    assert!(out.contains(&format!("{count} rules found")), "{out}");
}

#[test]
fn substitution_handles_every_variable_form() {
    assert_eq!(
        substitute("rate(x{a=~\"$a\", b=\"${b:regex}\", c=\"[[c]]\"}[$__rate_interval])"),
        "rate(x{a=~\"placeholder\", b=\"placeholder\", c=\"placeholder\"}[5m])"
    );
    assert_eq!(
        substitute("sum_over_time(x[$window])"),
        "sum_over_time(x[5m])"
    );
}

#[test]
fn dashboards_are_structurally_sound() {
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for (name, uid) in DASHBOARDS.iter().zip(UIDS) {
        let d = dashboard(name);
        assert_eq!(d["uid"], uid, "{name}: stable uid");
        assert!(uids.insert(d["uid"].to_string()), "{name}: duplicate uid");
        let title = d["title"].as_str().unwrap_or_default();
        assert!(
            !title.is_empty() && titles.insert(title.to_string()),
            "{name}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}: schemaVersion"
        );
        assert!(d["editable"] != false, "{name}: must not be uneditable");
        assert!(d["id"].is_null(), "{name}: no instance-specific id");

        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(
            (&ds["type"], &ds["query"]),
            (&json!("datasource"), &json!("prometheus"))
        );
        let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{name}: variable {}",
                v["name"]
            );
            assert_eq!(
                v["refresh"], 2,
                "{name}: variable {} must reload on time change",
                v["name"]
            );
        }

        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let t = p["title"].as_str().unwrap_or_default();
            let at = format!("{name} / {t}");
            assert!(!t.is_empty(), "{name}: a panel without a title");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{at}: duplicate id"
            );
            if p["type"] == "row" {
                continue;
            }
            assert!(
                !p["description"].as_str().unwrap_or_default().is_empty(),
                "{at}: description"
            );
            assert!(
                !p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{at}: unit"
            );
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{at}: panel datasource"
            );
            let gp = &p["gridPos"];
            let (x, w) = (
                gp["x"].as_u64().unwrap_or(99),
                gp["w"].as_u64().unwrap_or(99),
            );
            assert!(
                x + w <= 24 && gp["h"].as_u64().is_some(),
                "{at}: gridPos {gp}"
            );
            let targets = p["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{at}: no targets"));
            let mut refids = BTreeSet::new();
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{at}: target datasource"
                );
                assert!(
                    refids.insert(t["refId"].to_string()),
                    "{at}: duplicate refId"
                );
                let expr = t["expr"].as_str().unwrap_or_default();
                check_expr(&at, expr, t, p, &var_names);
            }
        }
    }
}

fn check_expr(at: &str, expr: &str, target: &Value, panel: &Value, vars: &BTreeSet<&str>) {
    let instant = target["instant"] == true || panel["interval"].is_string();
    // Ranges: $__rate_interval on graphs; a fixed window only where the panel shows "over the
    // last X" (an instant value, or a graph with a fixed minimum interval such as one day).
    for (i, _) in expr.match_indices('[') {
        let range = &expr[i + 1..expr[i..].find(']').map_or(expr.len(), |e| i + e)];
        assert!(
            range == "$__rate_interval" || range == "$__range" || instant,
            "{at}: range [{range}] in a graph should be $__rate_interval: {expr}"
        );
    }
    // Counters only inside rate()/increase().
    for (i, _) in expr.match_indices("_total") {
        let start = expr[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |s| s + 1);
        let before = expr[..start].trim_end();
        assert!(
            before.ends_with("rate(") || before.ends_with("increase("),
            "{at}: counter {} outside rate()/increase(): {expr}",
            &expr[start..i + 6]
        );
    }
    // Each selector of a slawatch series narrows to the chosen job(s).
    if vars.contains("job") {
        for (i, _) in expr.match_indices('{') {
            let end = expr[i..].find('}').map_or(expr.len(), |e| i + e);
            assert!(
                expr[i..end].contains("job=~\"$job\""),
                "{at}: selector without job=~\"$job\": {expr}"
            );
        }
    }
}

/// Metric names used in `text`: identifiers followed by `{`, `[` or a boundary that are not
/// PromQL keywords, functions, label names or strings.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_string = false;
    let mut in_braces = 0;
    let mut word = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if !word.is_empty() && in_braces == 0 {
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let is_call = next == Some(&'(');
                let is_metric = (word.starts_with("slawatch_")
                    || word.starts_with("process_")
                    || word.contains(':')
                    || word == "up")
                    && !word.ends_with(':')
                    && !is_call;
                if is_metric {
                    out.insert(word.clone());
                }
            }
            word.clear();
            if c == '{' {
                in_braces += 1;
            } else if c == '}' {
                in_braces -= 1;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn live_metrics_are_clean_and_cover_every_name_used() {
    let promtool = promtool();
    let daemon = Slawatch::start(Options::default());
    let (code, exposition) = daemon.get("/metrics");
    assert_eq!(code, 200, "{exposition}");

    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool check metrics");
    {
        use std::io::Write;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin
            .write_all(exposition.as_bytes())
            .expect("write exposition");
    }
    let out = check.wait_with_output().expect("promtool check metrics");
    assert!(
        out.status.success(),
        "promtool check metrics found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Series names in the exposition (histograms' _bucket/_sum/_count included).
    let exposed: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for metric in [
        "slawatch_inquiries_received_total",
        "slawatch_first_response_seconds_count",
        "slawatch_deadlines_total",
        "slawatch_open_inquiries",
    ] {
        for channel in ["email", "phone"] {
            for language in ["en", "es", "ar"] {
                let needle = format!("channel=\"{channel}\",language=\"{language}\"");
                assert!(
                    exposition
                        .lines()
                        .any(|l| l.starts_with(metric) && l.contains(&needle)),
                    "{metric} has no {channel} × {language} series at start-up"
                );
            }
        }
    }
    for name in [
        "slawatch_inquiries_excluded_total",
        "slawatch_first_response_seconds_bucket",
        "slawatch_oldest_open_inquiry_age_seconds",
        "slawatch_next_deadline_timestamp_seconds",
        "slawatch_alerts_total",
        "slawatch_notifier_up",
        "slawatch_alert_delivery_latency_seconds_bucket",
        "slawatch_source_up",
        "slawatch_source_last_success_timestamp_seconds",
        "slawatch_source_errors_total",
        "slawatch_detection_latency_seconds_bucket",
        "slawatch_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(exposed.contains(name), "{name} missing from /metrics");
    }
    assert!(
        exposition.contains(
            "slawatch_first_response_seconds_bucket{channel=\"email\",language=\"ar\",le=\"900\"}"
        ),
        "the 900 s bucket must be exact"
    );

    let rules = std::fs::read_to_string(root().join(RULES)).expect("rules");
    let recorded: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(|n| n.trim_matches('"').to_string())
        .collect();
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for n in metric_names(&rules) {
        used.insert(n, "the rules".into());
    }
    for (dash, title, _, expr) in targets() {
        for n in metric_names(&expr) {
            used.insert(n, format!("{dash} / {title}"));
        }
    }
    for name in DASHBOARDS {
        for sel in variable_selectors(&dashboard(name)) {
            for n in metric_names(&sel) {
                used.insert(n, format!("{name} variables"));
            }
        }
    }
    assert!(
        used.len() > 20,
        "name extraction found too little: {used:?}"
    );
    for (name, where_) in &used {
        let known = exposed.contains(name) || recorded.contains(name) || name == "up";
        assert!(
            known,
            "{where_} uses {name}, which is neither in /metrics nor recorded"
        );
    }
}

#[test]
fn metric_name_extraction() {
    let names = metric_names(
        "sum by (job) (rate(slawatch_deadlines_total{outcome=\"met\", a=\"x_total\"}[5m])) \
         / on () slo:sli_error:ratio_rate5m and up == 0 or histogram_quantile(0.5, x_bucket)",
    );
    let expected: BTreeSet<String> = [
        "slawatch_deadlines_total",
        "slo:sli_error:ratio_rate5m",
        "up",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn provisioning_points_at_the_dashboards() {
    let ds =
        std::fs::read_to_string(root().join("dashboards/provisioning/datasources/slawatch.yaml"))
            .expect("datasource provisioning");
    assert!(ds.contains("type: prometheus") && ds.contains("apiVersion: 1"));
    let dash =
        std::fs::read_to_string(root().join("dashboards/provisioning/dashboards/slawatch.yaml"))
            .expect("dashboard provisioning");
    assert!(dash.contains("folder: slawatch") && dash.contains("type: file"));

    // The example Prometheus configuration is valid once its rule file path exists.
    let dir = tempfile::tempdir().expect("temp dir");
    let example =
        std::fs::read_to_string(root().join("dashboards/prometheus/prometheus.example.yml"))
            .expect("example config")
            .replace(
                "/etc/prometheus/slawatch.rules.yml",
                &root().join(RULES).display().to_string(),
            );
    let path: &Path = &dir.path().join("prometheus.yml");
    std::fs::write(path, example).expect("write");
    let (ok, out) = run(Command::new(promtool()).args(["check", "config"]).arg(path));
    assert!(ok, "example Prometheus configuration:\n{out}");
}

/// The shipped Alertmanager example is valid and routes slawatch's always-firing watchdog to the
/// dead-man's switch, everything else (its own blindness included) to the on-call receiver.
#[test]
fn the_alertmanager_example_routes_the_watchdog_to_a_deadmans_switch() {
    let amtool = require("amtool", "prometheus-alertmanager");
    let config = "dashboards/alertmanager/alertmanager.example.yml";
    let (ok, out) = run(Command::new(&amtool)
        .args(["check-config", config])
        .current_dir(root()));
    assert!(ok, "amtool check-config failed:\n{out}");
    for (alertname, receiver) in [
        ("SlawatchWatchdog", "deadmans-switch"),
        ("SlawatchSourceSilent", "oncall"),
        ("SlawatchLedgerNotWritable", "oncall"),
        ("SlawatchNoActiveReplica", "oncall"),
        ("SlaBreach", "oncall"),
    ] {
        let (ok, out) = run(Command::new(&amtool)
            .args([
                "config",
                "routes",
                "test",
                &format!("--config.file={config}"),
                &format!("alertname={alertname}"),
            ])
            .current_dir(root()));
        assert!(ok, "{out}");
        let routed: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Warning:"))
            .collect();
        assert_eq!(routed, [receiver], "{alertname}: {out}");
    }
}
