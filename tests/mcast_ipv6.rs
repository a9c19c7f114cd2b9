//! IPv6 multicast (`udp://[ff..]:PORT`), where the host allows it. Linux's `lo` has no
//! MULTICAST flag, so on a loopback-only host joining fails with a clear error and this
//! test says so and skips; on a host with a multicast-capable interface it checks
//! delivery end to end.

use std::time::Duration;

use volley::socket::{Message, Publisher, Subscriber};

#[test]
fn ipv6_groups_work_or_fail_with_a_clear_error() {
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    let endpoint = format!("udp://[ff05::4242:1]:{port}");
    let mut sub = Subscriber::new().unwrap();
    match sub.connect(&endpoint) {
        Ok(()) => {}
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&endpoint),
                "the error names the endpoint: {text}"
            );
            eprintln!("skipping: this host cannot join an IPv6 group ({text})");
            return;
        }
    }
    sub.subscribe("").unwrap();
    let mut publisher = Publisher::new().unwrap();
    if let Err(e) = publisher.bind(&endpoint) {
        eprintln!("skipping: this host cannot send to an IPv6 group ({e})");
        return;
    }
    publisher
        .send(Message::from_parts(["v6", "hello"]))
        .unwrap();
    publisher.flush(Duration::from_secs(1));
    match sub.recv_timeout(Duration::from_secs(2)).unwrap() {
        Some(m) => assert_eq!(m.frames()[1].as_ref(), b"hello"),
        None => eprintln!(
            "skipping: joined {endpoint} but nothing looped back (no multicast route on \
             the default interface)"
        ),
    }
}
