//! Wire compatibility with libzmq, through pyzmq: volley's Publisher and Subscriber (and
//! the `volley` CLI) against pyzmq's SUB and PUB/XPUB over tcp://127.0.0.1, in both
//! directions of bind and connect, with topic filtering and multipart messages; and
//! volley's Pusher and Puller against pyzmq's PULL and PUSH the same ways.
//!
//! The pyzmq side is `tests/interop/pyzmq_peer.py`, run by the venv that
//! `scripts/setup-python.sh` makes at `target/venv`; without it every test prints
//! "skipping pyzmq interop: run scripts/setup-python.sh" and passes. Every wait here is
//! bounded, and the Python peers have their own `--timeout`, so a hang fails a test.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use volley::socket::{Message, Publisher, Puller, Pusher, Subscriber};

/// The longest any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);
/// What the Python peers get as `--timeout`: longer than a step, so the Rust side reports.
const PEER_TIMEOUT: &str = "20";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's Python, or `None` (with the skip notice printed) when it is not set up.
/// With `VOLLEY_REQUIRE_INTEROP=1` (scripts/test.sh sets it) a missing venv fails instead.
fn python() -> Option<PathBuf> {
    let py = repo().join("target/venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    if std::env::var_os("VOLLEY_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!("VOLLEY_REQUIRE_INTEROP=1 but target/venv/bin/python is missing: run scripts/setup-python.sh");
    }
    println!("skipping pyzmq interop: run scripts/setup-python.sh");
    None
}

/// A child process whose stdout lines arrive on a channel and whose stderr is kept for
/// failure messages. Killed when dropped.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Closed when the child's stderr reaches end of file.
    stderr_done: Receiver<()>,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        let (done_tx, stderr_done) = mpsc::channel::<()>();
        thread::spawn(move || {
            let _done = done_tx;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        Proc {
            name: name.to_string(),
            child,
            stdin,
            lines,
            stderr,
            stderr_done,
        }
    }

    /// A pyzmq peer: `tests/interop/pyzmq_peer.py ARGS...`.
    fn pyzmq(py: &Path, args: &[&str]) -> Proc {
        let mut all = vec!["tests/interop/pyzmq_peer.py"];
        all.extend_from_slice(args);
        all.push("--timeout");
        all.push(PEER_TIMEOUT);
        Proc::spawn(&format!("pyzmq {}", args[0]), py, &all)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line; fails the test after `STEP`.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(STEP) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no output line within {STEP:?}; stderr: {}",
                self.name,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait();
                panic!(
                    "{}: stdout closed ({status}) before the expected line; stderr: {}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    /// Closes the child's standard input (ends `--repeat-until-eof`).
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: writing stdin: {e}; stderr: {}",
                    self.name,
                    self.stderr()
                )
            });
    }

    /// Waits for the child to exit; kills it and fails after `STEP`.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader catch up, so stderr() holds everything the child wrote.
                let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: did not exit within {STEP:?}; stderr: {}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a zero exit status.
    fn success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "{}: exited with {status}; stderr: {}",
            self.name,
            self.stderr()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- the JSON lines of pyzmq_peer.py (a fixed, flat format: no JSON crate needed) ----

fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"'))
}

fn event(line: &str) -> &str {
    json_field(line, "event").unwrap_or_else(|| panic!("no event in {line:?}"))
}

/// The port from a `{"event": "bound", ...}` first line.
fn bound_port(line: &str) -> u16 {
    assert_eq!(event(line), "bound", "first line of a binding peer: {line}");
    json_field(line, "port")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s:?}")))
        .collect()
}

/// The frames of a `{"event": "message", ...}` line.
fn message_frames(line: &str) -> Vec<Vec<u8>> {
    assert_eq!(event(line), "message", "expected a message: {line}");
    let start = line.find("\"frames\": [").expect("frames") + "\"frames\": [".len();
    let end = start + line[start..].find(']').expect("]");
    let inner = line[start..end].trim();
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|f| unhex(f.trim().trim_matches('"')))
        .collect()
}

