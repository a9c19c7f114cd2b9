//! Loopback integration tests of TCP (and ipc) pub/sub between volley sockets, and
//! against raw peers sending garbage or oversized frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use volley::io::Context;
use volley::ring::OverflowPolicy;
use volley::socket::{Message, Publisher, SocketOptions, Subscriber};

#[path = "support/zmtp_peer.rs"]
mod zmtp_peer;
use zmtp_peer::{count_messages, raw_peer};

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
    let per_peer: Vec<u64> = publisher
        .peer_stats()
        .iter()
        .map(|p| p.messages_out)
        .collect();
    assert_eq!(per_peer.iter().sum::<u64>(), 7);
    assert!(
        per_peer.contains(&4) && per_peer.contains(&2) && per_peer.contains(&1),
        "{per_peer:?}"
    );
    let sub_peers = subs[2].peer_stats();
    assert_eq!(sub_peers.len(), 1);
    assert_eq!(sub_peers[0].messages_in, 4);
    assert!(
        sub_peers[0].peer.starts_with("tcp://127.0.0.1:"),
        "{}",
        sub_peers[0].peer
    );
    let st = publisher.stats();
    assert_eq!(st.messages_out, 7);
    assert_eq!(st.peers, 3);
    assert_eq!(st.dropped, 0);
}

#[test]
fn multipart_frames_arrive_intact_and_unsubscribe_stops_delivery() {
    let ctx = Context::new().unwrap();
    let (mut publisher, mut sub) = pair(&ctx, &["a"]);
    let big = vec![7u8; 100_000];
    publisher
        .send(Message::from_parts([
            bytes::Bytes::from_static(b"a.1"),
            bytes::Bytes::new(),
            bytes::Bytes::from(big.clone()),
            bytes::Bytes::from_static(b"end"),
        ]))
        .unwrap();
    let m = recv(&mut sub);
    assert_eq!(m.frames().len(), 4);
    assert_eq!(&m.frames()[0][..], b"a.1");
    assert!(m.frames()[1].is_empty());
    assert_eq!(&m.frames()[2][..], &big[..]);
    assert_eq!(&m.frames()[3][..], b"end");

    // Subscriptions are counted: two subscribes need two cancels.
    sub.subscribe("a").unwrap();
    sub.unsubscribe("a").unwrap();
    wait_until(|| publisher.subscriptions() == [(bytes::Bytes::from_static(b"a"), 1)]);
    publisher.send(Message::from_parts(["a.2", "x"])).unwrap();
    assert_eq!(payloads(&mut sub, 1), ["x"]);
    sub.unsubscribe("a").unwrap();
    wait_until(|| publisher.subscriptions().is_empty());
    assert_eq!(
        publisher.send(Message::from_parts(["a.3", "y"])).unwrap(),
        0
    );
    nothing_more(&mut sub);
}

