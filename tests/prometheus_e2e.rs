//! End to end through the real alerting path: a private Dovecot feeds a real slawatch (IMAP
//! source, 20-second promise), a real Prometheus (Debian package) scrapes it with the shipped
//! rules, and a real Alertmanager receives what Prometheus fires.
//!
//! An inquiry delivered over LMTP goes unanswered; once its deadline passes, `SlaBreached` must
//! be firing in Prometheus (query API) and be present in Alertmanager (API v2). Then slawatch is
//! killed and `SlawatchDown` must reach Alertmanager: the desk is paged even when the monitor
//! itself dies. Missing prometheus, Alertmanager or Dovecot fail the test with what to install.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::dovecot::{Dovecot, PASSWORD, USER};
use support::grafana;
use support::slawatchd::{
    Options, Running, Slawatch, encode, free_port, http_get, message, require, spawn, wait_for,
};

/// Covers Prometheus start-up, the 30 s evaluation interval of the alert group and the
/// notification path, on a busy machine.
const WAIT: Duration = Duration::from_secs(150);

struct Monitoring {
    _dir: tempfile::TempDir,
    _prometheus: Running,
    _alertmanager: Running,
    prometheus_port: u16,
    alertmanager_port: u16,
    logs: [PathBuf; 2],
}

impl Drop for Monitoring {
    /// A failed test shows what Prometheus and Alertmanager said (their temp dir goes away).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Prometheus and Alertmanager logs:\n{}", self.logs());
        }
    }
}

