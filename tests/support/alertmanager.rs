//! A real Alertmanager (Debian `prometheus-alertmanager`) on a free loopback port, no gossip,
//! routing every alert to a webhook receiver URL with `send_resolved`, group wait 1 s — except
//! slawatch's always-firing `SlawatchWatchdog`, which goes (as the shipped
//! `dashboards/alertmanager/watchdog-route.yml` does) to a dead-man's-switch receiver of its
//! own: nowhere, or a second URL. A missing binary is a loud failure. Killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "/usr/bin/prometheus-alertmanager";

pub struct Alertmanager {
    _tmp: tempfile::TempDir,
    pub url: String,
    child: Child,
}

impl Alertmanager {
    pub fn start(receiver_url: &str) -> Alertmanager {
        Alertmanager::start_with_watchdog(receiver_url, None)
    }

    /// [`Alertmanager::start`], the watchdog re-sent every second to `watchdog_url`.
    pub fn start_with_watchdog(receiver_url: &str, watchdog_url: Option<&str>) -> Alertmanager {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is required by the alert tests (apt-get install prometheus-alertmanager)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = tmp.path().join("am.yml");
        let deadman = match watchdog_url {
            Some(url) => format!(
                "  - name: deadman\n    webhook_configs:\n      - url: {url}\n        send_resolved: true\n"
            ),
            None => "  - name: deadman\n".to_string(),
        };
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: sink\n  group_by: [alertname, channel]\n  group_wait: 1s\n  \
                 group_interval: 2s\n  repeat_interval: 1h\n  routes:\n    - matchers: \
                 ['alertname=\"SlawatchWatchdog\"']\n      receiver: deadman\n      \
                 group_wait: 0s\n      group_interval: 1s\n      repeat_interval: 1s\n\
                 receivers:\n  - name: sink\n    \
                 webhook_configs:\n      - url: {receiver_url}\n        send_resolved: true\n\
                 {deadman}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(tmp.path().join("am.log")).unwrap();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("alertmanager starts");
        let am = Alertmanager {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _tmp: tmp,
        };
        let limit = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < limit,
                "Alertmanager did not listen: {}",
                am.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("am.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