#[track_caller]
fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn subscriber_binds_and_publisher_connects_over_ipc_and_tcp() {
    let ctx = Context::new().unwrap();
    let dir = std::env::temp_dir().join(format!("volley-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ipc = format!("ipc://{}", dir.join("pubsub.sock").display());
    for endpoint in [ipc.as_str(), "tcp://127.0.0.1:0"] {
        let mut sub = Subscriber::with_options(&ctx, SocketOptions::default()).unwrap();
        let bound = sub.bind(endpoint).unwrap().to_string();
        sub.subscribe("").unwrap();
        let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
        publisher.connect(&bound).unwrap();
        assert!(publisher.wait_for_subscribers(1, WAIT), "{endpoint}");
        publisher.send(Message::from_parts(["t", "over"])).unwrap();
        assert_eq!(payloads(&mut sub, 1), ["over"], "{endpoint}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn subscriber_reconnects_and_resubscribes_after_the_publisher_restarts() {
    let ctx = Context::new().unwrap();
    let options = SocketOptions {
        reconnect_initial: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..SocketOptions::default()
    };
    let mut publisher = Publisher::with_options(&ctx, options.clone()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut sub = Subscriber::with_options(&ctx, options.clone()).unwrap();
    sub.connect(&ep).unwrap();
    sub.subscribe("k").unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    publisher
        .send(Message::from_parts(["k", "before"]))
        .unwrap();
    assert_eq!(payloads(&mut sub, 1), ["before"]);
    drop(publisher);

    let mut publisher = Publisher::with_options(&ctx, options).unwrap();
    // The old listener is closed by the I/O thread; binding again may race it briefly.
    let deadline = Instant::now() + WAIT;
    while publisher.bind(&ep).is_err() {
        assert!(Instant::now() < deadline, "could not bind {ep} again");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(publisher.wait_for_subscribers(1, WAIT), "no resubscription");
    publisher.send(Message::from_parts(["k", "after"])).unwrap();
    assert_eq!(payloads(&mut sub, 1), ["after"]);
    assert_eq!(sub.stats().reconnects, 1);
}

#[test]
fn bad_endpoints_are_refused_with_a_reason() {
    let ctx = Context::new().unwrap();
    let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
    for bad in ["tcp://127.0.0.1", "udpx://1.2.3.4:5", "tcp://*:notaport"] {
        let e = publisher.bind(bad).unwrap_err();
        assert!(e.to_string().contains("invalid endpoint"), "{e}");
    }
    assert!(publisher.connect("tcp://*:5555").is_err());
    let taken = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut other = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
    assert!(matches!(
        other.bind(&taken),
        Err(volley::socket::Error::Io(_))
    ));
    // Block at a receiver holds its senders back for as long as it takes; a timeout
    // there would have nothing to time.
    let timed_block_sub = SocketOptions {
        policy: OverflowPolicy::Block {
            timeout: Some(Duration::from_secs(1)),
        },
        ..SocketOptions::default()
    };
    assert!(Subscriber::with_options(&ctx, timed_block_sub).is_err());
}

/// A subscriber that stops reading: the publisher's queue for it fills, and its
/// policy decides. Every message is accounted for: sent == delivered + dropped.
#[test]
fn stalled_subscriber_fills_its_queue_and_every_policy_accounts_exactly() {
    const N: usize = 3000;
    for policy in [
        OverflowPolicy::DropNewest,
        OverflowPolicy::DropOldest,
        OverflowPolicy::Block {
            timeout: Some(Duration::from_millis(1)),
        },
        OverflowPolicy::Buffer { max_bytes: 1 << 20 },
    ] {
        let ctx = Context::new().unwrap();
        let options = SocketOptions {
            queue_capacity: 16,
            policy,
            ..SocketOptions::default()
        };
        let mut publisher = Publisher::with_options(&ctx, options).unwrap();
        let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
        let mut raw = raw_peer(&ep, "SUB");
        let mut sub = vec![0x04, 10, 9];
        sub.extend_from_slice(b"SUBSCRIBE");
        raw.write_all(&sub).unwrap();
        assert!(publisher.wait_for_subscribers(1, WAIT));
        let payload = bytes::Bytes::from(vec![1u8; 16 * 1024]);
        for _ in 0..N {
            publisher
                .send(Message::new(vec![
                    bytes::Bytes::from_static(b"t"),
                    payload.clone(),
                ]))
                .unwrap();
        }
        let dropped = publisher.stats().dropped as usize;
        assert!(dropped > 0, "{policy:?}: 48 MB never filled the queue");
        // Under Block every drop is a timed-out wait, and the socket shows the waits.
        let blocked = publisher.stats().blocked as usize;
        match policy {
            OverflowPolicy::Block { .. } => assert!(blocked >= dropped, "{blocked}"),
            _ => assert_eq!(blocked, 0, "{policy:?}"),
        }
        // Now read everything the publisher can still deliver.
        raw.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut stream = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match raw.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => stream.extend_from_slice(&buf[..n]),
                Err(_) => {
                    if publisher.flush(Duration::from_millis(1))
                        && count_messages(&stream) + dropped >= N
                    {
                        break;
                    }
                }
            }
        }
        let delivered = count_messages(&stream);
        assert_eq!(
            delivered + dropped,
            N,
            "{policy:?}: delivered {delivered} dropped {dropped}"
        );
        assert_eq!(
            publisher.stats().messages_out as usize,
            delivered,
            "{policy:?}"
        );
    }
}

/// A subscriber that does not call recv: its inbound queue fills and drops, counted.
#[test]
fn slow_subscriber_inbound_queue_drops_are_counted() {
    for (policy, expect_last) in [
        (OverflowPolicy::DropNewest, false),
        (OverflowPolicy::DropOldest, true),
    ] {
        let ctx = Context::new().unwrap();
        let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
        let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
        let mut sub = Subscriber::with_options(
            &ctx,
            SocketOptions {
                queue_capacity: 10,
                policy,
                ..SocketOptions::default()
            },
        )
        .unwrap();
        sub.connect(&ep).unwrap();
        sub.subscribe("").unwrap();
        assert!(publisher.wait_for_subscribers(1, WAIT));
        for i in 0..500 {
            publisher
                .send(Message::from_parts(["t".to_string(), i.to_string()]))
                .unwrap();
        }
        assert!(publisher.flush(WAIT));
        wait_until(|| sub.stats().messages_in == 500);
        let got = payloads(&mut sub, 10);
        nothing_more(&mut sub);
        assert_eq!(sub.stats().dropped, 490, "{policy:?}");
        let expect: Vec<String> = if expect_last {
            (490..500).map(|i| i.to_string()).collect()
        } else {
            (0..10).map(|i| i.to_string()).collect()
        };
        assert_eq!(got, expect, "{policy:?}");
    }
}

#[test]
fn oversized_and_garbage_input_close_the_connection_and_are_counted() {
    let ctx = Context::new().unwrap();
    let options = SocketOptions {
        max_message_size: 1024,
        ..SocketOptions::default()
    };
    let mut sub = Subscriber::with_options(&ctx, options).unwrap();
    let ep = sub.bind("tcp://127.0.0.1:0").unwrap().to_string();
    sub.subscribe("").unwrap();

    // A PUB that declares a 1 TiB frame: refused from the header, nothing allocated.
    let mut raw = raw_peer(&ep, "PUB");
    let mut frame = vec![0x02];
    frame.extend_from_slice(&(1u64 << 40).to_be_bytes());
    raw.write_all(&frame).unwrap();
    wait_until(|| sub.stats().oversized == 1);
    assert_eq!(sub.stats().protocol_errors, 1);
    let mut sink = [0u8; 256];
    raw.set_read_timeout(Some(WAIT)).unwrap();
    while let Ok(n) = raw.read(&mut sink) {
        if n == 0 {
            break; // closed by volley
        }
    }

    // Garbage instead of a greeting.
    let mut junk = TcpStream::connect(ep.trim_start_matches("tcp://")).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901234567890123456789012345678901234567890").unwrap();
    wait_until(|| sub.stats().protocol_errors == 2);

    // A wrong socket type (PUSH cannot talk to SUB) is refused too.
    let _push = raw_peer(&ep, "PUSH");
    wait_until(|| sub.stats().protocol_errors == 3);

    // The socket still works for a good peer.
    let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
    publisher.connect(&ep).unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    publisher.send(Message::from_parts(["ok", "fine"])).unwrap();
    assert_eq!(payloads(&mut sub, 1), ["fine"]);
    assert_eq!(sub.stats().oversized, 1);
}

#[test]
fn heartbeats_answer_pings_and_drop_a_silent_peer() {
    let ctx = Context::new().unwrap();
    let options = SocketOptions {
        heartbeat_interval: Some(Duration::from_millis(50)),
        heartbeat_timeout: Some(Duration::from_millis(100)),
        ..SocketOptions::default()
    };
    let mut publisher = Publisher::with_options(&ctx, options).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut raw = raw_peer(&ep, "SUB");
    // Our PING (TTL 0, context "hb"): the publisher must answer PONG "hb".
    raw.write_all(&[0x04, 9, 4, b'P', b'I', b'N', b'G', 0, 0, b'h', b'b'])
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    let mut closed = false;
    // Then stay silent (no PONG to its PINGs): it must close the connection.
    while Instant::now() < deadline {
        match raw.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let pong = [0x04, 7, 4, b'P', b'O', b'N', b'G', b'h', b'b'];
    assert!(
        seen.windows(pong.len()).any(|w| w == pong),
        "no PONG answer"
    );
    assert!(
        seen.windows(5).any(|w| w == b"\x04PING"),
        "no PING from an idle publisher"
    );
    assert!(closed, "a silent peer was not dropped");
    wait_until(|| publisher.stats().protocol_errors == 1);
    assert_eq!(publisher.stats().peers, 0);
}

fn busy() -> SocketOptions {
    SocketOptions {
        recv_mode: volley::socket::RecvMode::BusyPoll,
        policy: OverflowPolicy::Block { timeout: None },
        queue_capacity: 1024,
        ..SocketOptions::default()
    }
}

#[test]
fn a_busy_subscriber_gets_every_byte_of_small_and_large_messages_across_its_reads() {
    // A busy subscriber peeks reads of up to 4 KiB and drops them from the kernel at its
    // next poll; larger reads are dropped at once. Messages from 1 byte to 40 KiB, with
    // pauses so that some reads are small, some end inside a frame and some are large,
    // must arrive byte for byte, once each, in order.
    let ctx = Context::new().unwrap();
    let mut publisher = Publisher::with_options(&ctx, busy()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut sub = Subscriber::with_options(&ctx, busy()).unwrap();
    sub.connect(&ep).unwrap();
    sub.subscribe("s").unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    let body = |i: usize| -> Vec<u8> {
        let size = [1, 60, 700, 4000, 4097, 9000, 40_000, 3][i % 8] + i % 13;
        (0..size).map(|j| (i * 7 + j * 13) as u8).collect()
    };
    let n = 2_000;
    let reader = std::thread::spawn(move || {
        for i in 0..n {
            let m = recv(&mut sub);
            assert_eq!(m.frames().len(), 3, "message {i}");
            assert_eq!(m.frames()[1].as_ref(), i.to_string().as_bytes());
            assert_eq!(m.frames()[2].as_ref(), body(i).as_slice(), "message {i}");
        }
        sub
    });
    for i in 0..n {
        publisher
            .send(Message::new(vec![
                "s".into(),
                i.to_string().into(),
                body(i).into(),
            ]))
            .unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut sub = reader.join().unwrap();
    assert!(sub.try_recv().unwrap().is_none(), "nothing arrives twice");
    assert_eq!(sub.stats().messages_in, n as u64);
}

#[test]
fn busy_poll_sockets_do_their_own_io_and_keep_every_message_in_order() {
    // A busy publisher writes its connections itself when their rings are empty and
    // falls back to the ring when the I/O thread holds the connection or older messages
    // wait; a busy subscriber reads itself and through the ring. Whatever path each
    // message takes, all arrive, in order, for a busy and a blocking subscriber alike.
    let ctx = Context::new().unwrap();
    let mut publisher = Publisher::with_options(&ctx, busy()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut subs: Vec<Subscriber> = [busy(), SocketOptions::default()]
        .into_iter()
        .map(|mut options| {
            options.queue_capacity = 1 << 16;
            options.policy = OverflowPolicy::Buffer { max_bytes: 1 << 30 };
            let mut s = Subscriber::with_options(&ctx, options).unwrap();
            s.connect(&ep).unwrap();
            s.subscribe("t").unwrap();
            s
        })
        .collect();
    assert!(publisher.wait_for_subscribers(2, WAIT));
    let n = 50_000u64;
    let readers: Vec<_> = subs
        .drain(..)
        .map(|mut sub| {
            std::thread::spawn(move || {
                let mut expected = 0u64;
                while expected < n {
                    let m = recv(&mut sub);
                    let got: u64 = std::str::from_utf8(&m.frames()[1])
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(got, expected, "out of order or lost");
                    expected += 1;
                }
                // The I/O thread adds its counts after pushing a read's messages: they
                // may trail the last message by a moment.
                wait_until(|| sub.stats().messages_in == n);
                sub.stats()
            })
        })
        .collect();
    for i in 0..n {
        assert_eq!(
            publisher
                .send(Message::from_parts(["t".to_string(), i.to_string()]))
                .unwrap(),
            2
        );
    }
    for reader in readers {
        let stats = reader.join().unwrap();
        assert_eq!(stats.messages_in, n);
    }
    assert_eq!(publisher.stats().messages_out, 2 * n);
}

#[test]
fn a_busy_subscriber_that_stops_reading_still_answers_pings_and_sees_a_restart() {
    // The I/O thread reads a user-read connection when its thread has been away: PINGs
    // get their PONG (the publisher's heartbeat does not drop it), and a publisher
    // restart is noticed and reconnected without the subscriber calling recv.
    let ctx = Context::new().unwrap();
    let heartbeats = SocketOptions {
        heartbeat_interval: Some(Duration::from_millis(20)),
        heartbeat_timeout: Some(Duration::from_millis(60)),
        ..SocketOptions::default()
    };
    let mut publisher = Publisher::with_options(&ctx, heartbeats.clone()).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let busy_sub = SocketOptions {
        policy: OverflowPolicy::DropNewest,
        ..busy()
    };
    let mut sub = Subscriber::with_options(&ctx, busy_sub).unwrap();
    sub.connect(&ep).unwrap();
    sub.subscribe("").unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    publisher.send(Message::from_parts(["a", "1"])).unwrap();
    assert_eq!(recv(&mut sub).frames()[1].as_ref(), b"1");
    // Away for many heartbeat timeouts.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        publisher.peer_count(),
        1,
        "the idle busy subscriber was dropped"
    );
    publisher.send(Message::from_parts(["a", "2"])).unwrap();
    assert_eq!(recv(&mut sub).frames()[1].as_ref(), b"2");
    // Restart the publisher on the same port while the subscriber is away.
    drop(publisher);
    std::thread::sleep(Duration::from_millis(100));
    let mut publisher = Publisher::with_options(&ctx, heartbeats).unwrap();
    publisher.bind(&ep).unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    publisher.send(Message::from_parts(["a", "3"])).unwrap();
    assert_eq!(recv(&mut sub).frames()[1].as_ref(), b"3");
    assert!(sub.stats().reconnects >= 1);
}

/// A burst's last messages sit in a batch the sending thread does not write itself: the
/// I/O thread must be told to. Without that hand-off they would wait for the next send.
#[test]
fn the_tail_of_a_burst_is_written_without_a_further_send() {
    let ctx = Context::new().unwrap();
    let (mut publisher, mut sub) = pair(&ctx, &[""]);
    for round in 0..20 {
        for i in 0..50 {
            publisher
                .send_topic("t", format!("{round}.{i}").into_bytes())
                .unwrap();
        }
        // Nothing more is sent until the whole burst has arrived.
        let got = payloads(&mut sub, 50);
        let want: Vec<String> = (0..50).map(|i| format!("{round}.{i}")).collect();
        assert_eq!(got, want);
    }
    let s = publisher.stats();
    assert_eq!((s.messages_out, s.dropped), (1000, 0));
    let p = publisher.peer_stats();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].messages_out, 1000);
}

/// Long bursts of back-to-back sends: after the first batch, the sender writes its own
/// batches and a timer on the I/O thread writes the last one; every burst must arrive
/// whole, in order, with nothing sent after it, in both receive modes.
#[test]
fn the_tail_of_a_sustained_burst_is_written_without_a_further_send() {
    for recv_mode in [
        volley::socket::RecvMode::Blocking,
        volley::socket::RecvMode::BusyPoll,
    ] {
        let ctx = Context::new().unwrap();
        let pub_opts = SocketOptions {
            policy: OverflowPolicy::Block { timeout: None },
            recv_mode,
            ..SocketOptions::default()
        };
        let mut publisher = Publisher::with_options(&ctx, pub_opts).unwrap();
        let ep = publisher.bind("tcp://127.0.0.1:0").unwrap();
        let sub_opts = SocketOptions {
            policy: OverflowPolicy::Buffer { max_bytes: 1 << 28 },
            recv_mode,
            ..SocketOptions::default()
        };
        let mut sub = Subscriber::with_options(&ctx, sub_opts).unwrap();
        sub.connect(&ep.to_string()).unwrap();
        sub.subscribe("").unwrap();
        assert!(publisher.wait_for_subscribers(1, WAIT));
        // Burst lengths that end at different points of a batch (a message is about
        // 16 bytes on the wire, a batch 16 KiB).
        let bursts: Vec<usize> = (0..8).map(|r| 3000 + r * 1777).collect();
        let expected = bursts.clone();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let receiver = std::thread::spawn(move || {
            for (round, n) in expected.into_iter().enumerate() {
                go_rx.recv().unwrap();
                for i in 0..n {
                    let m = recv(&mut sub);
                    assert_eq!(
                        String::from_utf8_lossy(&m.frames()[1]),
                        format!("{round}.{i}"),
                        "{recv_mode:?}"
                    );
                }
                done_tx.send(()).unwrap();
            }
        });
        for (round, &n) in bursts.iter().enumerate() {
            go_tx.send(()).unwrap();
            for i in 0..n {
                publisher
                    .send_topic("t", format!("{round}.{i}").into_bytes())
                    .unwrap();
            }
            // Nothing more is sent until the whole burst has arrived.
            done_rx
                .recv_timeout(WAIT)
                .expect("the burst's tail never came");
        }
        receiver.join().unwrap();
        let total: usize = bursts.iter().sum();
        let s = publisher.stats();
        assert_eq!((s.messages_out, s.dropped), (total as u64, 0));
    }
}

/// Block at a subscriber: it drops nothing; its full queue pauses reading, and the
/// publisher's own policy (DropNewest) drops for that peer, counted. Every message is
/// either received, in order, or counted at the publisher.
#[test]
fn a_subscriber_under_block_leaves_the_drops_to_the_publisher() {
    const N: usize = 10_000;
    let ctx = Context::new().unwrap();
    let mut publisher = Publisher::with_options(
        &ctx,
        SocketOptions {
            queue_capacity: 100,
            ..SocketOptions::default()
        },
    )
    .unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut sub = Subscriber::with_options(
        &ctx,
        SocketOptions {
            queue_capacity: 16,
            policy: OverflowPolicy::Block { timeout: None },
            ..SocketOptions::default()
        },
    )
    .unwrap();
    sub.connect(&ep).unwrap();
    sub.subscribe("").unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    let payload = bytes::Bytes::from(vec![1u8; 4096]);
    for i in 0..N {
        let m = Message::new(vec![
            bytes::Bytes::from_static(b"t"),
            bytes::Bytes::from(i.to_string()),
            payload.clone(),
        ]);
        publisher.send(m).unwrap();
    }
    let dropped_at_publisher = publisher.stats().dropped as usize;
    assert!(
        dropped_at_publisher > 0,
        "40 MB fitted the buffers: nothing was held back"
    );
    let mut got = Vec::new();
    while got.len() + dropped_at_publisher < N {
        let m = recv(&mut sub);
        got.push(
            std::str::from_utf8(&m.frames()[1])
                .unwrap()
                .parse::<usize>()
                .unwrap(),
        );
    }
    nothing_more(&mut sub);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated"
    );
    let s = sub.stats();
    assert_eq!(s.dropped, 0);
    assert!(s.blocked >= 1, "the subscriber never paused: {s:?}");
    assert_eq!(publisher.stats().dropped as usize, dropped_at_publisher);
}

#[test]
fn send_slices_copies_the_callers_bytes_filters_by_topic_and_refuses_empty() {
    let ctx = Context::new().unwrap();
    let (mut publisher, mut sub) = pair(&ctx, &["cpu."]);
    let buffer = b"0.42".to_vec();
    assert_eq!(publisher.send_slices(&[b"cpu.load", &buffer]).unwrap(), 1);
    assert_eq!(publisher.send_slices(&[b"mem.free", b"1"]).unwrap(), 0);
    let big = vec![3u8; 100_000];
    publisher
        .send_slices(&[b"cpu.all", b"", &big, b"end"])
        .unwrap();
    let m = recv(&mut sub);
    assert_eq!(m.frames(), &[&b"cpu.load"[..], b"0.42"][..]);
    let m = recv(&mut sub);
    assert_eq!(m.frames(), &[&b"cpu.all"[..], b"", &big, b"end"][..]);
    nothing_more(&mut sub);

    for refused in [
        publisher.send_slices(&[]),
        publisher.send(Message::default()),
    ] {
        let err = refused.expect_err("an empty message was accepted");
        assert!(err.to_string().contains("at least one frame"), "{err}");
    }
}

/// A stalled peer: what the connection cannot take waits in the peer's queue and its
/// overflow buffer, which must hold copies of the bytes as they were at each call.
#[test]
fn send_slices_that_must_wait_in_the_queue_keep_the_bytes_of_their_call() {
    const N: usize = 1000;
    const SIZE: usize = 16 * 1024;
    let ctx = Context::new().unwrap();
    let options = SocketOptions {
        queue_capacity: 16,
        policy: OverflowPolicy::Buffer { max_bytes: 1 << 30 },
        ..SocketOptions::default()
    };
    let mut publisher = Publisher::with_options(&ctx, options).unwrap();
    let ep = publisher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut raw = raw_peer(&ep, "SUB");
    raw.write_all(&[
        0x04, 10, 9, b'S', b'U', b'B', b'S', b'C', b'R', b'I', b'B', b'E',
    ])
    .unwrap();
    assert!(publisher.wait_for_subscribers(1, WAIT));
    let mut buffer = vec![0u8; SIZE];
    for i in 0..N {
        buffer.fill(i as u8);
        buffer[..8].copy_from_slice(&(i as u64).to_le_bytes());
        assert_eq!(publisher.send_slices(&[b"t", &buffer]).unwrap(), 1);
    }
    let queued = publisher.peer_stats()[0].queue.map_or(0, |q| q.pushed);
    assert!(
        queued > 0,
        "16 MB never filled the connection: nothing was queued"
    );
    assert_eq!(publisher.stats().dropped, 0);

    raw.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut stream = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let deadline = Instant::now() + WAIT;
    while count_messages(&stream) < N && Instant::now() < deadline {
        if let Ok(n) = raw.read(&mut chunk) {
            assert!(n > 0, "the publisher closed the connection");
            stream.extend_from_slice(&chunk[..n]);
        }
    }
    let payloads = message_frames(&stream);
    assert_eq!(payloads.len(), N);
    for (i, frames) in payloads.iter().enumerate() {
        assert_eq!(frames.len(), 2, "message {i}");
        let (seq, rest) = frames[1].split_at(8);
        assert_eq!(u64::from_le_bytes(seq.try_into().unwrap()), i as u64);
        assert!(rest.iter().all(|&b| b == i as u8), "message {i} changed");
    }
}

/// The frames of each complete message in a ZMTP byte stream after its 64-byte greeting
/// (commands skipped).
pub fn message_frames(stream: &[u8]) -> Vec<Vec<&[u8]>> {
    use volley::wire::zmtp::{decode_frame, Decoded};
    let mut rest = stream.get(64..).unwrap_or_default();
    let mut messages = Vec::new();
    let mut frames = Vec::new();
    while let Ok(Decoded::Done(frame)) = decode_frame(rest, u64::MAX) {
        if !frame.header.kind.is_command() {
            frames.push(frame.body);
            if !frame.header.kind.more() {
                messages.push(std::mem::take(&mut frames));
            }
        }
        rest = &rest[frame.header.frame_len()..];
    }
    messages
}
