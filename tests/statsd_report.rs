//! Volley sockets' own counters reported through a StatsD client: counters as changes
//! since the last report, peers and queue depths as gauges, once or on a thread.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use volley::io::Context;
use volley::socket::{Publisher, SocketOptions, Subscriber};
use volley::statsd::{Client, SocketStatsReporter};

const WAIT: Duration = Duration::from_secs(10);

fn daemon() -> (UdpSocket, Client) {
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let client = Client::builder(&daemon.local_addr().unwrap().to_string())
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    (daemon, client)
}

fn lines(daemon: &UdpSocket) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65_536];
    while let Ok(n) = daemon.recv(&mut buf) {
        out.extend(
            String::from_utf8_lossy(&buf[..n])
                .split('\n')
                .map(str::to_string),
        );
    }
    out
}

fn pair(ctx: &Context) -> (Publisher, Subscriber) {
    let mut publisher = Publisher::with_options(ctx, SocketOptions::default()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap();
    let mut sub = Subscriber::with_options(ctx, SocketOptions::default()).unwrap();
    sub.connect(&ep.to_string()).unwrap();
    sub.subscribe("").unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    (publisher, sub)
}

fn exchange(publisher: &mut Publisher, sub: &mut Subscriber, n: usize) {
    for i in 0..n {
        publisher.send_topic("t", format!("m{i}")).unwrap();
    }
    for _ in 0..n {
        sub.recv_timeout(WAIT).unwrap().expect("message");
    }
}

#[test]
fn counters_as_changes_gauges_as_values() {
    let ctx = Context::new().unwrap();
    let (mut publisher, mut sub) = pair(&ctx);
    let (daemon, client) = daemon();
    let mut reporter = SocketStatsReporter::new(client.clone(), "volley.");
    exchange(&mut publisher, &mut sub, 10);
    // The subscriber's counters are updated by the I/O thread as it reads.
    let deadline = Instant::now() + WAIT;
    while sub.stats().messages_in < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    reporter.report_publisher("pub", &mut publisher).unwrap();
    reporter.report_subscriber("sub", &sub).unwrap();
    client.flush().unwrap();
    let first = lines(&daemon);
    let capacity = format!(
        "volley.sub.queue_capacity:{}|g",
        SocketOptions::default().queue_capacity
    );
    for expected in [
        "volley.pub.messages_out:10|c",
        "volley.pub.peers:1|g",
        "volley.pub.queue_depth:0|g",
        "volley.pub.queue_depth_max:0|g",
        "volley.sub.messages_in:10|c",
        "volley.sub.peers:1|g",
        "volley.sub.queue_depth:0|g",
        capacity.as_str(),
    ] {
        assert!(
            first.iter().any(|l| l == expected),
            "{expected} not in {first:?}"
        );
    }
    // Nothing dropped: a zero change is not sent.
    assert!(!first.iter().any(|l| l.contains(".dropped:")), "{first:?}");

    exchange(&mut publisher, &mut sub, 5);
    let deadline = Instant::now() + WAIT;
    while sub.stats().messages_in < 15 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    reporter.report_publisher("pub", &mut publisher).unwrap();
    reporter.report_subscriber("sub", &sub).unwrap();
    client.flush().unwrap();
    let second = lines(&daemon);
    assert!(
        second.iter().any(|l| l == "volley.pub.messages_out:5|c"),
        "{second:?}"
    );
    assert!(
        second.iter().any(|l| l == "volley.sub.messages_in:5|c"),
        "{second:?}"
    );
}

#[test]
fn periodic_thread_reports_until_stopped() {
    let ctx = Context::new().unwrap();
    let (publisher, mut sub) = pair(&ctx);
    let publisher = Arc::new(Mutex::new(publisher));
    let (daemon, client) = daemon();
    let shared = publisher.clone();
    let periodic = SocketStatsReporter::new(client.clone(), "app")
        .spawn_periodic(Duration::from_millis(20), move |r| {
            r.report_publisher("pub", &mut shared.lock().unwrap())
                .unwrap();
        })
        .unwrap();
    {
        let mut p = publisher.lock().unwrap();
        for i in 0..3 {
            p.send_topic("t", format!("m{i}")).unwrap();
        }
    }
    for _ in 0..3 {
        sub.recv_timeout(WAIT).unwrap().expect("message");
    }
    std::thread::sleep(Duration::from_millis(100));
    periodic.stop();
    client.flush().unwrap();
    let got = lines(&daemon);
    // However the sends fell between reports, the changes add up to 3.
    let sent: i64 = got
        .iter()
        .filter_map(|l| l.strip_prefix("app.pub.messages_out:"))
        .map(|v| v.strip_suffix("|c").unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(sent, 3, "{got:?}");
    let peer_reports = got.iter().filter(|l| *l == "app.pub.peers:1|g").count();
    assert!(
        peer_reports >= 2,
        "several periodic reports expected: {got:?}"
    );
}

/// Waits under Block show as the change in `blocked` and in `blocked_ms`.
#[test]
fn blocked_sends_are_reported_with_their_time() {
    let (daemon, client) = daemon();
    let mut reporter = SocketStatsReporter::new(client.clone(), "volley.");
    let mut stats = volley::socket::SocketStats {
        blocked: 3,
        blocked_time: Duration::from_millis(250),
        ..Default::default()
    };
    reporter.report("push", &stats).unwrap();
    stats.blocked = 5;
    stats.blocked_time = Duration::from_millis(400);
    reporter.report("push", &stats).unwrap();
    client.flush().unwrap();
    let got = lines(&daemon);
    for expected in [
        "volley.push.blocked:3|c",
        "volley.push.blocked_ms:250|c",
        "volley.push.blocked:2|c",
        "volley.push.blocked_ms:150|c",
    ] {
        assert!(
            got.iter().any(|l| l == expected),
            "{expected} not in {got:?}"
        );
    }
}
