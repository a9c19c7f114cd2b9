//! A small HTTP/1.1 webhook receiver on loopback for tests and benchmarks: std
//! `TcpListener`, one thread per connection, keep-alive, and a script that decides each
//! answer (status, headers, delay, connection reset). Shared with `#[path]` by the webhook
//! tests, the benchmark and `volley demo`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request path.
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// Which attempt of this `webhook-id` at this path this is, from 1.
    pub attempt: u32,
    pub arrived: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, with these extra headers, after this delay.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        delay: Duration,
    },
    /// Close the connection with a TCP reset, without answering.
    Reset,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Status {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(status: u16, delay: Duration) -> Reply {
        Reply::Status {
            status,
            headers: Vec::new(),
            delay,
        }
    }

    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        Reply::Status {
            status,
            headers: vec![(name.into(), value.into())],
            delay: Duration::ZERO,
        }
    }
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

/// What the receiver saw: every request, and what it answered.
#[derive(Debug, Default)]
pub struct Log {
    /// Every request with the status answered (0 for a reset).
    pub requests: Vec<(Request, u16)>,
    attempts: HashMap<String, u32>,
}

impl Log {
    /// Ids answered with a 2xx, in the order they were answered.
    pub fn delivered(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|(_, s)| (200..300).contains(s))
            .map(|(r, _)| r.id().to_owned())
            .collect()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
    /// TCP connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// Starts a receiver on an ephemeral loopback port whose answers `script` decides.
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        {
            let log = log.clone();
            let stop = stop.clone();
            let connections = connections.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let log = log.clone();
                    let script = script.clone();
                    thread::spawn(move || serve(stream, &log, &*script));
                }
            });
        }
        Receiver {
            addr,
            log,
            connections,
            stop,
        }
    }

    /// A receiver that answers 204 to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_| Reply::status(204))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<(Request, u16)> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn delivered(&self) -> Vec<String> {
        self.log.lock().unwrap().delivered()
    }

    pub fn request_count(&self) -> usize {
        self.log.lock().unwrap().requests.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn serve(stream: TcpStream, log: &Mutex<Log>, script: &Script) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(mut request) = read_request(&mut reader) else {
            return;
        };
        let status;
        let reply = {
            let mut log = log.lock().unwrap();
            let key = format!("{} {}", request.path, request.id());
            let n = log.attempts.entry(key).or_insert(0);
            *n += 1;
            request.attempt = *n;
            let reply = script(&request);
            status = match &reply {
                Reply::Status { status, .. } => *status,
                Reply::Reset => 0,
            };
            log.requests.push((request, status));
            reply
        };
        match reply {
            Reply::Reset => {
                let _ = socket2::SockRef::from(&writer).set_linger(Some(Duration::ZERO));
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Reply::Status {
                status,
                headers,
                delay,
            } => {
                if !delay.is_zero() {
                    thread::sleep(delay);
                }
                // 204 and 304 have no body (a body there would be garbage on a kept-alive
                // connection); the others answer "ok".
                let no_body = matches!(status, 204 | 304);
                let mut head = format!("HTTP/1.1 {status} Answer\r\n");
                if !no_body {
                    head.push_str("content-length: 2\r\n");
                }
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                if !no_body {
                    head.push_str("ok");
                }
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        attempt: 0,
        arrived: Instant::now(),
    })
}
