//! What `volley pub`/`push` send and `volley sub`/`pull` print, shared by both pairs.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use volley::socket::{Error, Message};

/// A command-line number of seconds, or an error naming the option.
pub fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{what} must be a non-negative number of seconds"))
}

/// Hands `send` each payload in turn, at `rate` per second (0: as fast as possible):
/// `count` generated ones (the sequence number padded with `.` to `size` bytes), or one
/// per line of stdin when `count` is `None`. Returns how many were handed over.
pub fn send_payloads(
    count: Option<u64>,
    size: usize,
    rate: f64,
    mut send: impl FnMut(Bytes) -> Result<(), String>,
) -> Result<u64, String> {
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let start = Instant::now();
    let mut sent = 0u64;
    let mut send_paced = |payload: Vec<u8>| -> Result<(), String> {
        if let Some(iv) = interval {
            let due = start + iv.mul_f64(sent as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        send(Bytes::from(payload))?;
        sent += 1;
        Ok(())
    };
    match count {
        Some(count) => {
            for seq in 0..count {
                let mut payload = seq.to_string().into_bytes();
                payload.resize(size.max(payload.len()), b'.');
                send_paced(payload)?;
            }
        }
        None => {
            for line in std::io::stdin().lock().lines() {
                send_paced(
                    line.map_err(|e| format!("reading stdin: {e}"))?
                        .into_bytes(),
                )?;
            }
        }
    }
    Ok(sent)
}

/// One printed line for a message: its frames separated by tabs, each as lossy UTF-8 or
/// as hex.
pub fn frames_line<'a>(frames: impl IntoIterator<Item = &'a Bytes>, hex: bool) -> String {
    let mut line = String::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            line.push('\t');
        }
        if hex {
            for b in frame.iter() {
                line.push_str(&format!("{b:02x}"));
            }
        } else {
            line.push_str(&String::from_utf8_lossy(frame));
        }
    }
    line
}

/// Receives with `recv` (given the `--timeout`, `None` to wait as long as it takes) and
/// prints `line` of each message to stdout, until `count` messages (all of them without
/// one), a timeout, or stdout closing. A timeout before `count` is an error naming how
/// many came; without `count` it ends the loop. Returns how many were received.
pub fn print_messages(
    count: Option<u64>,
    timeout: Option<Duration>,
    quiet: bool,
    mut recv: impl FnMut(Option<Duration>) -> Result<Option<Message>, Error>,
    line: impl Fn(&Message) -> String,
) -> Result<u64, String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut received = 0u64;
    while count.is_none_or(|c| received < c) {
        let Some(message) = recv(timeout).map_err(|e| e.to_string())? else {
            if let Some(c) = count {
                return Err(format!("timed out after {received} of {c} messages"));
            }
            break;
        };
        received += 1;
        if quiet {
            continue;
        }
        if writeln!(out, "{}", line(&message)).is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    let _ = out.flush();
    Ok(received)
}
