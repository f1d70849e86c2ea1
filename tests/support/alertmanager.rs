//! A real Alertmanager (Debian `prometheus-alertmanager`) on a free loopback port, no gossip,
//! routing every alert to a webhook receiver URL with `send_resolved`, group wait 1 s. A missing
//! binary is a loud failure. Killed on drop.

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
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: sink\n  group_by: [alertname, channel]\n  group_wait: 1s\n  \
                 group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: sink\n    \
                 webhook_configs:\n      - url: {receiver_url}\n        send_resolved: true\n"
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
