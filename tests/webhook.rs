//! The webhook emitter against a local HTTP receiver (`tests/support/webhook_receiver.rs`)
//! that fails first attempts in every way a receiver can (500s, timeouts, connection
//! resets, slow answers, 410, 3xx, 429, abort-message), and the `volley webhook` CLI and
//! bridge. Every wait is bounded; schedules are milliseconds long.

#[path = "support/webhook_receiver.rs"]
mod receiver;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use receiver::{Receiver, Reply, Request};
use volley::ring::OverflowPolicy;
use volley::webhook::{
    read_dead_letters, verify, BreakerConfig, BreakerState, DeadReason, EmitError, Emitter,
    Endpoint, JsonLinesDeadLetters, MemoryDeadLetters, RetrySchedule, Secret,
};

const WAIT: Duration = Duration::from_secs(20);

fn schedule(text: &str) -> RetrySchedule {
    RetrySchedule::parse(text)
        .unwrap()
        .with_jitter(0.0)
        .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every request carries a valid signature by one of `secrets`.
#[track_caller]
fn assert_signed(requests: &[(Request, u16)], secrets: &[Secret]) {
    for (r, _) in requests {
        verify(
            secrets,
            r.id(),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            r.body.as_bytes(),
            unix_now(),
        )
        .unwrap_or_else(|e| panic!("request {} attempt {}: {e}", r.id(), r.attempt));
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-webhook-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn failed_first_attempts_are_retried_and_each_event_is_delivered_once_in_order() {
    // Event n's first attempt: 500, a timeout, a reset, or a slow success, by n % 4.
    let receiver = Receiver::start(|r| {
        let n: u32 = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["data"]["n"]
            .as_u64()
            .unwrap() as u32;
        if r.attempt > 1 {
            return Reply::status(200);
        }
        match n % 4 {
            0 => Reply::status(500),
            1 => Reply::delayed(500, Duration::from_millis(700)), // past the timeout
            2 => Reply::Reset,
            _ => Reply::delayed(204, Duration::from_millis(50)), // slow but in time
        }
    });
    let secret = Secret::generate();
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/hook"), secret.clone()))
        .retry_schedule(schedule("0s,20ms,20ms,20ms"))
        .timeout(Duration::from_millis(300))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    let ids: Vec<String> = (0..16)
        .map(|n| {
            emitter
                .emit("test.event", &serde_json::json!({ "n": n }))
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        emitter.flush(WAIT),
        "not delivered in time: {:?}",
        emitter.stats()
    );
    assert!(dead.is_empty(), "{:?}", dead.snapshot());

    // Delivered exactly once each, in emit order (concurrency 1).
    assert_eq!(receiver.delivered(), ids);
    let requests = receiver.requests();
    assert_signed(&requests, &[secret]);
    let mut by_id: HashMap<&str, Vec<&Request>> = HashMap::new();
    for (r, _) in &requests {
        by_id.entry(r.id()).or_default().push(r);
    }
    for (n, id) in ids.iter().enumerate() {
        let attempts = &by_id[id.as_str()];
        let expected = if n % 4 == 3 { 1 } else { 2 };
        assert_eq!(attempts.len(), expected, "event {n}");
        // Same id (the key here), same body on every attempt.
        assert!(attempts.iter().all(|r| r.body == attempts[0].body));
        let body: serde_json::Value = serde_json::from_str(&attempts[0].body).unwrap();
        assert_eq!(body["type"], "test.event");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let s = &emitter.stats().endpoints[0];
    assert_eq!(
        (s.delivered, s.retried, s.failed, s.dead_lettered),
        (16, 12, 12, 0)
    );
    assert_eq!(s.attempts, 28);
    assert!(s.latency_max >= Duration::from_millis(50));
    let report = emitter.shutdown(Duration::from_secs(1));
    assert!(report.clean && report.dead_lettered == 0);
}

#[test]
fn deliveries_reuse_one_keep_alive_connection() {
    let receiver = Receiver::ok();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()))
        .build()
        .unwrap();
    for n in 0..50 {
        emitter.emit("t", &n).unwrap();
    }
    assert!(emitter.flush(WAIT));
    assert_eq!(receiver.delivered().len(), 50);
    let connections = receiver
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(connections, 1, "50 ordered deliveries over one connection");
}

#[test]
fn concurrency_above_one_delivers_everything_once() {
    let receiver = Receiver::start(|r| {
        if r.attempt == 1 && r.id().ends_with(['0', '5']) {
            Reply::status(503)
        } else {
            Reply::delayed(200, Duration::from_millis(5))
        }
    });
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()).concurrency(4))
        .retry_schedule(schedule("0s,10ms"))
        .build()
        .unwrap();
    let ids: HashSet<String> = (0..40)
        .map(|n| emitter.emit("t", &n).unwrap().to_string())
        .collect();
    assert!(emitter.flush(WAIT));
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 40);
    assert_eq!(delivered.into_iter().collect::<HashSet<_>>(), ids);
}

