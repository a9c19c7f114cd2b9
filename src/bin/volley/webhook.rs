//! `volley webhook emit`, `volley bridge webhook`, and the webhook part of `volley demo`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use volley::socket::Subscriber;
use volley::webhook::{
    verify, BreakerConfig, DeadLetter, DeadLetterSink, EmitError, Emitter, Endpoint,
    JsonLinesDeadLetters, MemoryDeadLetters, RetrySchedule, Secret,
};

// The demo's receiver is the one the webhook tests use.
#[path = "../../../tests/support/webhook_receiver.rs"]
mod receiver;

/// `volley webhook …`
#[derive(Debug, Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Send one signed event and wait until it is delivered (exit 0) or given up
    /// (non-zero, with the reason).
    Emit(EmitArgs),
}

#[derive(Debug, Args)]
struct EmitArgs {
    /// The receiver's URL (http:// or https://).
    url: String,
    /// Signing secret, whsec_<base64>; repeat to sign with several (secret rotation).
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    /// Event type.
    #[arg(long = "type")]
    event_type: String,
    /// Event data, as JSON.
    #[arg(long)]
    data: String,
    /// Delays before each attempt, e.g. 0s,1s,2s (units ms, s, m, h).
    #[arg(long, default_value = "0s,1s,5s")]
    retry_schedule: String,
    /// Time limit of one attempt, in seconds.
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// Give up after this many seconds in all, whatever the schedule.
    #[arg(long)]
    deadline: Option<f64>,
}

/// `volley bridge …`
#[derive(Debug, Args)]
pub struct BridgeArgs {
    #[command(subcommand)]
    command: BridgeCommand,
}

#[derive(Debug, Subcommand)]
enum BridgeCommand {
    /// Subscribe to a publisher and forward each matching message to a webhook: the topic
    /// (first frame) is the event type, the payload (second frame) the data (as JSON if it
    /// parses, else as a string).
    Webhook(BridgeWebhookArgs),
}

#[derive(Debug, Args)]
struct BridgeWebhookArgs {
    /// The publisher to subscribe to: tcp://HOST:PORT or ipc://PATH.
    #[arg(long)]
    sub: String,
    /// Topic prefix to forward; repeat for several (default: everything).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// The receiver's URL.
    #[arg(long)]
    url: String,
    /// Signing secret, whsec_<base64>; repeat for secret rotation.
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    /// Delays before each attempt (default: the Standard Webhooks schedule, up to ~1.3 days).
    #[arg(long)]
    retry_schedule: Option<String>,
    /// Time limit of one attempt, in seconds.
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// Attempts in flight at once for the URL (1 keeps message order).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Append undeliverable events to this JSON-lines file (default: print them to stderr).
    #[arg(long)]
    dead_letters: Option<String>,
    /// Stop after forwarding this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds without a message.
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// On stopping, how long to keep delivering before dead-lettering the rest, in seconds.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
}

fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{what} must be a non-negative number of seconds"))
}

fn endpoint(url: &str, secrets: &[String]) -> Result<Endpoint, String> {
    let mut parsed = secrets
        .iter()
        .map(|s| Secret::parse(s).map_err(|e| format!("--secret: {e}")));
    let first = parsed.next().ok_or("at least one --secret is needed")??;
    let mut endpoint = Endpoint::new(url, first);
    for secret in parsed {
        endpoint = endpoint.also_sign_with(secret?);
    }
    Ok(endpoint)
}

pub fn run(args: &WebhookArgs) -> Result<(), String> {
    match &args.command {
        WebhookCommand::Emit(a) => emit(a),
    }
}

pub fn bridge(args: &BridgeArgs) -> Result<(), String> {
    match &args.command {
        BridgeCommand::Webhook(a) => bridge_webhook(a),
    }
}

