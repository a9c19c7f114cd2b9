//! End to end against the real Etsy statsd daemon (npm package `statsd`, installed under
//! target/statsd by scripts/setup-statsd.sh): counters, sampled counters, gauges with
//! deltas and negative values, timers, sets and tags arrive with the right values, the
//! `volley statsd` CLI is understood too, and `bad_lines_seen` stays 0.
//!
//! The daemon runs with the console backend and `dumpMessages`; values are read from its
//! flush output (which has sets) and its management interface (`stats`, `counters`).
//! Without node or the package the test skips with a reason, or fails when
//! `VOLLEY_REQUIRE_INTEROP=1` (scripts/test.sh sets it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use volley::statsd::{Client, Metric};

fn daemon_script() -> Option<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/statsd/node_modules/statsd/stats.js");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (node && script.exists()).then_some(script)
}

fn free_port() -> u16 {
    // A UDP and a TCP port: take one the kernel hands out for UDP and check TCP too.
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Daemon {
    child: Child,
    lines: Receiver<String>,
    port: u16,
    mgmt_port: u16,
    _dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

const FLUSH_MS: u64 = 2000;

impl Daemon {
    fn start(script: PathBuf) -> Daemon {
        let port = free_port();
        let mgmt_port = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        let dir = std::env::temp_dir().join(format!("volley-statsd-etsy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.js");
        std::fs::write(
            &config,
            format!(
                "{{ address: '127.0.0.1', port: {port}, mgmt_address: '127.0.0.1', \
                 mgmt_port: {mgmt_port}, backends: ['./backends/console'], dumpMessages: true, \
                 flushInterval: {FLUSH_MS}, console: {{ prettyprint: false }} }}"
            ),
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(&script)
            .arg(&config)
            .current_dir(script.parent().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {line}"));
            }
        });
        let daemon = Daemon {
            child,
            lines,
            port,
            mgmt_port,
            _dir: dir,
        };
        // Ready when the management interface answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while daemon.mgmt("health").is_none() {
            assert!(
                Instant::now() < deadline,
                "statsd did not start: {:?}",
                daemon.drain()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// One management command's answer.
    fn mgmt(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.mgmt_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{command}\n").as_bytes()).ok()?;
        let mut answer = String::new();
        let mut buf = [0u8; 4096];
        while !(answer.contains("END") || answer.starts_with("health:")) {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Some(answer)
    }

    /// Waits for the next "Flushing stats" line; returns the lines logged before it (the
    /// `dumpMessages` echo) and the flush output after it.
    fn next_flush(&self) -> (Vec<String>, String) {
        let deadline = Instant::now() + Duration::from_millis(3 * FLUSH_MS + 5000);
        let mut seen = Vec::new();
        let mut block: Option<String> = None;
        while Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            match &mut block {
                None if line.contains("Flushing stats at") => block = Some(String::new()),
                None => seen.push(line),
                Some(b) => {
                    b.push_str(&line);
                    b.push('\n');
                    if line == "}" {
                        return (seen, block.unwrap());
                    }
                }
            }
        }
        panic!("no flush output within the deadline; saw {seen:?}, partial {block:?}");
    }
}

/// The text after `'key': ` in util.inspect output, up to the end of its value.
fn value_of<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("'{key}': ");
    let start = block.find(&needle)? + needle.len();
    let rest = &block[start..];
    let end = if rest.starts_with('[') {
        rest.find(']')? + 1
    } else {
        rest.find([',', '\n', '}'])?
    };
    Some(rest[..end].trim())
}

fn number_of(block: &str, key: &str) -> f64 {
    value_of(block, key)
        .unwrap_or_else(|| panic!("{key} missing from the flush:\n{block}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e}\n{block}"))
}

#[test]
fn etsy_statsd_reads_every_type_with_the_right_values() {
    let Some(script) = daemon_script() else {
        let reason = "node or target/statsd (run scripts/setup-statsd.sh) is missing";
        if std::env::var("VOLLEY_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("VOLLEY_REQUIRE_INTEROP=1 but {reason}");
        }
        eprintln!("skipping the Etsy statsd end-to-end test: {reason}");
        return;
    };
    let daemon = Daemon::start(script);
    let addr = format!("127.0.0.1:{}", daemon.port);
    let client = Client::builder(&addr).prefix("e2e").build().unwrap();

    // Send right after a flush, so the whole batch lands in one flush window.
    let _ = daemon.next_flush();
    let mut lines_sent = 0u64;
    for _ in 0..10 {
        client.incr("hits").unwrap();
    }
    client.count("hits", 5).unwrap();
    client.count("hits", -2).unwrap();
    let before = client.stats().accepted;
    for _ in 0..2000 {
        client
            .send(Metric::count("sampled", 1).sample_rate(0.25))
            .unwrap();
    }
    let sampled_sent = client.stats().accepted - before;
    client.gauge("temp", 20.0).unwrap();
    client.gauge_delta("temp", 5.0).unwrap();
    client.gauge_delta("temp", -2.5).unwrap();
    client.gauge("below_zero", 10.0).unwrap();
    client.gauge("below_zero", -7.0).unwrap(); // 0 first, or statsd would read -7 as a delta
    client.timing_ms("latency", 10.0).unwrap();
    client.timing_ms("latency", 20.0).unwrap();
    client
        .timing("latency", Duration::from_micros(30_500))
        .unwrap();
    for member in ["alice", "bob", "alice", "carol", "bob"] {
        client.set("users", member).unwrap();
    }
    client
        .send(Metric::count("tagged", 4).tags(&[("route", "login")]))
        .unwrap();
    client.flush().unwrap();
    let s = client.stats();
    lines_sent += s.sent_lines;
    assert_eq!((s.dropped, s.invalid, s.send_errors), (0, 0, 0));

    // The CLI, as a user would run it.
    let cli = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args([
            "statsd",
            &addr,
            "cli.raw:7|c",
            "cli.rawg:-3|g",
            "--count",
            "cli.flag",
            "2",
            "--gauge",
            "cli.g",
            "-1.5",
        ])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "volley statsd: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    // 2 raw lines, 1 counter, 2 lines for the negative gauge.
    lines_sent += 5;
    let bad = Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["statsd", &addr, "cli.bad:1|d"])
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "a `d` line must be refused for Etsy before sending"
    );

    let (dumped, block) = daemon.next_flush();
    eprintln!("flush output:\n{block}");
    let echoed = |l: &str| dumped.iter().any(|d| d.ends_with(&format!(": {l}")));
    for line in [
        "e2e.below_zero:0|g",
        "e2e.below_zero:-7|g",
        "e2e.temp:+5|g",
        "e2e.latency:30.5|ms",
        "e2e.sampled:1|c|@0.25",
    ] {
        assert!(echoed(line), "dumpMessages did not echo {line:?}");
    }
    assert_eq!(number_of(&block, "e2e.hits"), 13.0);
    assert_eq!(number_of(&block, "e2e.sampled"), sampled_sent as f64 * 4.0);
    assert!(
        sampled_sent > 300 && sampled_sent < 700,
        "{sampled_sent} of 2000 at 0.25"
    );
    assert_eq!(number_of(&block, "e2e.temp"), 22.5);
    assert_eq!(number_of(&block, "e2e.below_zero"), -7.0);
    assert_eq!(value_of(&block, "e2e.latency"), Some("[ 10, 20, 30.5 ]"));
    let users = value_of(&block, "e2e.users").unwrap();
    for member in ["'alice'", "'bob'", "'carol'"] {
        assert_eq!(users.matches(member).count(), 1, "{users}");
    }
    assert_eq!(users.matches('\'').count(), 6, "three members: {users}");
    assert_eq!(number_of(&block, "e2e.tagged;route=login"), 4.0);
    assert_eq!(number_of(&block, "cli.raw"), 7.0);
    assert_eq!(number_of(&block, "cli.rawg"), -3.0);
    assert_eq!(number_of(&block, "cli.flag"), 2.0);
    assert_eq!(number_of(&block, "cli.g"), -1.5);
    assert_eq!(number_of(&block, "statsd.bad_lines_seen"), 0.0);
    assert_eq!(
        number_of(&block, "statsd.metrics_received"),
        lines_sent as f64
    );

    // dumpMessages echoed each line; the management interface agrees there were no bad
    // lines over the daemon's whole life.
    let stats = daemon.mgmt("stats").expect("management interface");
    assert!(stats.contains("messages.bad_lines_seen: 0"), "{stats}");
    drop(client);
}