#[test]
fn gone_disables_the_endpoint_and_dead_letters_its_messages_only() {
    let gone = Receiver::start(|_| Reply::status(410));
    let fine = Receiver::ok();
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(gone.url("/"), Secret::generate()))
        .endpoint(Endpoint::new(fine.url("/"), Secret::generate()))
        .retry_schedule(schedule("0s,10ms,10ms"))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    for n in 0..5 {
        emitter.emit("t", &n).unwrap();
    }
    assert!(emitter.flush(WAIT));
    assert_eq!(
        gone.request_count(),
        1,
        "a disabled endpoint is not called again"
    );
    assert_eq!(fine.delivered().len(), 5);
    let letters = dead.take();
    assert_eq!(letters.len(), 5);
    assert!(letters
        .iter()
        .all(|l| l.reason == DeadReason::EndpointDisabled
            && l.endpoint.as_deref() == Some(gone.url("/").as_str())));
    let stats = emitter.stats();
    assert!(stats.endpoints[0].disabled && !stats.endpoints[1].disabled);
    assert_eq!(stats.endpoints[0].dead_lettered, 5);
    // Later events for it go straight to the dead letters; re-enabling calls it again.
    emitter.emit("t", &5).unwrap();
    assert!(emitter.flush(WAIT));
    assert_eq!(dead.take().len(), 1);
    assert!(emitter.enable_endpoint(&gone.url("/")));
    emitter.emit("t", &6).unwrap();
    assert!(emitter.flush(WAIT));
    assert_eq!(gone.request_count(), 2);
}

#[test]
fn redirects_are_failures_and_are_not_followed() {
    let receiver = Receiver::start(|r| {
        if r.path == "/moved" {
            Reply::status(200)
        } else {
            Reply::with_header(307, "location", "/moved")
        }
    });
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/hook"), Secret::generate()))
        .retry_schedule(schedule("0s,10ms"))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    emitter.emit("t", &1).unwrap();
    assert!(emitter.flush(WAIT));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|(r, _)| r.path == "/hook"));
    let letters = dead.take();
    assert_eq!(letters[0].reason, DeadReason::Exhausted);
    assert_eq!(letters[0].last_error.as_deref(), Some("HTTP 307"));
}

#[test]
fn abort_message_stops_retrying_and_retry_after_slows_the_endpoint() {
    let receiver = Receiver::start(|r| {
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        match (body["data"].as_str().unwrap(), r.attempt) {
            ("abort", _) => Reply::with_header(400, "webhook-delivery", "abort-message"),
            ("busy", 1) => Reply::with_header(429, "retry-after", "1"),
            _ => Reply::status(200),
        }
    });
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()))
        .retry_schedule(schedule("0s,10ms,10ms,10ms"))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    let aborted = emitter.emit("t", "abort").unwrap();
    let busy = emitter.emit("t", "busy").unwrap();
    assert!(emitter.flush(WAIT));
    let letters = dead.take();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].id.as_str(), letters[0].reason),
        (aborted.as_str(), DeadReason::Aborted)
    );
    assert_eq!(letters[0].attempts, 1);
    let requests = receiver.requests();
    let busy_times: Vec<Instant> = requests
        .iter()
        .filter(|(r, _)| r.id() == busy.as_str())
        .map(|(r, _)| r.arrived)
        .collect();
    assert_eq!(busy_times.len(), 2);
    assert!(
        busy_times[1] - busy_times[0] >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {:?}",
        busy_times[1] - busy_times[0]
    );
    let s = &emitter.stats().endpoints[0];
    assert_eq!(
        (s.slowed_down, s.delivered, s.breaker),
        (1, 1, BreakerState::Closed)
    );
}

