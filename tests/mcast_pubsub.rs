//! Multicast pub/sub on loopback (`udp://GROUP:PORT?iface=127.0.0.1`): fan-out to several
//! subscribers, two publishers on one group heard by three subscribers, prefix filtering, the loss generator in
//! best-effort mode (exact loss counts) and reliable mode (everything, in order),
//! busy-poll receive, and garbage datagrams from a raw socket.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use volley::proto::mcast::LossConfig;
use volley::socket::{
    Message, MulticastReceiverStats, Publisher, RecvMode, SocketOptions, Subscriber,
};

/// A group and port of its own for each test: tests run in parallel, and a port shared
/// by two tests would mix their traffic.
fn endpoint() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let port = 20_000 + (std::process::id() % 20_000) as u16 + n * 7;
    format!(
        "udp://239.255.{}.{}:{port}?iface=127.0.0.1",
        n / 200,
        1 + n % 200
    )
}

fn options() -> SocketOptions {
    SocketOptions {
        queue_capacity: 100_000,
        ..SocketOptions::default()
    }
}

fn subscriber(endpoint: &str, prefix: &str, options: SocketOptions) -> Subscriber {
    let mut sub = Subscriber::with_options(volley::io::Context::global().unwrap(), options)
        .expect("subscriber");
    sub.connect(endpoint).expect("join");
    sub.subscribe(prefix).unwrap();
    sub
}

fn publisher(endpoint: &str, options: SocketOptions) -> Publisher {
    let mut publisher =
        Publisher::with_options(volley::io::Context::global().unwrap(), options).unwrap();
    publisher.bind(endpoint).expect("join");
    publisher
}

#[track_caller]
fn recv_n(sub: &mut Subscriber, n: usize) -> Vec<Message> {
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub
            .recv_timeout(left.max(Duration::from_millis(1)))
            .unwrap()
        {
            Some(m) => got.push(m),
            None if Instant::now() >= deadline => {
                panic!("received {} of {n} messages", got.len())
            }
            None => {}
        }
    }
    got
}

#[track_caller]
fn recv_n_or_report(sub: &mut Subscriber, n: usize, publisher: &mut Publisher) -> Vec<Message> {
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        match sub.recv_timeout(Duration::from_millis(100)).unwrap() {
            Some(m) => got.push(m),
            None if Instant::now() >= deadline => {
                panic!(
                    "received {} of {n} messages\nreceiver {:#?}\nsender {:#?}",
                    got.len(),
                    sub.multicast_stats(),
                    publisher.multicast_stats()
                )
            }
            None => {}
        }
    }
    got
}

