//! Where messages that could not be delivered go: a [`DeadLetterSink`]. Two sinks come with
//! volley, in memory (with an optional callback) and a JSON-lines file; a dead letter holds
//! everything needed to [`replay`](super::Emitter::replay) it with the same `webhook-id`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// A message that was not delivered, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The `webhook-id` it was (or would have been) sent with.
    pub id: String,
    /// The event type.
    pub event_type: String,
    /// The exact JSON body `{"type","timestamp","data"}` that was signed.
    pub body: String,
    /// The endpoint URL it failed on; `None` when it was refused before reaching any
    /// endpoint (queue policy), in which case a replay sends it to every matching one.
    pub endpoint: Option<String>,
    /// Why it was given up.
    pub reason: DeadReason,
    /// Attempts made on that endpoint.
    pub attempts: u32,
    /// The last failure (`HTTP 500`, `timeout`, …), if any attempt was made.
    pub last_error: Option<String>,
    /// When it was given up, in Unix seconds.
    pub dead_at: u64,
}

/// Why a message was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Every attempt of the retry schedule failed.
    Exhausted,
    /// The receiver answered `webhook-delivery: abort-message`.
    Aborted,
    /// The endpoint answered 410 Gone (to this or an earlier message) and is disabled.
    EndpointDisabled,
    /// The emit queue's overflow policy refused it (DropNewest, Block timeout, Buffer
    /// budget) or the emitter was shutting down.
    QueueRefused,
    /// The queue's DropOldest policy evicted it to make room for a newer message.
    Evicted,
    /// The endpoint's backlog (messages waiting their turn) was at its limit.
    BacklogFull,
    /// Still queued, waiting or in flight when a shutdown's deadline passed. An
    /// in-flight one may have reached the receiver: a replay sends the same id, so a
    /// receiver that de-duplicates on `webhook-id` sees it once.
    Shutdown,
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadReason::Exhausted => "retry schedule exhausted",
            DeadReason::Aborted => "receiver answered webhook-delivery: abort-message",
            DeadReason::EndpointDisabled => "endpoint disabled (410 Gone)",
            DeadReason::QueueRefused => "refused by the emit queue",
            DeadReason::Evicted => "evicted from the emit queue (DropOldest)",
            DeadReason::BacklogFull => "endpoint backlog full",
            DeadReason::Shutdown => "undelivered at the shutdown deadline",
        })
    }
}

/// Takes dead letters. Called from the emitter's threads (and, for queue refusals and
/// evictions, from the thread that called `emit`), never with a lock of the emitter held.
pub trait DeadLetterSink: Send + Sync {
    /// Keeps one dead letter. An error is counted in the emitter's stats
    /// (`dead_letter_errors`) and the letter is then lost: make this reliable.
    fn accept(&self, letter: DeadLetter) -> io::Result<()>;
}

type Callback = Box<dyn Fn(&DeadLetter) + Send + Sync>;

/// Dead letters kept in memory, with an optional callback called for each one as it
/// arrives. Cloning gives another handle on the same letters.
#[derive(Clone, Default)]
pub struct MemoryDeadLetters {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    letters: Mutex<Vec<DeadLetter>>,
    callback: Option<Callback>,
}

impl MemoryDeadLetters {
    /// An empty in-memory sink.
    pub fn new() -> Self {
        MemoryDeadLetters::default()
    }

    /// An in-memory sink that also calls `callback` for each letter (on the thread that
    /// gives it up; keep it short).
    pub fn with_callback(callback: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        MemoryDeadLetters {
            inner: Arc::new(MemoryInner {
                letters: Mutex::new(Vec::new()),
                callback: Some(Box::new(callback)),
            }),
        }
    }

    fn letters(&self) -> MutexGuard<'_, Vec<DeadLetter>> {
        self.inner
            .letters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes and returns every letter held.
    pub fn take(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut *self.letters())
    }

    /// A copy of the letters held.
    pub fn snapshot(&self) -> Vec<DeadLetter> {
        self.letters().clone()
    }

    /// How many letters are held.
    pub fn len(&self) -> usize {
        self.letters().len()
    }

    /// Whether no letter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for MemoryDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDeadLetters")
            .field("len", &self.len())
            .field("callback", &self.inner.callback.is_some())
            .finish()
    }
}

