// cargo run --example statsd_client -- [ADDR]   (default 127.0.0.1:8125; try `nc -ul 8125`)
//
// A service's-eye view of `volley::statsd`: every metric type, tags, sampling, a timer
// guard, and the client's counters at the end.

use std::time::Duration;

use volley::statsd::{Client, Flavour, Metric};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8125".into());
    let client = Client::builder(&addr)
        .prefix("example")
        .flavour(Flavour::DogStatsd)
        .tag("env", "dev")
        .build()?;

    client.incr("requests")?;
    client.send(Metric::count("requests", 1).tags(&[("route", "/login")]))?;
    client.send(Metric::count("cache.hits", 1).sample_rate(0.5))?;
    client.gauge("queue.depth", 17.0)?;
    client.timing("db.query", Duration::from_micros(2_340))?;
    client.histogram("payload.bytes", 512.0)?;
    client.distribution("latency", 3.2)?;
    client.set("users", "alice")?;
    {
        let _timer = client.timer("handler");
        std::thread::sleep(Duration::from_millis(3));
    }
    // A flavour-specific refusal, typed:
    if let Err(e) = client.gauge_delta("queue.depth", 1.0) {
        println!("refused: {e}");
    }

    client.flush()?;
    let s = client.stats();
    println!(
        "sent {} lines in {} datagrams ({} bytes) to {addr}; dropped {}, invalid {}",
        s.sent_lines, s.sent_datagrams, s.sent_bytes, s.dropped, s.invalid
    );
    Ok(())
}