#[test]
fn breaker_opens_on_a_dead_receiver_without_holding_up_others_and_recovers() {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flaky = {
        let down = down.clone();
        Receiver::start(move |_| {
            if down.load(std::sync::atomic::Ordering::Relaxed) {
                Reply::status(500)
            } else {
                Reply::status(200)
            }
        })
    };
    let healthy = Receiver::ok();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(flaky.url("/"), Secret::generate()))
        .endpoint(Endpoint::new(healthy.url("/"), Secret::generate()))
        .retry_schedule(schedule(
            &["0s"; 1]
                .iter()
                .chain(&["5ms"; 60])
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        ))
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(200),
        })
        .workers(2)
        .build()
        .unwrap();
    let ids: Vec<String> = (0..3)
        .map(|n| emitter.emit("t", &n).unwrap().to_string())
        .collect();
    let start = Instant::now();
    // The healthy endpoint gets everything while the other is down.
    while healthy.delivered().len() < 3 {
        assert!(start.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = &emitter.stats().endpoints[0];
    assert!(s.breaker_opened >= 1, "{s:?}");
    assert_ne!(s.breaker, BreakerState::Closed);
    // 3 failures open it; then one probe per 200 ms cool-down, not one per 5 ms retry
    // (which would be over 100 attempts by now).
    let while_down = flaky.request_count();
    let probes_allowed = (start.elapsed().as_millis() / 200) as usize + 1;
    assert!(
        (3..=3 + probes_allowed).contains(&while_down),
        "{while_down} attempts in {:?} while open",
        start.elapsed()
    );
    down.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(emitter.flush(WAIT));
    assert_eq!(flaky.delivered(), ids, "recovered, in order");
    let s = &emitter.stats().endpoints[0];
    assert_eq!((s.breaker, s.delivered), (BreakerState::Closed, 3));
}

#[test]
fn dead_letters_go_to_a_json_lines_file_and_replay_with_the_same_ids() {
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let up = up.clone();
        Receiver::start(move |_| {
            if up.load(std::sync::atomic::Ordering::Relaxed) {
                Reply::status(204)
            } else {
                Reply::status(500)
            }
        })
    };
    let path = temp_path("dead.jsonl");
    let secret = Secret::generate();
    let endpoint = Endpoint::new(receiver.url("/in"), secret.clone());
    let emitter = Emitter::builder()
        .endpoint(endpoint.clone())
        .retry_schedule(schedule("0s,5ms"))
        // Eight failures in a row: keep the breaker out of this test.
        .breaker(BreakerConfig {
            failure_threshold: 100,
            cool_down: Duration::from_millis(1),
        })
        .dead_letters(JsonLinesDeadLetters::open(&path).unwrap())
        .build()
        .unwrap();
    let ids: Vec<String> = (0..4)
        .map(|n| {
            emitter
                .emit("order.created", &serde_json::json!({"n": n}))
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(emitter.flush(WAIT));
    assert!(emitter.shutdown(Duration::from_secs(1)).clean);
    let letters = read_dead_letters(&path).unwrap();
    assert_eq!(
        letters.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
        ids
    );
    assert!(letters
        .iter()
        .all(|l| l.reason == DeadReason::Exhausted && l.attempts == 2));
    let first_bodies: HashMap<String, String> = receiver
        .requests()
        .into_iter()
        .map(|(r, _)| (r.id().to_owned(), r.body))
        .collect();

    // The receiver is back: a new emitter replays the file.
    up.store(true, std::sync::atomic::Ordering::Relaxed);
    let dead_again = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(endpoint)
        .dead_letters(dead_again.clone())
        .build()
        .unwrap();
    let report = emitter.replay_file(&path).unwrap();
    assert_eq!((report.queued, report.dead_lettered), (4, 0));
    assert!(report.unknown_endpoint.is_empty());
    assert!(emitter.flush(WAIT), "{:?}", emitter.stats());
    assert_eq!(receiver.delivered(), ids, "same ids, same order");
    let requests = receiver.requests();
    assert_signed(&requests, &[secret]);
    for (r, status) in requests.iter().filter(|(_, s)| *s == 204) {
        assert_eq!(
            r.body,
            first_bodies[r.id()],
            "replayed body is byte-identical ({status})"
        );
    }
    assert!(dead_again.is_empty());
    // A letter for an endpoint this emitter does not have comes back.
    let mut stray = letters[0].clone();
    stray.endpoint = Some("http://127.0.0.1:1/elsewhere".into());
    assert_eq!(emitter.replay([stray]).unknown_endpoint.len(), 1);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_emit_is_delivered_or_dead_lettered_under_queue_overflow() {
    for policy in [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest] {
        let receiver = Receiver::ok();
        let dead = MemoryDeadLetters::new();
        let emitter = Emitter::builder()
            .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()).concurrency(8))
            .queue_capacity(1)
            .overflow_policy(policy)
            .workers(8)
            .dead_letters(dead.clone())
            .build()
            .unwrap();
        let mut ids = HashSet::new();
        let mut refused = 0;
        for n in 0..1000 {
            match emitter.emit("t", &n) {
                Ok(id) => assert!(ids.insert(id.to_string())),
                Err(EmitError::Refused { id, .. }) => {
                    refused += 1;
                    assert!(ids.insert(id.to_string()));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(emitter.flush(WAIT), "{policy:?}: {:?}", emitter.stats());
        let delivered: HashSet<String> = receiver.delivered().into_iter().collect();
        let letters = dead.take();
        let dead_ids: HashSet<String> = letters.iter().map(|l| l.id.clone()).collect();
        assert_eq!(
            delivered.len() + dead_ids.len(),
            1000,
            "{policy:?}: each id once"
        );
        assert!(delivered.is_disjoint(&dead_ids));
        assert_eq!(
            delivered.union(&dead_ids).cloned().collect::<HashSet<_>>(),
            ids
        );
        let expected_reason = match policy {
            OverflowPolicy::DropOldest => DeadReason::Evicted,
            _ => DeadReason::QueueRefused,
        };
        assert!(letters
            .iter()
            .all(|l| l.reason == expected_reason && l.endpoint.is_none()));
        let stats = emitter.stats();
        assert_eq!(stats.refused as usize, letters.len());
        if policy == OverflowPolicy::DropNewest {
            assert_eq!(refused, letters.len());
        }
        println!(
            "{policy:?}: {} delivered, {} dead-lettered",
            delivered.len(),
            letters.len()
        );
    }
}

#[test]
fn shutdown_deadline_hands_leftovers_to_the_dead_letter_sink() {
    let receiver = Receiver::start(|_| Reply::delayed(200, Duration::from_secs(3)));
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()))
        .timeout(Duration::from_secs(10))
        .dead_letters(dead.clone())
        .build()
        .unwrap();
    let ids: HashSet<String> = (0..3)
        .map(|n| emitter.emit("t", &n).unwrap().to_string())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let report = emitter.shutdown(Duration::from_millis(200));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the deadline bounds shutdown"
    );
    assert!(!report.clean);
    assert_eq!(report.dead_lettered, 3);
    let letters = dead.take();
    assert!(letters.iter().all(|l| l.reason == DeadReason::Shutdown));
    assert_eq!(
        letters.iter().map(|l| l.id.clone()).collect::<HashSet<_>>(),
        ids
    );
}

#[test]
fn rotated_secrets_send_two_signatures_each_verifiable() {
    let receiver = Receiver::ok();
    let (old, new) = (Secret::generate(), Secret::generate());
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/"), old.clone()).also_sign_with(new.clone()))
        .build()
        .unwrap();
    emitter.emit_json("t", r#"{"a": [1, 2]}"#).unwrap();
    assert!(matches!(
        emitter.emit_json("t", "{nope"),
        Err(EmitError::Data(_))
    ));
    assert!(emitter.flush(WAIT));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].0.header("webhook-signature").split(' ').count(),
        2
    );
    assert_signed(&requests, &[old]);
    assert_signed(&requests, &[new]);
    assert!(requests[0].0.body.ends_with(r#""data":{"a": [1, 2]}}"#));
}

#[test]
fn event_type_filters_route_events() {
    let cpu = Receiver::ok();
    let all = Receiver::ok();
    let emitter = Emitter::builder()
        .endpoint(
            Endpoint::new(cpu.url("/"), Secret::generate()).event_types(["cpu.*", "disk.full"]),
        )
        .endpoint(Endpoint::new(all.url("/"), Secret::generate()))
        .build()
        .unwrap();
    for t in ["cpu.load", "mem.free", "disk.full", "disk.io"] {
        emitter.emit(t, &0).unwrap();
    }
    assert!(emitter.flush(WAIT));
    assert_eq!(cpu.delivered().len(), 2);
    assert_eq!(all.delivered().len(), 4);
    assert!(Emitter::builder().build().is_err());
    for bad in ["ftp://x", "http://", "https:// spaces/", "http//x"] {
        assert!(
            Emitter::builder()
                .endpoint(Endpoint::new(bad, Secret::generate()))
                .build()
                .is_err(),
            "{bad}"
        );
    }
}

fn volley() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volley"))
}

#[test]
fn cli_emit_exits_zero_once_delivered_and_non_zero_with_the_reason() {
    let receiver = Receiver::start(|r| {
        if r.path == "/ok" && r.attempt >= 2 {
            Reply::status(200)
        } else {
            Reply::status(500)
        }
    });
    let secret = Secret::generate();
    let out = volley()
        .args([
            "webhook",
            "emit",
            &receiver.url("/ok"),
            "--secret",
            &secret.to_whsec(),
        ])
        .args([
            "--type",
            "cli.test",
            "--data",
            r#"{"x":1}"#,
            "--retry-schedule",
            "0s,50ms",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].0.id(), requests[1].0.id());
    assert_signed(&requests, std::slice::from_ref(&secret));

    let out = volley()
        .args([
            "webhook",
            "emit",
            &receiver.url("/fail"),
            "--secret",
            &secret.to_whsec(),
        ])
        .args([
            "--type",
            "cli.test",
            "--data",
            "1",
            "--retry-schedule",
            "0s,10ms",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 500") && stderr.contains("2 attempts"),
        "{stderr}"
    );

    let out = volley()
        .args(["webhook", "emit", &receiver.url("/x"), "--secret", "nope"])
        .args(["--type", "t", "--data", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("whsec_"));
}

#[test]
fn cli_emit_gives_up_at_the_deadline() {
    let receiver = Receiver::start(|_| Reply::status(503));
    let start = Instant::now();
    let out = volley()
        .args([
            "webhook",
            "emit",
            &receiver.url("/"),
            "--secret",
            &Secret::generate().to_whsec(),
        ])
        .args([
            "--type",
            "t",
            "--data",
            "{}",
            "--retry-schedule",
            "0s,10s",
            "--deadline",
            "0.5",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("deadline"), "{stderr}");
}

#[test]
fn bridge_forwards_matching_subscriber_messages_as_events() {
    use volley::socket::{Message, Publisher};
    let receiver = Receiver::ok();
    let secret = Secret::generate();
    let mut publisher = Publisher::new().unwrap();
    let endpoint = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut bridge = volley()
        .args(["bridge", "webhook", "--sub", &endpoint, "--topic", "alert."])
        .args([
            "--url",
            &receiver.url("/alerts"),
            "--secret",
            &secret.to_whsec(),
        ])
        .args(["--count", "3", "--idle-timeout", "20"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    std::thread::sleep(Duration::from_millis(100));
    publisher
        .send(Message::from_parts(["alert.cpu", r#"{"load":0.99}"#]))
        .unwrap();
    publisher
        .send(Message::from_parts(["metrics.cpu", "ignored"]))
        .unwrap();
    publisher
        .send(Message::from_parts(["alert.disk", "not json"]))
        .unwrap();
    publisher
        .send(Message::from_parts(["alert.mem", "12"]))
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = bridge.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = bridge.kill();
            panic!("bridge did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let requests = receiver.requests();
    assert_signed(&requests, &[secret]);
    let bodies: Vec<serde_json::Value> = requests
        .iter()
        .map(|(r, _)| serde_json::from_str(&r.body).unwrap())
        .collect();
    let types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["alert.cpu", "alert.disk", "alert.mem"]);
    assert_eq!(bodies[0]["data"]["load"], 0.99);
    assert_eq!(bodies[1]["data"], "not json");
    assert_eq!(bodies[2]["data"], 12);
}

#[test]
fn dropping_the_emitter_delivers_within_its_drop_deadline() {
    let receiver = Receiver::start(|_| Reply::delayed(204, Duration::from_millis(20)));
    let dead = MemoryDeadLetters::new();
    {
        let emitter = Emitter::builder()
            .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()))
            .drop_deadline(Duration::from_secs(10))
            .dead_letters(dead.clone())
            .build()
            .unwrap();
        for n in 0..5 {
            emitter.emit("t", &n).unwrap();
        }
    }
    assert_eq!(receiver.delivered().len(), 5);
    assert!(dead.is_empty());
}

/// A sink that cannot keep anything.
struct BrokenSink;

impl volley::webhook::DeadLetterSink for BrokenSink {
    fn accept(&self, _: volley::webhook::DeadLetter) -> std::io::Result<()> {
        Err(std::io::Error::other("disk full"))
    }
}

#[test]
fn a_failing_dead_letter_sink_is_counted() {
    let receiver = Receiver::start(|_| Reply::status(500));
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/"), Secret::generate()))
        .retry_schedule(schedule("0s"))
        .dead_letters(BrokenSink)
        .build()
        .unwrap();
    for n in 0..3 {
        emitter.emit("t", &n).unwrap();
    }
    assert!(emitter.flush(WAIT));
    let stats = emitter.stats();
    assert_eq!(stats.dead_letter_errors, 3);
    assert_eq!(stats.endpoints[0].dead_lettered, 3);
}

/// A sink that takes its time with each letter, as a file on a slow disk or a user
/// callback might.
#[derive(Clone, Default)]
struct SlowSink(MemoryDeadLetters);

impl volley::webhook::DeadLetterSink for SlowSink {
    fn accept(&self, letter: volley::webhook::DeadLetter) -> std::io::Result<()> {
        std::thread::sleep(Duration::from_millis(30));
        self.0.accept(letter)
    }
}

#[test]
fn flush_returns_only_once_the_sink_has_every_dead_letter() {
    // The letters are made by the router (disabled endpoint) and by a worker (410, and
    // an exhausted schedule): each is handed to the sink without the lock held, and
    // flush must still wait for it.
    let gone = Receiver::start(|_| Reply::status(410));
    let failing = Receiver::start(|_| Reply::status(500));
    let sink = SlowSink::default();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(gone.url("/"), Secret::generate()))
        .endpoint(Endpoint::new(failing.url("/"), Secret::generate()))
        .retry_schedule(schedule("0s"))
        .dead_letters(sink.clone())
        .build()
        .unwrap();
    emitter.emit("t", &0).unwrap();
    assert!(emitter.flush(WAIT));
    assert_eq!(sink.0.take().len(), 2, "410 and exhausted schedule");
    for n in 1..4 {
        emitter.emit("t", &n).unwrap();
    }
    assert!(emitter.flush(WAIT));
    assert_eq!(
        sink.0.take().len(),
        6,
        "disabled endpoint and exhausted schedule"
    );
}
