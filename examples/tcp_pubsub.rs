//! cargo run --release --example tcp_pubsub
//!
//! A publisher and two subscribers with different topic prefixes over loopback TCP.
//! Any ZeroMQ SUB (libzmq, pyzmq) could take a subscriber's place: the wire is ZMTP 3.1.

use std::time::Duration;

use volley::socket::{Message, Publisher, Subscriber};

fn main() -> Result<(), volley::socket::Error> {
    let mut publisher = Publisher::new()?;
    let endpoint = publisher.bind("tcp://127.0.0.1:0")?.to_string();
    println!("publisher bound {endpoint}");

    let mut cpu = Subscriber::new()?;
    cpu.connect(&endpoint)?;
    cpu.subscribe("cpu.")?;
    let mut all = Subscriber::new()?;
    all.connect(&endpoint)?;
    all.subscribe("")?;

    // Subscriptions travel to the publisher, which filters: wait until both arrived.
    assert!(publisher.wait_for_subscribers(2, Duration::from_secs(5)));
    for (topic, value) in [
        ("cpu.load", "0.42"),
        ("mem.free", "1024"),
        ("cpu.temp", "61"),
    ] {
        let peers = publisher.send(Message::from_parts([topic, value]))?;
        println!("sent {topic}={value} to {peers} subscriber(s)");
    }

    for (name, sub, expect) in [("cpu.*", &mut cpu, 2), ("everything", &mut all, 3)] {
        for _ in 0..expect {
            let m = sub.recv_timeout(Duration::from_secs(5))?.expect("message");
            let value = String::from_utf8_lossy(&m.frames()[1]);
            println!("{name} got {}={value}", String::from_utf8_lossy(m.topic()));
        }
    }
    println!("publisher stats: {:?}", publisher.stats());
    Ok(())
}