impl Monitoring {
    fn start(slawatch_port: u16) -> Monitoring {
        let prometheus = require("prometheus", "prometheus");
        let alertmanager = require("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        let (prometheus_port, alertmanager_port) = (free_port(), free_port());
        let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("dashboards/prometheus/slawatch.rules.yml");
        let prom_yml = dir.path().join("prometheus.yml");
        std::fs::write(
            &prom_yml,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"{rules}\"]\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{alertmanager_port}\"]\n\
                 scrape_configs:\n  - job_name: slawatch\n    static_configs:\n      - targets: [\"127.0.0.1:{slawatch_port}\"]\n",
                rules = rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let am_yml = dir.path().join("alertmanager.yml");
        // The webhook receiver points at a closed port: the test reads Alertmanager's own API.
        std::fs::write(
            &am_yml,
            "route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 5s\n\
             receivers:\n  - name: oncall\n    webhook_configs:\n      - url: http://127.0.0.1:9/hook\n        send_resolved: true\n",
        )
        .expect("write alertmanager.yml");
        let logs = [
            dir.path().join("prometheus.log"),
            dir.path().join("alertmanager.log"),
        ];
        let am = spawn(
            &alertmanager,
            &[
                format!("--config.file={}", am_yml.display()),
                format!("--storage.path={}", dir.path().join("am").display()),
                format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
                // Empty: no gossip listener on 0.0.0.0:9094.
                "--cluster.listen-address=".into(),
            ],
            &logs[1],
            &[],
        );
        let prom = spawn(
            &prometheus,
            &[
                format!("--config.file={}", prom_yml.display()),
                format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
            ],
            &logs[0],
            &[],
        );
        let m = Monitoring {
            _dir: dir,
            _prometheus: prom,
            _alertmanager: am,
            prometheus_port,
            alertmanager_port,
            logs,
        };
        wait_for(WAIT, "Prometheus and Alertmanager ready", || {
            let p = http_get(m.prometheus_port, "/-/ready")?;
            let a = http_get(m.alertmanager_port, "/-/ready")?;
            (p.0 == 200 && a.0 == 200).then_some(())
        });
        m
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let (code, body) = http_get(
            self.prometheus_port,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .unwrap_or((0, String::new()));
        assert!(code == 200 || code == 0, "query {promql}: {code} {body}");
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// (status, error, result) of an instant query, whatever the outcome.
    fn query_full(&self, promql: &str) -> (String, String, Vec<Value>) {
        let (_, body) = http_get(
            self.prometheus_port,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .unwrap_or_else(|| panic!("Prometheus did not answer the query {promql}"));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        (
            v["status"].as_str().unwrap_or_default().to_string(),
            v["error"].as_str().unwrap_or_default().to_string(),
            v["data"]["result"].as_array().cloned().unwrap_or_default(),
        )
    }

    /// Alerts Alertmanager holds with this alertname.
    fn alertmanager_alerts(&self, alertname: &str) -> Vec<Value> {
        let filter = encode(&format!("alertname=\"{alertname}\""));
        http_get(
            self.alertmanager_port,
            &format!("/api/v2/alerts?filter={filter}"),
        )
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    }
}

#[test]
fn breach_fires_in_prometheus_and_reaches_alertmanager_and_so_does_slawatch_down() {
    let dovecot = Dovecot::start();
    let password_env = ("SLAWATCH__SOURCES__SUPPORT__PASSWORD", PASSWORD);
    let sources = format!(
        "[sources.support]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         security = \"plain\"\nusername = \"{USER}\"\ninbox_folders = [\"INBOX\"]\n\
         sent_folders = [\"Sent\"]\ntimeout = \"10s\"\n",
        port = dovecot.imap_port
    );
    let mut daemon = Slawatch::start(Options {
        policy: "target = \"20s\"\nwarn = [\"10s\"]\nrenotify_every = \"15m\"",
        sources: &sources,
        env: &[password_env],
    });
    let m = Monitoring::start(daemon.port);

    wait_for(
        WAIT,
        "Prometheus scrapes slawatch with its IMAP source up",
        || {
            let up = m.query("up{job=\"slawatch\"} == 1");
            let source = m.query("slawatch_source_up{source=\"support\"} == 1");
            (!up.is_empty() && !source.is_empty()).then_some(())
        },
    );
    let groups = http_get(m.prometheus_port, "/api/v1/rules")
        .map(|(_, b)| b)
        .unwrap_or_default();
    for group in [
        "slawatch-compliance",
        "slawatch-coverage",
        "slawatch-alerts",
    ] {
        assert!(
            groups.contains(group),
            "rule group {group} not loaded:\n{groups}"
        );
    }
    assert!(
        m.alertmanager_alerts("SlaBreached").is_empty(),
        "nothing is breached yet"
    );

    dovecot.lmtp_deliver(
        message(
            "e2e-breach",
            "Nadia <nadia@customer.example>",
            "My order never arrived",
            "en",
            "Hello, my order has not arrived yet. Could you help me please?",
        )
        .as_bytes(),
    );
    wait_for(
        WAIT,
        "slawatch counts the unanswered inquiry as breached",
        || {
            let (_, body) = daemon.get("/metrics");
            body.lines()
            .any(|l| {
                l.starts_with("slawatch_open_inquiries{channel=\"email\",language=\"en\",state=\"breached\"} 1")
            })
            .then_some(())
        },
    );

    let firing = wait_for(WAIT, "SlaBreached firing in Prometheus", || {
        let r = m.query("ALERTS{alertname=\"SlaBreached\",alertstate=\"firing\"}");
        (!r.is_empty()).then_some(r)
    });
    let labels = &firing[0]["metric"];
    assert_eq!(
        (&labels["channel"], &labels["language"], &labels["severity"]),
        (
            &Value::from("email"),
            &Value::from("en"),
            &Value::from("page")
        ),
        "{firing:?}"
    );
    let in_am = wait_for(WAIT, "SlaBreached in Alertmanager", || {
        let a = m.alertmanager_alerts("SlaBreached");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(in_am[0]["labels"]["job"], "slawatch", "{in_am:?}");
    assert_eq!(in_am[0]["status"]["state"], "active", "{in_am:?}");
    assert!(
        in_am[0]["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("en email")),
        "{in_am:?}"
    );
    // The recording rules see the miss too.
    wait_for(WAIT, "compliance ratio 5m recorded as 0", || {
        let r = m.query("channel:slawatch_compliance:ratio5m{channel=\"email\"} == 0");
        (!r.is_empty()).then_some(())
    });

    // Every dashboard query runs on the real Prometheus (variables = all values), and the
    // wallboard's tiles show the breach.
    let mut empty = Vec::new();
    for (dash, title, refid, expr) in grafana::targets() {
        let promql = grafana::substitute(&expr, ".+");
        let (status, error, result) = m.query_full(&promql);
        assert_eq!(
            status, "success",
            "{dash} / {title} / {refid}: {error}\n{promql}"
        );
        if result.is_empty() {
            empty.push(format!("{dash} / {title} / {refid}"));
        }
    }
    for must_have_data in [
        "wallboard / Open, breached / A",
        "wallboard / Oldest waiting / A",
        "wallboard / Inquiries last hour / A",
        "health / slawatch up / A",
        "health / Sources up / A",
    ] {
        assert!(
            !empty.iter().any(|e| e == must_have_data),
            "{must_have_data} returned no data"
        );
    }
    let breached = m.query_full(&grafana::substitute(
        "sum(slawatch_open_inquiries{job=~\"$job\", channel=~\"$channel\", language=~\"$language\", state=\"breached\"})",
        ".+",
    ));
    assert_eq!(breached.2[0]["value"][1], "1", "{breached:?}");

    // The monitor dies: Prometheus itself must page.
    daemon.stop();
    let down = wait_for(
        WAIT,
        "SlawatchDown in Alertmanager after slawatch died",
        || {
            let a = m.alertmanager_alerts("SlawatchDown");
            (!a.is_empty()).then_some(a)
        },
    );
    assert_eq!(down[0]["labels"]["severity"], "page", "{down:?}");
}