fn number(m: &Message) -> u64 {
    std::str::from_utf8(&m.frames()[1])
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends `["t", "0"]`, `["t", "1"]`, ..., `n` messages, pausing `pause` after each.
fn send_numbered(publisher: &mut Publisher, n: u64, pause: Duration) {
    for i in 0..n {
        publisher
            .send(Message::from_parts(["t".to_string(), i.to_string()]))
            .unwrap();
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Receives until the subscriber's counters account for all `n` messages sent (delivered
/// or lost; the last datagrams' loss is noticed from the next heartbeat), or 10 s;
/// returns the numbers of those delivered.
fn receive_until_accounted(sub: &mut Subscriber, n: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delivered = Vec::new();
    loop {
        while let Some(m) = sub.recv_timeout(Duration::from_millis(20)).unwrap() {
            delivered.push(number(&m));
        }
        let total = sub.multicast_stats()[0].protocol.total();
        if total.delivered_messages + total.lost_messages >= n || Instant::now() > deadline {
            // The counters wait for the group's lock, which the I/O thread holds while it
            // reads and queues: what they count delivered is queued by now, though the
            // empty receive before them may have missed it.
            while let Some(m) = sub.try_recv().unwrap() {
                delivered.push(number(&m));
            }
            return delivered;
        }
    }
}

/// Receives `n` messages on a thread of their own (a busy-polling subscriber reads on
/// the thread that receives); returns their numbers and the subscriber's counters.
fn receive_numbered_on_a_thread(
    mut sub: Subscriber,
    n: u64,
) -> std::thread::JoinHandle<(Vec<u64>, Vec<MulticastReceiverStats>)> {
    std::thread::spawn(move || {
        let got: Vec<u64> = recv_n(&mut sub, n as usize).iter().map(number).collect();
        (got, sub.multicast_stats())
    })
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let ep = endpoint();
    let mut subs = [
        subscriber(&ep, "cpu.", options()),
        subscriber(&ep, "cpu.", options()),
    ];
    let mut publisher = publisher(&ep, options());
    let n = 2_000;
    for i in 0..n {
        publisher
            .send(Message::from_parts(["cpu.load".to_string(), i.to_string()]))
            .unwrap();
    }
    publisher.flush(Duration::from_secs(1));
    for sub in &mut subs {
        let got = recv_n(sub, n);
        let numbers: Vec<u64> = got.iter().map(number).collect();
        assert_eq!(numbers, (0..n as u64).collect::<Vec<_>>());
        let stats = &sub.multicast_stats()[0];
        let total = stats.protocol.total();
        assert_eq!(total.delivered_messages, n as u64);
        assert_eq!(total.lost_messages, 0);
        assert_eq!(stats.kernel_drops, 0);
    }
    let sent = &publisher.multicast_stats()[0];
    assert_eq!(sent.protocol.messages, n as u64);
    let socket = publisher.stats();
    let payload: u64 = (0..n)
        .map(|i| ("cpu.load".len() + i.to_string().len()) as u64)
        .sum();
    assert_eq!((socket.messages_out, socket.bytes_out), (n as u64, payload));
    assert!(
        sent.protocol.datagrams < n as u64,
        "small messages are packed: {} datagrams for {n} messages",
        sent.protocol.datagrams
    );
}

#[test]
fn prefixes_filter_at_the_subscriber() {
    let ep = endpoint();
    let mut cpu = subscriber(&ep, "cpu.", options());
    let mut mem = subscriber(&ep, "mem.", options());
    let mut publisher = publisher(&ep, options());
    for i in 0..100 {
        let topic = if i % 2 == 0 { "cpu.load" } else { "mem.free" };
        publisher
            .send(Message::from_parts([topic.to_string(), i.to_string()]))
            .unwrap();
    }
    publisher.flush(Duration::from_secs(1));
    let got = recv_n(&mut cpu, 50);
    assert!(got.iter().all(|m| m.topic() == b"cpu.load"));
    let got = recv_n(&mut mem, 50);
    assert!(got.iter().all(|m| m.topic() == b"mem.free"));
    assert!(cpu
        .recv_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
    assert_eq!(cpu.multicast_stats()[0].filtered, 50);
}

#[test]
fn send_slices_packs_borrowed_frames_into_datagrams_like_send() {
    let ep = endpoint();
    let mut cpu = subscriber(&ep, "cpu.", options());
    let mut publisher = publisher(&ep, options());
    let mut buffer = [0u8; 8];
    for i in 0..100u64 {
        buffer.copy_from_slice(&i.to_le_bytes());
        let topic: &[u8] = if i % 2 == 0 { b"cpu.load" } else { b"mem.free" };
        publisher.send_slices(&[topic, &buffer]).unwrap();
    }
    // Larger than a datagram: fragmented from the borrowed bytes.
    let big = vec![5u8; 20_000];
    publisher.send_slices(&[b"cpu.big", &big, b""]).unwrap();
    assert!(publisher.send_slices(&[]).is_err());
    publisher.flush(Duration::from_secs(1));
    let got = recv_n(&mut cpu, 51);
    for (n, m) in got[..50].iter().enumerate() {
        let want = (2 * n as u64).to_le_bytes();
        assert_eq!(m.frames(), &[&b"cpu.load"[..], &want[..]][..]);
    }
    assert_eq!(got[50].frames(), &[&b"cpu.big"[..], &big[..], b""][..]);
}

#[test]
fn two_publishers_on_one_group_are_told_apart_by_every_subscriber() {
    let ep = endpoint();
    let mut busy = options();
    busy.recv_mode = RecvMode::BusyPoll;
    let mut subs = [
        subscriber(&ep, "", options()),
        subscriber(&ep, "", options()),
        subscriber(&ep, "", busy),
    ];
    let mut a = publisher(&ep, options());
    let mut b = publisher(&ep, options());
    for i in 0..500 {
        a.send(Message::from_parts(["a".to_string(), i.to_string()]))
            .unwrap();
        b.send(Message::from_parts(["b".to_string(), i.to_string()]))
            .unwrap();
    }
    a.flush(Duration::from_secs(1));
    b.flush(Duration::from_secs(1));
    for sub in &mut subs {
        let got = recv_n(sub, 1000);
        let mut per_topic: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
        for m in &got {
            per_topic
                .entry(m.topic().to_vec())
                .or_default()
                .push(number(m));
        }
        for topic in [&b"a"[..], b"b"] {
            assert_eq!(
                per_topic[topic],
                (0..500).collect::<Vec<u64>>(),
                "{topic:?}"
            );
        }
        let stats = &sub.multicast_stats()[0].protocol;
        assert_eq!(stats.publishers.len(), 2);
        for (_, p) in &stats.publishers {
            assert_eq!((p.delivered_messages, p.lost_messages), (500, 0));
        }
    }
}

#[test]
fn best_effort_counts_every_lost_message_exactly() {
    let ep = endpoint();
    let mut lossy = options();
    // Every 7th datagram dropped, starting with the 4th: the first arrives, so the
    // subscriber's start is the publisher's start.
    lossy.multicast.loss = LossConfig {
        pattern: (0..7).map(|i| i == 3).collect(),
        ..LossConfig::default()
    };
    let mut sub = subscriber(&ep, "", lossy);
    let mut small = options();
    small.multicast.sender.max_datagram_size = 200; // a few messages per datagram
    let mut publisher = publisher(&ep, small);
    let n = 3_000u64;
    send_numbered(&mut publisher, n, Duration::ZERO);
    publisher.flush(Duration::from_secs(1));
    let delivered = receive_until_accounted(&mut sub, n);
    let stats = &sub.multicast_stats()[0];
    let total = stats.protocol.total();
    assert!(total.lost_messages > 0, "the generator dropped nothing");
    assert_eq!(delivered.len() as u64, total.delivered_messages);
    assert_eq!(
        total.delivered_messages + total.lost_messages,
        n,
        "{total:?}"
    );
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert!(stats.loss.as_ref().unwrap().dropped > 0);
}

#[test]
fn reliable_mode_repairs_injected_loss_in_order() {
    let ep = endpoint();
    let mut lossy = options().clone();
    lossy.multicast = lossy.multicast.reliable();
    lossy.multicast.loss = LossConfig::drop_rate(0.10, 7);
    lossy.multicast.loss.pattern = vec![false; 1]; // keep the rate; the pattern never drops
    let mut clean = options();
    clean.multicast = clean.multicast.reliable();
    let mut lossy_sub = subscriber(&ep, "", lossy);
    let mut clean_sub = subscriber(&ep, "", clean.clone());
    // Make sure the first datagram reaches the lossy subscriber: it starts there.
    let mut publisher = publisher(&ep, clean);
    publisher.send(Message::from_parts(["t", "start"])).unwrap();
    publisher.flush(Duration::from_secs(1));
    let first = recv_n(&mut lossy_sub, 1);
    let _ = recv_n(&mut clean_sub, 1);
    assert_eq!(first[0].frames()[1].as_ref(), b"start");
    let n = 5_000u64;
    for i in 0..n {
        publisher
            .send(Message::from_parts(["t".to_string(), i.to_string()]))
            .unwrap();
        if i % 500 == 0 {
            // Let the publisher's I/O thread answer NAKs between bursts.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    publisher.flush(Duration::from_secs(1));
    for sub in [&mut lossy_sub, &mut clean_sub] {
        let got: Vec<u64> = recv_n_or_report(sub, n as usize, &mut publisher)
            .iter()
            .map(number)
            .collect();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }
    let stats = &lossy_sub.multicast_stats()[0];
    let total = stats.protocol.total();
    assert!(stats.loss.as_ref().unwrap().dropped > 0);
    assert!(total.naks_sent > 0, "{total:?}");
    assert_eq!(total.lost_messages, 0);
    assert!(publisher.multicast_stats()[0].protocol.retransmits > 0);
}

/// UDP GRO at the subscriber: a burst's GSO writes arrive as coalesced buffers, which
/// must come out as the same messages in order, whether the I/O thread or a busy-polling
/// thread reads them, and with the loss generator dropping datagrams of the cut buffers
/// the best-effort accounting stays exact.
#[test]
fn gro_subscribers_get_a_burst_whole_and_count_injected_loss_exactly() {
    let ep = endpoint();
    let mut gro = options();
    gro.multicast.gro = true;
    let mut busy = gro.clone();
    busy.recv_mode = RecvMode::BusyPoll;
    let mut lossy = gro.clone();
    lossy.multicast.loss = LossConfig::drop_rate(0.05, 5);
    let mut by_io_thread = subscriber(&ep, "", gro);
    let busy = subscriber(&ep, "", busy);
    let mut lossy = subscriber(&ep, "", lossy);
    let mut publisher = publisher(&ep, options());
    let n = 20_000u64;
    let busy_reader = receive_numbered_on_a_thread(busy, n);
    send_numbered(&mut publisher, n, Duration::ZERO);
    publisher.flush(Duration::from_secs(1));
    let sent = publisher.multicast_stats()[0].protocol.datagrams;
    assert!(sent > 64, "a burst of many datagrams: {sent}");
    let got: Vec<u64> = recv_n(&mut by_io_thread, n as usize)
        .iter()
        .map(number)
        .collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let (got, stats) = busy_reader.join().unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "busy-polling reader");
    assert_eq!(stats[0].protocol.total().lost_messages, 0);
    // The lossy one: whatever was delivered is in order, and delivered + lost == sent.
    let delivered = receive_until_accounted(&mut lossy, n);
    let stats = &lossy.multicast_stats()[0];
    let total = stats.protocol.total();
    assert!(
        stats.loss.as_ref().unwrap().dropped > 0,
        "the generator dropped datagrams"
    );
    assert!(total.lost_messages > 0);
    assert_eq!(total.delivered_messages, delivered.len() as u64);
    assert_eq!(
        total.delivered_messages + total.lost_messages,
        n,
        "{total:?}"
    );
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn busy_poll_reads_the_group_on_the_receiving_thread() {
    let ep = endpoint();
    let mut busy = options();
    busy.recv_mode = RecvMode::BusyPoll;
    let mut sub = subscriber(&ep, "", busy);
    let mut publisher = publisher(&ep, options());
    let echo = std::thread::spawn(move || {
        // Ping-pong: each message is sent only after the last one arrived.
        let mut got = Vec::new();
        for _ in 0..200 {
            let m = sub
                .recv_timeout(Duration::from_secs(5))
                .unwrap()
                .expect("message");
            got.push(number(&m));
        }
        (got, sub.stats())
    });
    for i in 0..200 {
        publisher
            .send(Message::from_parts(["t".to_string(), i.to_string()]))
            .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let (got, stats) = echo.join().unwrap();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    // Counted by the receiving thread, which read every one of them.
    let bytes: u64 = (0..200).map(|i: u64| 1 + i.to_string().len() as u64).sum();
    assert_eq!((stats.messages_in, stats.bytes_in), (200, bytes));
}

#[test]
fn a_busy_polling_subscriber_repairs_loss_in_reliable_mode() {
    // Messages one at a time: the busy-polling thread reads datagram by datagram and must
    // itself notice the gaps and send the NAKs whose random delay ran out while it polled.
    let ep = endpoint();
    let mut lossy = options();
    lossy.recv_mode = RecvMode::BusyPoll;
    lossy.multicast = lossy.multicast.reliable();
    lossy.multicast.loss = LossConfig::drop_rate(0.10, 11);
    lossy.multicast.loss.pattern = vec![false; 1];
    let mut reliable = options();
    reliable.multicast = reliable.multicast.reliable();
    let mut sub = subscriber(&ep, "", lossy);
    let mut publisher = publisher(&ep, reliable);
    publisher.send(Message::from_parts(["t", "start"])).unwrap();
    assert_eq!(recv_n(&mut sub, 1)[0].frames()[1].as_ref(), b"start");
    let n = 300u64;
    let echo = receive_numbered_on_a_thread(sub, n);
    send_numbered(&mut publisher, n, Duration::from_micros(100));
    let (got, stats) = echo.join().unwrap();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let total = stats[0].protocol.total();
    assert!(stats[0].loss.as_ref().unwrap().dropped > 0);
    assert!(total.naks_sent > 0, "{total:?}");
    assert_eq!(total.lost_messages, 0);
    assert_eq!(stats[0].kernel_drops, 0);
}

#[test]
fn garbage_datagrams_are_counted_and_ignored() {
    let ep = endpoint();
    let mut sub = subscriber(&ep, "", options());
    let group = ep
        .trim_start_matches("udp://")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_multicast_loop_v4(true).unwrap();
    let junk: [&[u8]; 4] = [b"", b"hello", &[0xff; 64], &[0u8; 1500]];
    for j in junk {
        raw.send_to(j, &group).unwrap();
    }
    let mut publisher = publisher(&ep, options());
    publisher.send(Message::from_parts(["t", "0"])).unwrap();
    publisher.flush(Duration::from_secs(1));
    let got = recv_n(&mut sub, 1);
    assert_eq!(number(&got[0]), 0);
    let stats = &sub.multicast_stats()[0];
    assert!(
        stats.protocol.garbage_datagrams >= 3,
        "garbage counted: {:?}",
        stats.protocol
    );
    // Every one of them, the empty datagram too: it arrives, so it must be counted.
    assert_eq!(
        stats.protocol.garbage_datagrams, 4,
        "garbage counted: {:?}",
        stats.protocol
    );
}

#[test]
fn bad_udp_endpoints_are_refused_with_a_reason() {
    let mut sub = Subscriber::new().unwrap();
    for bad in ["udp://10.1.2.3:5000", "udp://239.1.2.3:5?ttl=999"] {
        let err = sub.connect(bad).unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{err}");
    }
}
