//! Signatures checked by someone else: volley's emitter delivers to a receiver that
//! verifies every request with the reference `standardwebhooks` Python package
//! (`tests/interop/standardwebhooks_receiver.py`, run by the venv that
//! `scripts/setup-python.sh` makes at `target/venv`) and fails the first two attempts of
//! each message. Without the venv the test prints why and passes, unless
//! `VOLLEY_REQUIRE_INTEROP=1` (scripts/test.sh sets it), which makes it fail.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use volley::webhook::{BreakerConfig, Emitter, Endpoint, MemoryDeadLetters, RetrySchedule, Secret};

const STEP: Duration = Duration::from_secs(20);

fn python() -> Option<PathBuf> {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
    let ready = py.exists()
        && Command::new(&py)
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Some(py);
    }
    if std::env::var_os("VOLLEY_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("VOLLEY_REQUIRE_INTEROP=1 but target/venv/bin/python with standardwebhooks is missing: run scripts/setup-python.sh");
    }
    println!("skipping standardwebhooks interop: run scripts/setup-python.sh");
    None
}

#[test]
fn standardwebhooks_package_verifies_real_deliveries_retried_with_one_id() {
    let Some(py) = python() else { return };
    let old = Secret::generate();
    let new = Secret::generate();
    let mut child = Command::new(py)
        .arg("tests/interop/standardwebhooks_receiver.py")
        .args([
            "--secret",
            &new.to_whsec(),
            "--fail-first",
            "2",
            "--timeout",
            "60",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python receiver");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(STEP).expect("receiver did not start")).unwrap();
    assert_eq!(first["event"], "listening");
    let url = format!("http://127.0.0.1:{}/webhook", first["port"]);

    // Signed with the old and the new secret (a rotation); the receiver has only the new.
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(url, old).also_sign_with(new))
        .retry_schedule(RetrySchedule::parse("0s,20ms,20ms,20ms").unwrap())
        .breaker(BreakerConfig {
            failure_threshold: 1000,
            cool_down: Duration::from_millis(1),
        })
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..12 {
        let event_type = if n % 2 == 0 {
            "invoice.paid"
        } else {
            "user.deleted"
        };
        let data = serde_json::json!({"n": n, "text": "ünïcødé \"quoted\"\n", "list": [1.5, null]});
        ids.push(emitter.emit(event_type, &data).unwrap().to_string());
    }
    assert!(emitter.flush(STEP), "{:?}", emitter.stats());
    assert!(dead.is_empty(), "{:?}", dead.snapshot());
    drop(child.stdin.take()); // closing stdin asks for the summary
    let summary: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(STEP).expect("no summary")).unwrap();
    assert!(child.wait().unwrap().success());

    assert_eq!(
        summary["rejected"],
        serde_json::json!([]),
        "standardwebhooks refused some"
    );
    assert_eq!(summary["verified"], 36);
    let delivered: Vec<String> = serde_json::from_value(summary["delivered"].clone()).unwrap();
    assert_eq!(delivered, ids, "each event once, in emit order");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(summary["attempts"][id], 3, "three attempts of {id}, one id");
        let expected = if n % 2 == 0 {
            "invoice.paid"
        } else {
            "user.deleted"
        };
        assert_eq!(summary["types"][id], expected);
    }
    let s = &emitter.stats().endpoints[0];
    assert_eq!((s.delivered, s.attempts, s.retried), (12, 36, 24));
}