/// Reads `n` message lines from a pyzmq sub, then its `done` line and exit status 0.
fn read_sub(sub: &mut Proc, n: usize) -> Vec<Vec<Vec<u8>>> {
    let got: Vec<_> = (0..n).map(|_| message_frames(&sub.line())).collect();
    let done = sub.line();
    assert_eq!(event(&done), "done", "{done}");
    assert_eq!(json_field(&done, "received"), Some(n.to_string().as_str()));
    sub.success();
    got
}

fn show(msgs: &[Vec<Vec<u8>>]) -> String {
    msgs.iter()
        .map(|m| {
            let frames: Vec<String> = m
                .iter()
                .map(|f| {
                    if f.len() > 40 {
                        format!("<{} bytes>", f.len())
                    } else {
                        String::from_utf8_lossy(f).into_owned()
                    }
                })
                .collect();
            format!("[{}]", frames.join(" | "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_same(got: &[Vec<Vec<u8>>], want: &[Vec<Vec<u8>>]) {
    assert!(
        got == want,
        "received messages differ from the expected ones\n--- got:\n{}\n--- want:\n{}",
        show(got),
        show(want)
    );
}

// ---- volley publishes, pyzmq subscribes ----

/// pyzmq subscribes to these prefixes.
const SUB_PREFIXES: [&str; 2] = ["weather.", "alert"];

/// What volley publishes: matching and non-matching topics interleaved, with an empty
/// frame, a 300-byte frame (one-byte size limit crossed) and a 70,000-byte frame (LONG
/// frame) in the first, and a non-matching message just before the last matching one, so
/// that a wrongly delivered message would show up among the first `n` a sub reads.
fn volley_messages() -> (Vec<Vec<Vec<u8>>>, Vec<bool>) {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let msgs: Vec<(bool, Vec<Vec<u8>>)> = vec![
        (
            true,
            vec![b"weather.oslo".to_vec(), Vec::new(), vec![b'x'; 300], big],
        ),
        (false, vec![b"sport.football".to_vec(), b"goal".to_vec()]),
        (true, vec![b"alert".to_vec(), b"a0".to_vec()]),
        (false, vec![b"weatherman".to_vec(), b"w".to_vec()]),
        (
            true,
            vec![b"alerts.fire".to_vec(), b"f1".to_vec(), b"f2".to_vec()],
        ),
        (false, vec![Vec::new(), b"empty topic".to_vec()]),
        (false, vec![b"aler".to_vec(), b"too short".to_vec()]),
        (
            true,
            vec![
                b"weather.bergen".to_vec(),
                b"rain".to_vec(),
                b"5mm".to_vec(),
                b"south".to_vec(),
            ],
        ),
    ];
    let matching = msgs.iter().map(|(m, _)| *m).collect();
    (msgs.into_iter().map(|(_, f)| f).collect(), matching)
}

/// Waits until the publisher's merged subscriptions hold every prefix in `prefixes`.
fn await_subscriptions(publisher: &mut Publisher, prefixes: &[&str]) {
    let deadline = Instant::now() + STEP;
    assert!(
        publisher.wait_for_subscribers(1, STEP),
        "no subscriber with a subscription within {STEP:?}"
    );
    loop {
        let subs = publisher.subscriptions();
        if prefixes
            .iter()
            .all(|p| subs.iter().any(|(s, _)| s.as_ref() == p.as_bytes()))
        {
            for (s, count) in &subs {
                assert!(
                    prefixes.iter().any(|p| p.as_bytes() == s.as_ref()),
                    "unexpected subscription {:?} (x{count})",
                    String::from_utf8_lossy(s)
                );
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscriptions {subs:?} still lack some of {prefixes:?} after {STEP:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Publishes `volley_messages()` and checks pyzmq's sub got exactly the matching ones.
fn volley_publishes_to(publisher: &mut Publisher, sub: &mut Proc) {
    await_subscriptions(publisher, &SUB_PREFIXES);
    let (msgs, matching) = volley_messages();
    for (frames, &m) in msgs.iter().zip(&matching) {
        let message = Message::new(frames.iter().map(|f| Bytes::from(f.clone())).collect());
        let queued = publisher.send(message).expect("send");
        assert_eq!(
            queued,
            usize::from(m),
            "send of topic {:?} queued to {queued} peers",
            String::from_utf8_lossy(&frames[0])
        );
    }
    assert!(
        publisher.flush(STEP),
        "publisher did not flush within {STEP:?}"
    );
    let want: Vec<_> = msgs
        .into_iter()
        .zip(matching)
        .filter_map(|(f, m)| m.then_some(f))
        .collect();
    let got = read_sub(sub, want.len());
    assert_same(&got, &want);
    assert_eq!(publisher.stats().dropped, 0, "publisher dropped messages");
}

fn pyzmq_sub_args<'a>(mode: &'a str, endpoint: &'a str, count: &'a str) -> Vec<&'a str> {
    let mut args = vec!["sub", mode, endpoint, "--count", count];
    for p in SUB_PREFIXES {
        args.extend(["--topic", p]);
    }
    args
}

#[test]
fn volley_pub_binds_pyzmq_sub_connects() {
    let Some(py) = python() else { return };
    let mut publisher = Publisher::new().expect("publisher");
    let endpoint = publisher
        .bind("tcp://127.0.0.1:0")
        .expect("bind")
        .to_string();
    assert!(
        endpoint.starts_with("tcp://127.0.0.1:") && !endpoint.ends_with(":0"),
        "{endpoint}"
    );
    let mut sub = Proc::pyzmq(&py, &pyzmq_sub_args("--connect", &endpoint, "4"));
    let first = sub.line();
    assert_eq!(event(&first), "connected", "{first}");
    volley_publishes_to(&mut publisher, &mut sub);
}

#[test]
fn pyzmq_sub_binds_volley_pub_connects() {
    let Some(py) = python() else { return };
    let mut sub = Proc::pyzmq(&py, &pyzmq_sub_args("--bind", "tcp://127.0.0.1:0", "4"));
    let port = bound_port(&sub.line());
    let mut publisher = Publisher::new().expect("publisher");
    publisher
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    volley_publishes_to(&mut publisher, &mut sub);
}

// ---- pyzmq publishes, volley subscribes ----

/// What the pyzmq pub sends each round, in order; volley subscribes to `SUB_PREFIXES`.
const PUB_TOPICS: [&str; 6] = [
    "weather.oslo",
    "sport.football",
    "alert",
    "weatherman",
    "alerts.fire",
    "aler",
];
const ROUNDS: usize = 3;
/// Payload frames per message (so 4 frames with the topic).
const PAYLOAD_FRAMES: usize = 3;

fn pyzmq_pub_args<'a>(mode: &'a str, endpoint: &'a str) -> Vec<String> {
    let mut args: Vec<String> = vec!["pub".into(), mode.into(), endpoint.into()];
    for t in PUB_TOPICS {
        args.extend(["--topic".into(), t.into()]);
    }
    args.extend([
        "--count".into(),
        ROUNDS.to_string(),
        "--multipart".into(),
        PAYLOAD_FRAMES.to_string(),
        "--expect-subscriptions".into(),
        SUB_PREFIXES.len().to_string(),
    ]);
    args
}

/// What volley should receive from the pyzmq pub: the matching topics of every round.
fn pyzmq_expected() -> Vec<Vec<Vec<u8>>> {
    let mut want = Vec::new();
    for round in 0..ROUNDS {
        for t in PUB_TOPICS {
            if !SUB_PREFIXES.iter().any(|p| t.starts_with(p)) {
                continue;
            }
            let mut frames = vec![t.as_bytes().to_vec()];
            frames.extend((0..PAYLOAD_FRAMES).map(|k| format!("{t}:{round}:{k}").into_bytes()));
            want.push(frames);
        }
    }
    want
}

/// Receives what the pyzmq pub sends and checks it, then that nothing else comes.
fn volley_receives_from(subscriber: &mut Subscriber, publisher: &mut Proc) {
    let want = pyzmq_expected();
    let mut got = Vec::new();
    while got.len() < want.len() {
        match subscriber.recv_timeout(STEP).expect("recv") {
            Some(m) => got.push(m.frames().iter().map(|f| f.to_vec()).collect::<Vec<_>>()),
            None => panic!(
                "volley received {} of {} messages within {STEP:?}:\n{}\npyzmq stderr: {}",
                got.len(),
                want.len(),
                show(&got),
                publisher.stderr()
            ),
        }
    }
    // The pub reports each subscription it saw, then "done".
    let mut subscriptions = Vec::new();
    loop {
        let line = publisher.line();
        match event(&line) {
            "subscription" => {
                assert_eq!(json_field(&line, "subscribe"), Some("true"), "{line}");
                subscriptions
                    .push(String::from_utf8(unhex(json_field(&line, "prefix").unwrap())).unwrap());
            }
            "done" => {
                let sent = ROUNDS * PUB_TOPICS.len();
                assert_eq!(
                    json_field(&line, "sent"),
                    Some(sent.to_string().as_str()),
                    "{line}"
                );
                break;
            }
            other => panic!("unexpected pyzmq pub event {other}: {line}"),
        }
    }
    subscriptions.sort();
    let mut prefixes = SUB_PREFIXES.to_vec();
    prefixes.sort();
    assert_eq!(
        subscriptions, prefixes,
        "subscriptions libzmq saw from volley"
    );
    publisher.success();
    if let Some(extra) = subscriber
        .recv_timeout(Duration::from_millis(300))
        .expect("recv")
    {
        got.push(extra.frames().iter().map(|f| f.to_vec()).collect());
    }
    assert_same(&got, &want);
    assert_eq!(subscriber.stats().dropped, 0, "subscriber dropped messages");
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn pyzmq_pub_binds_volley_sub_connects() {
    let Some(py) = python() else { return };
    let args = pyzmq_pub_args("--bind", "tcp://127.0.0.1:0");
    let mut publisher = Proc::pyzmq(&py, &as_strs(&args));
    let port = bound_port(&publisher.line());
    let mut subscriber = Subscriber::new().expect("subscriber");
    subscriber
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    for p in SUB_PREFIXES {
        subscriber.subscribe(p).expect("subscribe");
    }
    volley_receives_from(&mut subscriber, &mut publisher);
}

#[test]
fn volley_sub_binds_pyzmq_pub_connects() {
    let Some(py) = python() else { return };
    let mut subscriber = Subscriber::new().expect("subscriber");
    for p in SUB_PREFIXES {
        subscriber.subscribe(p).expect("subscribe");
    }
    let endpoint = subscriber
        .bind("tcp://127.0.0.1:0")
        .expect("bind")
        .to_string();
    let args = pyzmq_pub_args("--connect", &endpoint);
    let mut publisher = Proc::pyzmq(&py, &as_strs(&args));
    let first = publisher.line();
    assert_eq!(event(&first), "connected", "{first}");
    volley_receives_from(&mut subscriber, &mut publisher);
}

// ---- push/pull: volley pushes, pyzmq pulls (and the other way round) ----

/// What volley pushes: job `n` as `[job, n, filler]`, every seventh with a 70,000-byte
/// filler (LONG frame), the others with a short one.
fn push_jobs(n: usize) -> Vec<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let filler = if i % 7 == 0 {
                (0..70_000u32).map(|b| (b % 251) as u8).collect()
            } else {
                format!("filler {i}").into_bytes()
            };
            vec![b"job".to_vec(), i.to_string().into_bytes(), filler]
        })
        .collect()
}

fn push_all(pusher: &mut Pusher, jobs: &[Vec<Vec<u8>>]) {
    for frames in jobs {
        let m = Message::new(frames.iter().map(|f| Bytes::from(f.clone())).collect());
        assert!(
            pusher.send(m).expect("send"),
            "a connected peer refused a job"
        );
    }
    assert!(pusher.flush(STEP), "pusher did not flush");
}

fn pyzmq_pull(py: &Path, mode: &str, endpoint: &str, count: usize) -> Proc {
    Proc::pyzmq(py, &["pull", mode, endpoint, "--count", &count.to_string()])
}

#[test]
fn volley_push_binds_two_pyzmq_pulls_connect_and_share_the_jobs() {
    let Some(py) = python() else { return };
    const N: usize = 40;
    let mut pusher = Pusher::new().expect("pusher");
    let endpoint = pusher.bind("tcp://127.0.0.1:0").expect("bind").to_string();
    let mut pulls = [
        pyzmq_pull(&py, "--connect", &endpoint, N / 2),
        pyzmq_pull(&py, "--connect", &endpoint, N / 2),
    ];
    for pull in &mut pulls {
        let first = pull.line();
        assert_eq!(event(&first), "connected", "{first}");
    }
    assert!(
        pusher.wait_for_peers(2, STEP),
        "the pyzmq PULLs did not connect"
    );
    let jobs = push_jobs(N);
    push_all(&mut pusher, &jobs);
    // Round-robin over two peers that keep up: alternate jobs, each in order.
    let [a, b] = &mut pulls;
    let got = [read_sub(a, N / 2), read_sub(b, N / 2)];
    let (evens, odds): (Vec<_>, Vec<_>) = jobs
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let strip = |v: Vec<(usize, Vec<Vec<u8>>)>| v.into_iter().map(|(_, m)| m).collect::<Vec<_>>();
    let (evens, odds) = (strip(evens), strip(odds));
    if got[0].first() == evens.first() {
        assert_same(&got[0], &evens);
        assert_same(&got[1], &odds);
    } else {
        assert_same(&got[0], &odds);
        assert_same(&got[1], &evens);
    }
    let stats = pusher.stats();
    assert_eq!((stats.messages_out, stats.dropped), (N as u64, 0));
}

#[test]
fn pyzmq_pull_binds_volley_push_connects() {
    let Some(py) = python() else { return };
    const N: usize = 20;
    let mut pull = pyzmq_pull(&py, "--bind", "tcp://127.0.0.1:0", N);
    let port = bound_port(&pull.line());
    let mut pusher = Pusher::new().expect("pusher");
    pusher
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    assert!(
        pusher.wait_for_peers(1, STEP),
        "did not connect to the pyzmq PULL"
    );
    let jobs = push_jobs(N);
    push_all(&mut pusher, &jobs);
    assert_same(&read_sub(&mut pull, N), &jobs);
}

/// pyzmq PUSH sends each round one message per topic, with this many payload frames.
const PUSH_TOPICS: [&str; 2] = ["resize", "encode"];

fn pyzmq_push(py: &Path, mode: &str, endpoint: &str) -> Proc {
    let mut args = vec!["push", mode, endpoint, "--count", "5", "--multipart", "2"];
    for t in PUSH_TOPICS {
        args.extend(["--topic", t]);
    }
    Proc::pyzmq(py, &args)
}

/// Receives the pyzmq PUSH's 5 rounds (in order: one pusher to one puller) and checks
/// that nothing else comes.
fn volley_pulls_from(puller: &mut Puller, push: &mut Proc) {
    let mut want = Vec::new();
    for round in 0..5 {
        for t in PUSH_TOPICS {
            let mut frames = vec![t.as_bytes().to_vec()];
            frames.extend((0..2).map(|k| format!("{t}:{round}:{k}").into_bytes()));
            want.push(frames);
        }
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        match puller.recv_timeout(STEP).expect("recv") {
            Some(m) => got.push(m.frames().iter().map(|f| f.to_vec()).collect::<Vec<_>>()),
            None => panic!(
                "volley pulled {} of {} messages within {STEP:?}:\n{}\npyzmq stderr: {}",
                got.len(),
                want.len(),
                show(&got),
                push.stderr()
            ),
        }
    }
    let done = push.line();
    assert_eq!(event(&done), "done", "{done}");
    assert_eq!(json_field(&done, "sent"), Some("10"), "{done}");
    push.success();
    if let Some(extra) = puller
        .recv_timeout(Duration::from_millis(300))
        .expect("recv")
    {
        got.push(extra.frames().iter().map(|f| f.to_vec()).collect());
    }
    assert_same(&got, &want);
    assert_eq!(puller.stats().dropped, 0, "puller dropped messages");
}

#[test]
fn pyzmq_push_binds_volley_pull_connects() {
    let Some(py) = python() else { return };
    let mut push = pyzmq_push(&py, "--bind", "tcp://127.0.0.1:0");
    let port = bound_port(&push.line());
    let mut puller = Puller::new().expect("puller");
    puller
        .connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");
    volley_pulls_from(&mut puller, &mut push);
}

#[test]
fn volley_pull_binds_pyzmq_push_connects() {
    let Some(py) = python() else { return };
    let mut puller = Puller::new().expect("puller");
    let endpoint = puller.bind("tcp://127.0.0.1:0").expect("bind").to_string();
    let mut push = pyzmq_push(&py, "--connect", &endpoint);
    let first = push.line();
    assert_eq!(event(&first), "connected", "{first}");
    volley_pulls_from(&mut puller, &mut push);
}

// ---- the `volley` command line against pyzmq ----

fn volley_cli(args: &[&str]) -> Proc {
    Proc::spawn("volley CLI", Path::new(env!("CARGO_BIN_EXE_volley")), args)
}

#[test]
fn cli_pub_connects_to_pyzmq_sub() {
    let Some(py) = python() else { return };
    let mut sub = Proc::pyzmq(
        &py,
        &[
            "sub",
            "--bind",
            "tcp://127.0.0.1:0",
            "--topic",
            "cli.",
            "--count",
            "3",
        ],
    );
    let endpoint = format!("tcp://127.0.0.1:{}", bound_port(&sub.line()));
    // Without --count, `volley pub` sends one message per stdin line; it waits for one
    // subscriber (its default) before the first, so nothing is lost to the slow joiner.
    let mut publisher = volley_cli(&["pub", &endpoint, "--connect", "--topic", "cli.test"]);
    let lines = [
        "hello",
        "w\u{f6}rld \u{2192} utf-8",
        "third line\twith a tab",
    ];
    for l in lines {
        publisher.write_stdin(&format!("{l}\n"));
    }
    publisher.close_stdin();
    publisher.success();
    let want: Vec<Vec<Vec<u8>>> = lines
        .iter()
        .map(|l| vec![b"cli.test".to_vec(), l.as_bytes().to_vec()])
        .collect();
    assert_same(&read_sub(&mut sub, lines.len()), &want);
    assert!(
        publisher.stderr().contains("3 sent"),
        "volley pub's summary: {}",
        publisher.stderr()
    );
}

#[test]
fn cli_sub_connects_to_pyzmq_pub() {
    let Some(py) = python() else { return };
    let args = [
        "pub",
        "--bind",
        "tcp://127.0.0.1:0",
        "--topic",
        "weather.oslo",
        "--topic",
        "sport",
        "--topic",
        "weather.bergen",
        "--topic",
        "weatherman",
        "--count",
        "2",
        "--multipart",
        "2",
        "--expect-subscriptions",
        "1",
    ];
    let mut publisher = Proc::pyzmq(&py, &args);
    let endpoint = format!("tcp://127.0.0.1:{}", bound_port(&publisher.line()));
    let mut sub = volley_cli(&[
        "sub",
        &endpoint,
        "--connect",
        "--topic",
        "weather.",
        "--count",
        "4",
        "--timeout",
        "10",
    ]);
    let mut want = Vec::new();
    for round in 0..2 {
        for t in ["weather.oslo", "weather.bergen"] {
            want.push(format!("{t}\t{t}:{round}:0\t{t}:{round}:1"));
        }
    }
    let got: Vec<String> = (0..want.len()).map(|_| sub.line()).collect();
    assert_eq!(got, want, "volley sub's output");
    sub.success();
    // It printed nothing more: sport and weatherman were filtered at the publisher.
    assert!(
        sub.lines.recv().is_err(),
        "volley sub printed more than --count lines"
    );
    loop {
        let line = publisher.line();
        if event(&line) == "done" {
            assert_eq!(json_field(&line, "sent"), Some("8"), "{line}");
            break;
        }
        assert_eq!(event(&line), "subscription", "{line}");
        assert_eq!(
            json_field(&line, "prefix"),
            Some("776561746865722e"),
            "{line}"
        ); // "weather."
    }
    publisher.success();
}