fn emit(args: &EmitArgs) -> Result<(), String> {
    let schedule = RetrySchedule::parse(&args.retry_schedule).map_err(|e| e.to_string())?;
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(endpoint(&args.url, &args.secrets)?)
        .retry_schedule(schedule)
        .timeout(seconds(args.timeout, "--timeout")?)
        .workers(1)
        .dead_letters(dead.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let id = match emitter.emit_json(&args.event_type, &args.data) {
        Ok(id) => id,
        Err(EmitError::Data(e)) => return Err(format!("--data is not JSON: {e}")),
        Err(e) => return Err(e.to_string()),
    };
    let deadline = args
        .deadline
        .map(|d| seconds(d, "--deadline"))
        .transpose()?;
    let finished = match deadline {
        Some(d) => emitter.flush(d),
        None => loop {
            if emitter.flush(Duration::from_secs(3600)) {
                break true;
            }
        },
    };
    let stats = emitter.stats().endpoints[0].clone();
    emitter.shutdown(Duration::ZERO);
    if stats.delivered == 1 {
        println!("{id}");
        eprintln!(
            "volley webhook: delivered {id} after {} attempt(s)",
            stats.attempts
        );
        return Ok(());
    }
    let letter = dead.take().into_iter().next();
    let last = letter
        .as_ref()
        .and_then(|l| l.last_error.clone())
        .unwrap_or_else(|| "none".into());
    let why = match (finished, &letter) {
        (false, _) => format!(
            "deadline of {}s passed",
            deadline.unwrap_or_default().as_secs_f64()
        ),
        (true, Some(l)) => l.reason.to_string(),
        (true, None) => "unknown".into(),
    };
    Err(format!(
        "{id} not delivered: {why} after {} attempts (last error: {last})",
        stats.attempts
    ))
}

/// Dead letters printed to stderr as JSON lines, when the bridge has no file for them.
struct StderrDeadLetters;

impl DeadLetterSink for StderrDeadLetters {
    fn accept(&self, letter: DeadLetter) -> std::io::Result<()> {
        let line = serde_json::to_string(&letter).map_err(std::io::Error::other)?;
        writeln!(std::io::stderr().lock(), "dead letter: {line}")
    }
}

fn bridge_webhook(args: &BridgeWebhookArgs) -> Result<(), String> {
    let mut builder = Emitter::builder()
        .endpoint(endpoint(&args.url, &args.secrets)?.concurrency(args.concurrency))
        .timeout(seconds(args.timeout, "--timeout")?);
    if let Some(s) = &args.retry_schedule {
        builder = builder.retry_schedule(RetrySchedule::parse(s).map_err(|e| e.to_string())?);
    }
    builder = match &args.dead_letters {
        Some(path) => builder.dead_letters(
            JsonLinesDeadLetters::open(path).map_err(|e| format!("--dead-letters {path}: {e}"))?,
        ),
        None => builder.dead_letters(StderrDeadLetters),
    };
    let emitter = builder.build().map_err(|e| e.to_string())?;
    let mut sub = Subscriber::new().map_err(|e| e.to_string())?;
    sub.connect(&args.sub).map_err(|e| e.to_string())?;
    if args.topics.is_empty() {
        sub.subscribe(b"").map_err(|e| e.to_string())?;
    }
    for t in &args.topics {
        sub.subscribe(t.as_bytes()).map_err(|e| e.to_string())?;
    }
    let idle = args
        .idle_timeout
        .map(|t| seconds(t, "--idle-timeout"))
        .transpose()?;
    eprintln!("volley bridge: {} -> {}", args.sub, args.url);
    let mut forwarded = 0u64;
    let mut refused = 0u64;
    while args.count.is_none_or(|c| forwarded < c) {
        let message = match idle {
            Some(t) => match sub.recv_timeout(t).map_err(|e| e.to_string())? {
                Some(m) => m,
                None => break,
            },
            None => sub.recv().map_err(|e| e.to_string())?,
        };
        let event_type = String::from_utf8_lossy(message.topic()).into_owned();
        let payload = message
            .frames()
            .get(1)
            .map(|f| f.as_ref())
            .unwrap_or(b"null");
        let text = String::from_utf8_lossy(payload);
        let result = match emitter.emit_json(&event_type, &text) {
            Err(EmitError::Data(_)) => emitter.emit(&event_type, &*text),
            other => other,
        };
        match result {
            Ok(_) => {}
            Err(EmitError::Refused { .. }) => refused += 1,
            Err(e) => return Err(e.to_string()),
        }
        forwarded += 1;
    }
    let report = emitter.shutdown(seconds(args.drain, "--drain")?);
    eprintln!(
        "volley bridge: {forwarded} messages forwarded, {refused} refused by the queue, {} dead-lettered at shutdown",
        report.dead_lettered
    );
    Ok(())
}

/// The webhook part of `volley demo`: a receiver in this process that verifies every
/// signature and fails some first attempts; two endpoints (one with a rotated secret,
/// ordered; one filtered, concurrent); then a dead receiver whose dead letters are
/// replayed once it comes back.
pub fn demo() -> Result<(), String> {
    use receiver::{Receiver, Reply};
    const EVENTS: u64 = 60;
    println!("\n== webhooks (Standard Webhooks): {EVENTS} events to a local receiver that checks signatures");
    let old = Secret::generate();
    let new = Secret::generate();
    let alerts = Secret::generate();
    let verified = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let (verified, bad, up) = (verified.clone(), bad.clone(), up.clone());
        let keys: HashMap<&'static str, Vec<Secret>> = [
            ("/ordered", vec![new.clone()]), // the receiver already moved to the new secret
            ("/alerts", vec![alerts.clone()]),
            ("/flaky", vec![alerts.clone()]),
        ]
        .into();
        Receiver::start(move |r| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let secrets = keys.get(r.path.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            let signature = r.header("webhook-signature");
            if verify(
                secrets,
                r.id(),
                r.header("webhook-timestamp"),
                signature,
                r.body.as_bytes(),
                now,
            )
            .is_err()
            {
                bad.fetch_add(1, Ordering::Relaxed);
                return Reply::status(401);
            }
            verified.fetch_add(1, Ordering::Relaxed);
            if r.path == "/flaky" && !up.load(Ordering::Relaxed) {
                return Reply::status(503);
            }
            // About one message in five fails its first attempt at each path, with a 500
            // or a connection reset.
            let last = r.id().as_bytes().last().copied().unwrap_or(0);
            match (r.attempt, last % 5, last % 2) {
                (1, 0, 0) => Reply::status(500),
                (1, 0, _) => Reply::Reset,
                _ => Reply::status(204),
            }
        })
    };
    let dead = MemoryDeadLetters::new();
    let emitter = Emitter::builder()
        .endpoint(Endpoint::new(receiver.url("/ordered"), old).also_sign_with(new))
        .endpoint(
            Endpoint::new(receiver.url("/alerts"), alerts.clone())
                .event_types(["alert.*"])
                .concurrency(4),
        )
        .endpoint(Endpoint::new(receiver.url("/flaky"), alerts).event_types(["alert.disk"]))
        .retry_schedule(RetrySchedule::parse("0s,20ms,50ms").map_err(|e| e.to_string())?)
        // Short enough for a demo: /flaky's breaker opens and probes every 10 ms.
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(10),
        })
        .dead_letters(dead.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut ids = Vec::new();
    let mut alerts_sent = 0;
    let mut disk_sent = 0;
    for i in 0..EVENTS {
        let event_type = ["alert.cpu", "metric.mem", "alert.disk"][(i % 3) as usize];
        alerts_sent += u64::from(event_type.starts_with("alert."));
        disk_sent += u64::from(event_type == "alert.disk");
        let id = emitter
            .emit(
                event_type,
                &serde_json::json!({"host": format!("node-{}", i % 4), "seq": i}),
            )
            .map_err(|e| e.to_string())?;
        ids.push(id.to_string());
    }
    if !emitter.flush(Duration::from_secs(30)) {
        return Err("webhook demo: not delivered within 30 s".into());
    }
    let letters = dead.take();
    let stats = emitter.stats();
    println!(
        "{:<28} {:>6} {:>9} {:>8} {:>7} {:>6} {:>8} {:>8}",
        "endpoint", "events", "delivered", "attempts", "retried", "dead", "breaker", "mean ms"
    );
    let names = [
        "/ordered (rotated secret)",
        "/alerts (alert.*, conc. 4)",
        "/flaky (down: 503)",
    ];
    for ((name, s), sent) in
        names
            .iter()
            .zip(&stats.endpoints)
            .zip([EVENTS, alerts_sent, disk_sent])
    {
        println!(
            "{:<28} {:>6} {:>9} {:>8} {:>7} {:>6} {:>8} {:>8.2}",
            name,
            sent,
            s.delivered,
            s.attempts,
            s.retried,
            s.dead_lettered,
            format!("{}x", s.breaker_opened),
            s.latency_mean.as_secs_f64() * 1e3
        );
    }
    let log = receiver.log.lock().map_err(|_| "receiver log poisoned")?;
    let ordered: Vec<String> = log
        .requests
        .iter()
        .filter(|(r, s)| r.path == "/ordered" && (200..300).contains(s))
        .map(|(r, _)| r.id().to_owned())
        .collect();
    let alerts_delivered = log
        .requests
        .iter()
        .filter(|(r, s)| r.path == "/alerts" && (200..300).contains(s))
        .count() as u64;
    drop(log);
    if ordered != ids {
        return Err("webhook demo: /ordered did not get every event once, in order".into());
    }
    if alerts_delivered != alerts_sent || stats.endpoints[1].delivered != alerts_sent {
        return Err(format!(
            "webhook demo: /alerts got {alerts_delivered} of {alerts_sent}"
        ));
    }
    if letters.len() as u64 != disk_sent || stats.endpoints[2].delivered != 0 {
        return Err(format!(
            "webhook demo: expected {disk_sent} dead letters from /flaky, got {}",
            letters.len()
        ));
    }
    if bad.load(Ordering::Relaxed) != 0 {
        return Err("webhook demo: the receiver refused a signature".into());
    }
    println!(
        "/flaky came back: replaying its {} dead letters with their original ids",
        letters.len()
    );
    up.store(true, Ordering::Relaxed);
    let replay = emitter.replay(letters.clone());
    if replay.queued != letters.len() || !emitter.flush(Duration::from_secs(30)) {
        return Err("webhook demo: replay did not complete".into());
    }
    let flaky = &emitter.stats().endpoints[2];
    let replayed_ids: Vec<String> = receiver
        .requests()
        .into_iter()
        .filter(|(r, s)| r.path == "/flaky" && (200..300).contains(s))
        .map(|(r, _)| r.id().to_owned())
        .collect();
    let letter_ids: Vec<String> = letters.iter().map(|l| l.id.clone()).collect();
    if flaky.delivered != disk_sent || replayed_ids != letter_ids {
        return Err(format!(
            "webhook demo: replay delivered {} of {disk_sent}",
            flaky.delivered
        ));
    }
    println!(
        "receiver verified {} signatures (0 refused) in {:.1} ms",
        verified.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64() * 1e3
    );
    let report = emitter.shutdown(Duration::from_secs(5));
    if !report.clean {
        return Err("webhook demo: shutdown left work behind".into());
    }
    println!("checked: every event delivered once per endpoint (in order where concurrency is 1), failed first attempts retried with the same id, dead letters replayed");
    Ok(())
}