impl DeadLetterSink for MemoryDeadLetters {
    fn accept(&self, letter: DeadLetter) -> io::Result<()> {
        if let Some(callback) = &self.inner.callback {
            callback(&letter);
        }
        self.letters().push(letter);
        Ok(())
    }
}

/// Dead letters appended to a file, one JSON object per line, each line written with one
/// `write` call and flushed. [`read_dead_letters`] reads them back for a replay.
#[derive(Debug)]
pub struct JsonLinesDeadLetters {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesDeadLetters {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(JsonLinesDeadLetters {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl DeadLetterSink for JsonLinesDeadLetters {
    fn accept(&self, letter: DeadLetter) -> io::Result<()> {
        let mut line = serde_json::to_vec(&letter).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)?;
        file.flush()
    }
}

/// A line of a dead-letter file that is not a dead letter.
#[derive(Debug)]
pub enum ReadDeadLettersError {
    /// The file could not be read.
    Io(io::Error),
    /// Line `line` (1-based) does not parse.
    BadLine {
        /// The 1-based line number.
        line: usize,
        /// What the parser said.
        error: String,
    },
}

impl fmt::Display for ReadDeadLettersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadDeadLettersError::Io(e) => write!(f, "reading dead letters: {e}"),
            ReadDeadLettersError::BadLine { line, error } => {
                write!(f, "dead-letter line {line} is not a dead letter: {error}")
            }
        }
    }
}

impl std::error::Error for ReadDeadLettersError {}

/// Reads a file written by [`JsonLinesDeadLetters`]. Blank lines are skipped; any other
/// line that does not parse is an error naming it (nothing is skipped silently).
pub fn read_dead_letters(path: impl AsRef<Path>) -> Result<Vec<DeadLetter>, ReadDeadLettersError> {
    let file = File::open(path).map_err(ReadDeadLettersError::Io)?;
    parse_dead_letters(BufReader::new(file))
}

/// Parses JSON-lines dead letters from any reader (see [`read_dead_letters`]).
pub fn parse_dead_letters(reader: impl BufRead) -> Result<Vec<DeadLetter>, ReadDeadLettersError> {
    let mut letters = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(ReadDeadLettersError::Io)?;
        if line.trim().is_empty() {
            continue;
        }
        let letter = serde_json::from_str(&line).map_err(|e| ReadDeadLettersError::BadLine {
            line: i + 1,
            error: e.to_string(),
        })?;
        letters.push(letter);
    }
    Ok(letters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn letter(id: &str, reason: DeadReason) -> DeadLetter {
        DeadLetter {
            id: id.into(),
            event_type: "t.x".into(),
            body: r#"{"type":"t.x","timestamp":"2026-01-01T00:00:00.000000Z","data":{"a":"\n"}}"#
                .into(),
            endpoint: Some("http://127.0.0.1:9/hook".into()),
            reason,
            attempts: 3,
            last_error: Some("HTTP 500".into()),
            dead_at: 1_700_000_000,
        }
    }

    #[test]
    fn memory_sink_keeps_and_calls_back() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let sink = MemoryDeadLetters::with_callback(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        sink.accept(letter("a", DeadReason::Exhausted)).unwrap();
        sink.clone()
            .accept(letter("b", DeadReason::Aborted))
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(sink.len(), 2);
        let taken = sink.take();
        assert_eq!(taken[1].id, "b");
        assert!(sink.is_empty());
    }

    #[test]
    fn json_lines_round_trip_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("volley-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = JsonLinesDeadLetters::open(&path).unwrap();
        let letters = [
            letter("a", DeadReason::Exhausted),
            letter("b", DeadReason::Shutdown),
        ];
        for l in &letters {
            sink.accept(l.clone()).unwrap();
        }
        assert_eq!(read_dead_letters(&path).unwrap(), letters);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"reason\":\"shutdown\""));
        let bad = format!("{text}\n{{\"id\":1}}\n");
        match parse_dead_letters(bad.as_bytes()) {
            Err(ReadDeadLettersError::BadLine { line: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
