//! `volley pub` / `volley sub` with `udp://` endpoints, run as the built binary: lines
//! from stdin, generated messages with the summary counters, injected loss counted
//! exactly (best effort) and repaired (reliable).

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

fn endpoint() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let port = 40_000 + (std::process::id() % 10_000) as u16 + n;
    format!("udp://239.255.66.{}:{port}?iface=127.0.0.1", 1 + n)
}

fn volley(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_volley"));
    c.args(args);
    c
}

fn spawn_sub(args: &[&str]) -> Child {
    let child = volley(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("volley sub starts");
    // A subscriber that joins after the data has gone hears none of it.
    std::thread::sleep(Duration::from_millis(500));
    child
}

#[track_caller]
fn finished(child: Child) -> (Output, String, String) {
    let out = child.wait_with_output().expect("volley exits");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// The numbers after `word ` in a summary line, in order.
fn numbers_after(text: &str, word: &str) -> Vec<u64> {
    let key = format!(" {word} ");
    text.match_indices(&key)
        .filter_map(|(i, _)| {
            text[i + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn lines_from_stdin_reach_a_udp_subscriber() {
    let ep = endpoint();
    let sub = spawn_sub(&[
        "sub",
        &ep,
        "--topic",
        "cpu.",
        "--count",
        "2",
        "--timeout",
        "10",
    ]);
    let mut publisher = volley(&["pub", &ep, "--topic", "cpu.load"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publisher
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\n")
        .unwrap();
    let (out, _, pub_err) = finished(publisher);
    assert!(out.status.success(), "{pub_err}");
    assert!(pub_err.contains("messages 2 "), "{pub_err}");
    let (out, stdout, stderr) = finished(sub);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "cpu.load\tone\ncpu.load\ttwo\n");
    assert!(stderr.contains("delivered 2 lost 0 "), "{stderr}");
}

#[test]
fn generated_messages_all_arrive_and_are_counted() {
    let ep = endpoint();
    let subs: Vec<Child> = (0..2)
        .map(|_| spawn_sub(&["sub", &ep, "--count", "3000", "--timeout", "10", "--quiet"]))
        .collect();
    let out = volley(&["pub", &ep, "--count", "3000", "--rate", "100000"])
        .output()
        .unwrap();
    let pub_err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{pub_err}");
    assert!(pub_err.contains("3000 sent"), "{pub_err}");
    for sub in subs {
        let (out, _, stderr) = finished(sub);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("3000 received"), "{stderr}");
        assert_eq!(numbers_after(&stderr, "delivered"), [3000], "{stderr}");
        assert_eq!(numbers_after(&stderr, "lost"), [0], "{stderr}");
    }
}

#[test]
fn injected_loss_is_counted_exactly_in_best_effort_and_repaired_when_reliable() {
    let count = 2000u64;
    for reliable in [false, true] {
        let ep = endpoint();
        let mut sub_args = vec!["sub", &ep, "--timeout", "3", "--quiet", "--loss", "0.1"];
        let mut pub_args = vec!["pub", &ep, "--count", "2000", "--rate", "20000"];
        if reliable {
            sub_args.push("--reliable");
            // The publisher stays until the repairs are done; on a starved host (a test
            // run at low priority beside builds) they can take longer than the default.
            pub_args.extend(["--reliable", "--drain", "2"]);
        }
        let sub = spawn_sub(&sub_args);
        let out = volley(&pub_args).output().unwrap();
        let pub_err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{pub_err}");
        let (out, _, stderr) = finished(sub);
        assert!(out.status.success(), "{stderr}");
        let delivered = numbers_after(&stderr, "delivered");
        let lost = numbers_after(&stderr, "lost");
        assert_eq!(delivered.len(), 1, "one publisher heard: {stderr}");
        assert_eq!(delivered[0] + lost[0], count, "{stderr}");
        assert!(numbers_after(&stderr, "injected-drops")[0] > 0, "{stderr}");
        if reliable {
            assert_eq!(lost[0], 0, "{stderr}");
            assert!(numbers_after(&stderr, "naks-sent")[0] > 0, "{stderr}");
            assert!(numbers_after(&pub_err, "retransmits")[0] > 0, "{pub_err}");
        } else {
            assert!(lost[0] > 0, "10% dropped, nothing counted lost: {stderr}");
        }
    }
}
