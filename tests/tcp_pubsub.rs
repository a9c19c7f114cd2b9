//! Loopback integration tests of TCP (and ipc) pub/sub between volley sockets, and
//! against raw peers sending garbage or oversized frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use volley::io::Context;
use volley::ring::OverflowPolicy;
use volley::socket::{Message, Publisher, SocketOptions, Subscriber};

const WAIT: Duration = Duration::from_secs(10);

#[track_caller]
fn recv(sub: &mut Subscriber) -> Message {
    sub.recv_timeout(WAIT)
        .unwrap()
        .expect("no message within the timeout")
}

#[track_caller]
fn payloads(sub: &mut Subscriber, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| String::from_utf8_lossy(&recv(sub).frames()[1]).into_owned())
        .collect()
}

#[track_caller]
fn nothing_more(sub: &mut Subscriber) {
    if let Some(m) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
        panic!("unexpected message {:?}", m.frames());
    }
}

fn pair(ctx: &Context, prefixes: &[&str]) -> (Publisher, Subscriber) {
    let mut publisher = Publisher::with_options(ctx, SocketOptions::default()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap();
    let mut sub = Subscriber::with_options(ctx, SocketOptions::default()).unwrap();
    sub.connect(&ep.to_string()).unwrap();
    for p in prefixes {
        sub.subscribe(p).unwrap();
    }
    assert!(publisher.wait_for_subscribers(1, WAIT));
    (publisher, sub)
}

#[test]
fn fan_out_with_prefix_filtering() {
    let ctx = Context::new().unwrap();
    let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut subs: Vec<Subscriber> = ["cpu.", "mem.", ""]
        .iter()
        .map(|prefix| {
            let mut s = Subscriber::with_options(&ctx, SocketOptions::default()).unwrap();
            s.connect(&ep).unwrap();
            s.subscribe(prefix).unwrap();
            s
        })
        .collect();
    assert!(publisher.wait_for_subscribers(3, WAIT));
    for (topic, payload) in [
        ("cpu.load", "1"),
        ("mem.free", "2"),
        ("disk.io", "3"),
        ("cpu.temp", "4"),
    ] {
        publisher
            .send(Message::from_parts([topic, payload]))
            .unwrap();
    }
    assert_eq!(payloads(&mut subs[0], 2), ["1", "4"]);
    assert_eq!(payloads(&mut subs[1], 1), ["2"]);
    assert_eq!(payloads(&mut subs[2], 4), ["1", "2", "3", "4"]);
    for s in &mut subs {
        nothing_more(s);
    }
    let st = publisher.stats();
    assert_eq!(st.messages_out, 7);
    assert_eq!(st.peers, 3);
    assert_eq!(st.dropped, 0);
}
