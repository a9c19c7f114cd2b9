//! Loopback integration tests of push/pull load balancing between volley sockets, and
//! against raw ZMTP peers that stop reading.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};

use volley::io::Context;
use volley::ring::OverflowPolicy;
use volley::socket::{Message, Publisher, Puller, Pusher, RecvMode, SocketOptions, Subscriber};

#[path = "support/zmtp_peer.rs"]
mod zmtp_peer;
use zmtp_peer::{count_messages, first_frames, raw_peer};

const WAIT: Duration = Duration::from_secs(10);

fn job(n: usize) -> Message {
    Message::from_parts(["job".to_string(), n.to_string()])
}

fn job_number(m: &Message) -> usize {
    std::str::from_utf8(&m.frames()[1])
        .unwrap()
        .parse()
        .unwrap()
}

/// Receives from every puller until `total` messages arrived (or fails after `WAIT`);
/// returns the job numbers each one got.
#[track_caller]
fn drain(pullers: &mut [Puller], total: usize) -> Vec<Vec<usize>> {
    drain_checked(pullers, total, |_| {})
}

/// [`drain`], passing every message to `check` first.
#[track_caller]
fn drain_checked(
    pullers: &mut [Puller],
    total: usize,
    check: impl Fn(&Message),
) -> Vec<Vec<usize>> {
    let deadline = Instant::now() + WAIT;
    let mut got = vec![Vec::new(); pullers.len()];
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "only {:?} of {total} arrived",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for (i, p) in pullers.iter_mut().enumerate() {
            while let Some(m) = p.try_recv().unwrap() {
                check(&m);
                got[i].push(job_number(&m));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    got
}

#[track_caller]
fn nothing_more(pullers: &mut [Puller]) {
    for p in pullers {
        if let Some(m) = p.recv_timeout(Duration::from_millis(200)).unwrap() {
            panic!("unexpected message {:?}", m.frames());
        }
    }
}

/// Each of `jobs` arrived exactly once, over all pullers.
#[track_caller]
fn exactly_once(got: &[Vec<usize>], jobs: std::ops::Range<usize>) {
    let all: Vec<usize> = got.iter().flatten().copied().collect();
    let unique: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a message arrived twice");
    assert_eq!(unique, jobs.collect::<BTreeSet<_>>());
}

/// Options with `queue_capacity` and `Block { timeout: None }`.
fn blocking(queue_capacity: usize) -> SocketOptions {
    SocketOptions {
        queue_capacity,
        policy: OverflowPolicy::Block { timeout: None },
        ..SocketOptions::default()
    }
}

/// A three-frame job: `tag`, the number `n`, `payload`.
fn tagged_job(tag: impl Into<bytes::Bytes>, n: usize, payload: &bytes::Bytes) -> Message {
    Message::new(vec![
        tag.into(),
        bytes::Bytes::from(n.to_string()),
        payload.clone(),
    ])
}

fn pullers(ctx: &Context, n: usize, endpoint: &str) -> Vec<Puller> {
    pullers_with(ctx, n, endpoint, SocketOptions::default())
}

fn pullers_with(ctx: &Context, n: usize, endpoint: &str, options: SocketOptions) -> Vec<Puller> {
    (0..n)
        .map(|_| {
            let mut p = Puller::with_options(ctx, options.clone()).unwrap();
            p.connect(endpoint).unwrap();
            p
        })
        .collect()
}

/// Reads what the raw peers have, each into its own stream, until `done` says so;
/// fails after `WAIT`, showing how many messages each stream holds.
#[track_caller]
fn read_raw_until(
    raws: &mut [std::net::TcpStream],
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let mut streams = vec![Vec::new(); raws.len()];
    for raw in raws.iter() {
        raw.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
    }
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + WAIT;
    loop {
        for (raw, stream) in raws.iter_mut().zip(&mut streams) {
            while let Ok(n @ 1..) = raw.read(&mut buf) {
                stream.extend_from_slice(&buf[..n]);
            }
        }
        if done(&streams) {
            return streams;
        }
        assert!(
            Instant::now() < deadline,
            "messages arrived: {:?}",
            streams
                .iter()
                .map(|s| count_messages(s))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn two_pullers_share_the_load_and_each_message_arrives_once() {
    for (mode, slices) in [
        (RecvMode::Blocking, false),
        (RecvMode::BusyPoll, false),
        (RecvMode::Blocking, true),
    ] {
        share_the_load(mode, slices);
    }
}

/// `slices`: the pusher sends with `send_slices` from one buffer it rewrites.
fn share_the_load(mode: RecvMode, slices: bool) {
    const N: usize = 2000;
    let ctx = Context::new().unwrap();
    let mut pusher = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let options = SocketOptions {
        recv_mode: mode,
        ..SocketOptions::default()
    };
    let mut workers = pullers_with(&ctx, 2, &ep, options);
    assert!(pusher.wait_for_peers(2, WAIT));
    let mut number = String::new();
    for n in 0..N {
        let taken = if slices {
            number.clear();
            number.push_str(&n.to_string());
            pusher.send_slices(&[b"job", number.as_bytes()]).unwrap()
        } else {
            pusher.send(job(n)).unwrap()
        };
        assert!(taken, "job {n} was not taken");
    }
    let got = drain(&mut workers, N);
    nothing_more(&mut workers);
    exactly_once(&got, 0..N);
    // Neither is full on loopback with default queues, so the turns alternate exactly.
    assert_eq!(
        got[0].len(),
        N / 2,
        "{:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(got[1].len(), N / 2);
    // Each pusher's messages arrive in the order they were sent.
    for g in &got {
        assert!(g.windows(2).all(|w| w[0] < w[1]), "out of order: {g:?}");
    }
    let stats = pusher.stats();
    assert_eq!(stats.messages_out, N as u64);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.peers, 2);
    let taken: u64 = workers.iter().map(|w| w.stats().messages_in).sum();
    assert_eq!(taken, N as u64);
}

#[test]
fn pullers_bind_over_ipc_and_tcp_and_a_pusher_connects_to_both() {
    let ctx = Context::new().unwrap();
    let dir = std::env::temp_dir().join(format!("volley-pushpull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let mut a = Puller::with_options(&ctx, SocketOptions::default()).unwrap();
    let ipc = a.bind(&format!("ipc://{}", path.display())).unwrap();
    let mut b = Puller::with_options(&ctx, SocketOptions::default()).unwrap();
    let tcp = b.bind("tcp://127.0.0.1:0").unwrap();
    let mut pusher = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
    pusher.connect(&ipc.to_string()).unwrap();
    pusher.connect(&tcp.to_string()).unwrap();
    assert!(pusher.wait_for_peers(2, WAIT));
    for n in 0..10 {
        assert!(pusher.send(job(n)).unwrap());
    }
    let mut workers = [a, b];
    let got = drain(&mut workers, 10);
    exactly_once(&got, 0..10);
    assert_eq!((got[0].len(), got[1].len()), (5, 5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_puller_that_leaves_gets_nothing_more_and_the_other_takes_its_share() {
    let ctx = Context::new().unwrap();
    let mut pusher = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut workers = pullers(&ctx, 2, &ep);
    assert!(pusher.wait_for_peers(2, WAIT));
    for n in 0..100 {
        assert!(pusher.send(job(n)).unwrap());
    }
    let got = drain(&mut workers, 100);
    exactly_once(&got, 0..100);
    assert!(got.iter().all(|g| !g.is_empty()), "{got:?}");

    drop(workers.pop());
    let deadline = Instant::now() + WAIT;
    while pusher.peer_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed puller is still a peer"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for n in 100..300 {
        assert!(pusher.send(job(n)).unwrap());
    }
    let got = drain(&mut workers, 200);
    nothing_more(&mut workers);
    exactly_once(&got, 100..300);
    assert_eq!(pusher.stats().dropped, 0);
}

#[test]
fn with_no_puller_connected_messages_are_dropped_and_counted_or_wait_under_block() {
    let ctx = Context::new().unwrap();
    let mut pusher = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    for n in 0..5 {
        assert!(!pusher.send(job(n)).unwrap());
    }
    assert_eq!(pusher.stats().dropped, 5);
    // A puller that connects now gets only what is sent from now on.
    let mut workers = pullers(&ctx, 1, &ep);
    assert!(pusher.wait_for_peers(1, WAIT));
    assert!(pusher.send(job(5)).unwrap());
    let got = drain(&mut workers, 1);
    assert_eq!(got, [[5]]);
    nothing_more(&mut workers);

    // Block waits for a peer up to its timeout, then drops and counts.
    let options = SocketOptions {
        policy: OverflowPolicy::Block {
            timeout: Some(Duration::from_millis(50)),
        },
        ..SocketOptions::default()
    };
    let mut blocking = Pusher::with_options(&ctx, options).unwrap();
    let started = Instant::now();
    assert!(!blocking.send(job(0)).unwrap());
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(blocking.stats().dropped, 1);
}

#[test]
fn udp_and_pub_sub_peers_are_refused() {
    let ctx = Context::new().unwrap();
    let mut pusher = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
    assert!(pusher.bind("udp://239.1.2.3:5000").is_err());
    let mut puller = Puller::with_options(&ctx, SocketOptions::default()).unwrap();
    assert!(puller.connect("udp://239.1.2.3:5000").is_err());

    // A SUB cannot talk to a PUSH, nor a PUB to a PULL: the handshake refuses them.
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut sub = Subscriber::with_options(&ctx, SocketOptions::default()).unwrap();
    sub.connect(&ep).unwrap();
    sub.subscribe(b"").unwrap();
    let ep = puller.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut publisher = Publisher::with_options(&ctx, SocketOptions::default()).unwrap();
    publisher.connect(&ep).unwrap();
    let deadline = Instant::now() + WAIT;
    while pusher.stats().protocol_errors == 0 || puller.stats().protocol_errors == 0 {
        assert!(
            Instant::now() < deadline,
            "a mismatched peer was not refused"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(pusher.peer_count(), 0);
    assert!(!pusher.send(job(0)).unwrap());
}

/// Two pullers that stop reading: once both are full, DropNewest drops and counts, and
/// every message is accounted for: sent == delivered to one of them + dropped.
#[test]
fn when_every_puller_is_full_drop_newest_drops_and_counts_each_message() {
    const N: usize = 3000;
    let ctx = Context::new().unwrap();
    let options = SocketOptions {
        queue_capacity: 16,
        policy: OverflowPolicy::DropNewest,
        ..SocketOptions::default()
    };
    let mut pusher = Pusher::with_options(&ctx, options).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut raws = [raw_peer(&ep, "PULL"), raw_peer(&ep, "PULL")];
    assert!(pusher.wait_for_peers(2, WAIT));
    let payload = bytes::Bytes::from(vec![1u8; 16 * 1024]);
    let mut taken = 0;
    for _ in 0..N {
        let m = Message::new(vec![bytes::Bytes::from_static(b"t"), payload.clone()]);
        taken += usize::from(pusher.send(m).unwrap());
    }
    let dropped = pusher.stats().dropped as usize;
    assert!(dropped > 0, "48 MB never filled both queues");
    assert_eq!(taken + dropped, N);
    // Both peers' queues filled before anything was dropped: each holds its share.
    let queues: Vec<_> = pusher
        .peer_stats()
        .iter()
        .map(|p| p.queue.unwrap())
        .collect();
    assert!(queues.iter().all(|q| q.dropped_newest > 0), "{queues:?}");

    // Now read everything the pusher can still deliver, from both.
    let streams = read_raw_until(&mut raws, |streams| {
        let delivered: usize = streams.iter().map(|s| count_messages(s)).sum();
        delivered + dropped >= N && pusher.flush(Duration::from_millis(1))
    });
    let delivered: Vec<usize> = streams.iter().map(|s| count_messages(s)).collect();
    assert!(delivered.iter().all(|&d| d > 0), "{delivered:?}");
    assert_eq!(
        delivered.iter().sum::<usize>() + dropped,
        N,
        "{delivered:?}"
    );
    assert_eq!(pusher.stats().messages_out as usize, taken);
}

/// Block between volley sockets: every message arrives exactly once, none dropped at
/// either end.
#[test]
fn block_to_volley_pullers_delivers_every_message_once() {
    const N: usize = 5000;
    let ctx = Context::new().unwrap();
    let options = blocking(8);
    let mut pusher = Pusher::with_options(&ctx, options).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    // The pullers' own queues have a policy of their own (DropNewest: the I/O thread that
    // fills them never waits), which is not what this test is about: room for every
    // message keeps them from dropping however late the receiving thread runs. With the
    // default 1000, a receiving thread that slept through 1000 arrivals on a loaded host
    // dropped 64 messages there (counted), failing this test.
    let room = SocketOptions {
        queue_capacity: N,
        ..SocketOptions::default()
    };
    let mut workers = pullers_with(&ctx, 2, &ep, room);
    assert!(pusher.wait_for_peers(2, WAIT));
    let receiver = std::thread::spawn(move || {
        let got = drain_checked(&mut workers, N, |m| {
            let n = job_number(m);
            let fill = if n % 2 == 1 { n as u8 } else { 7 };
            assert!(m.frames()[2].iter().all(|&b| b == fill), "job {n} changed");
        });
        (got, workers)
    });
    let payload = bytes::Bytes::from(vec![7u8; 4096]);
    let mut buffer = vec![0u8; 4096];
    for n in 0..N {
        // Every other job from a rewritten buffer: through the peers' queues (8 deep)
        // too, which must hold copies of what it held at the call.
        if n % 2 == 1 {
            buffer.fill(n as u8);
            let (tag, number) = (n.to_string(), n.to_string());
            assert!(pusher
                .send_slices(&[tag.as_bytes(), number.as_bytes(), &buffer])
                .unwrap());
        } else {
            assert!(pusher.send(tagged_job(n.to_string(), n, &payload)).unwrap());
        }
    }
    let (got, workers) = receiver.join().unwrap();
    exactly_once(&got, 0..N);
    assert_eq!(pusher.stats().dropped, 0);
    assert!(workers.iter().all(|w| w.stats().dropped == 0));
}

/// The job number of each message in a ZMTP stream read from a raw PULL peer, for
/// messages whose first frame is the number.
fn job_numbers(stream: &[u8]) -> Vec<usize> {
    first_frames(stream)
        .into_iter()
        .map(|f| std::str::from_utf8(f).unwrap().parse().unwrap())
        .collect()
}

/// Two PULL peers that read nothing until the pusher has had to wait for room: Block
/// holds the sender (it stops making progress), and once the peers read, every message
/// arrives exactly once and nothing was dropped.
#[test]
fn block_waits_for_room_at_a_full_peer_and_loses_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // 128 MB: far more than two loopback connections' socket buffers hold.
    const N: usize = 2000;
    let ctx = Context::new().unwrap();
    let options = blocking(8);
    let mut pusher = Pusher::with_options(&ctx, options).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut raws = [raw_peer(&ep, "PULL"), raw_peer(&ep, "PULL")];
    assert!(pusher.wait_for_peers(2, WAIT));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let payload = bytes::Bytes::from(vec![5u8; 64 * 1024]);
            for n in 0..N {
                let m = Message::new(vec![bytes::Bytes::from(n.to_string()), payload.clone()]);
                assert!(pusher.send(m).unwrap());
                sent.store(n + 1, Ordering::Release);
            }
            pusher
        })
    };
    // The sender is held once it stops making progress short of N.
    let deadline = Instant::now() + WAIT;
    let mut progress = (usize::MAX, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = sent.load(Ordering::Acquire);
        assert!(
            now < N,
            "all {N} messages sent while both peers read nothing"
        );
        assert!(Instant::now() < deadline, "the sender never stopped");
        if now != progress.0 {
            progress = (now, Instant::now());
        } else if progress.1.elapsed() >= Duration::from_millis(200) {
            break;
        }
    }
    let held_at = progress.0;

    let streams = read_raw_until(&mut raws, |streams| {
        streams.iter().map(|s| count_messages(s)).sum::<usize>() >= N
    });
    let mut pusher = sender.join().unwrap();
    let got: Vec<Vec<usize>> = streams.iter().map(|s| job_numbers(s)).collect();
    exactly_once(&got, 0..N);
    assert!(got.iter().all(|g| g.windows(2).all(|w| w[0] < w[1])));
    let stats = pusher.stats();
    assert_eq!(stats.dropped, 0);
    // Held once at least, for the 200 ms seen above at least.
    assert!(
        stats.blocked > 0 && stats.blocked_time >= Duration::from_millis(200),
        "held at {held_at} of {N}, but {stats:?}"
    );
}

#[test]
fn a_puller_takes_from_every_pusher_each_in_order() {
    const N: usize = 500;
    let ctx = Context::new().unwrap();
    let mut puller = Puller::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = puller.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut pushers: Vec<Pusher> = (0..2)
        .map(|_| {
            let mut p = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
            p.connect(&ep).unwrap();
            assert!(p.wait_for_peers(1, WAIT));
            p
        })
        .collect();
    for n in 0..N {
        for (i, p) in pushers.iter_mut().enumerate() {
            assert!(p.send(job(i * N + n)).unwrap());
        }
    }
    let got = drain(std::slice::from_mut(&mut puller), 2 * N);
    exactly_once(&got, 0..2 * N);
    for i in 0..2 {
        let from: Vec<usize> = got[0].iter().copied().filter(|j| j / N == i).collect();
        assert!(
            from.windows(2).all(|w| w[0] < w[1]),
            "pusher {i} out of order"
        );
    }
    assert_eq!(puller.peer_stats().len(), 2);
    assert_eq!(puller.stats().messages_in, 2 * N as u64);
}

// ---- the `volley push` / `volley pull` command line ----

fn volley_cli(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the volley CLI")
}

/// Waits (bounded) for `child` to exit 0 and returns its stdout lines.
#[track_caller]
fn cli_output(mut child: std::process::Child) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the CLI did not exit; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cli_pulls_share_the_jobs_of_a_library_pusher() {
    let ctx = Context::new().unwrap();
    let mut pusher = Pusher::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let pulls: Vec<_> = (0..2)
        .map(|_| volley_cli(&["pull", &ep, "--count", "5", "--timeout", "10"]))
        .collect();
    assert!(
        pusher.wait_for_peers(2, WAIT),
        "the CLI pullers did not connect"
    );
    for n in 0..10 {
        assert!(pusher.send(job(n)).unwrap());
    }
    let mut all = Vec::new();
    for pull in pulls {
        let lines = cli_output(pull);
        assert_eq!(lines.len(), 5, "{lines:?}");
        all.extend(lines);
    }
    all.sort();
    let mut want: Vec<String> = (0..10).map(|n| format!("job\t{n}")).collect();
    want.sort();
    assert_eq!(all, want);
}

#[test]
fn cli_push_connects_to_a_library_puller() {
    let ctx = Context::new().unwrap();
    let mut puller = Puller::with_options(&ctx, SocketOptions::default()).unwrap();
    let ep = puller.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let push = volley_cli(&["push", "--connect", &ep, "--count", "20", "--size", "4"]);
    let mut got = Vec::new();
    for _ in 0..20 {
        let m = puller
            .recv_timeout(WAIT)
            .unwrap()
            .expect("a pushed message");
        assert_eq!(m.frames().len(), 1);
        got.push(String::from_utf8(m.frames()[0].to_vec()).unwrap());
    }
    let want: Vec<String> = (0..20).map(|n| format!("{n:.<4}")).collect();
    assert_eq!(got, want);
    assert!(cli_output(push).is_empty());
}

/// One puller that stops reading and one that keeps up, under Block: once the stalled
/// one is full, everything goes to the other; nothing is dropped and nothing waits on
/// the stalled peer for good.
#[test]
fn block_skips_a_stalled_puller_and_feeds_the_live_one() {
    const N: usize = 2000;
    let ctx = Context::new().unwrap();
    let options = blocking(16);
    let mut pusher = Pusher::with_options(&ctx, options).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut stalled = raw_peer(&ep, "PULL");
    assert!(pusher.wait_for_peers(1, WAIT));
    // Its inbound queue holds every message: what it does not get is at the stalled one.
    let live_options = SocketOptions {
        queue_capacity: 4 * N,
        ..SocketOptions::default()
    };
    let mut live = Puller::with_options(&ctx, live_options).unwrap();
    live.connect(&ep).unwrap();
    assert!(pusher.wait_for_peers(2, WAIT));
    let payload = bytes::Bytes::from(vec![3u8; 16 * 1024]);
    for n in 0..N {
        let m = tagged_job(&b"job"[..], n, &payload);
        assert!(pusher.send(m).unwrap());
    }
    assert_eq!(pusher.stats().dropped, 0);
    stalled
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut live_got = Vec::new();
    let mut stream = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + WAIT;
    while count_messages(&stream) + live_got.len() < N {
        assert!(
            Instant::now() < deadline,
            "stalled {} + live {} of {N}",
            count_messages(&stream),
            live_got.len()
        );
        while let Some(m) = live.try_recv().unwrap() {
            live_got.push(job_number(&m));
        }
        if let Ok(n @ 1..) = stalled.read(&mut buf) {
            stream.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(count_messages(&stream) + live_got.len(), N);
    assert!(live_got.windows(2).all(|w| w[0] < w[1]));
    // The stalled peer holds at most its queue plus a session's and a socket's worth.
    assert!(live_got.len() > N / 2, "live got only {}", live_got.len());
    assert_eq!(live.stats().dropped, 0);
}

#[test]
fn block_with_a_timeout_drops_and_counts_when_every_puller_stays_full() {
    let ctx = Context::new().unwrap();
    let options = SocketOptions {
        queue_capacity: 4,
        policy: OverflowPolicy::Block {
            timeout: Some(Duration::from_millis(20)),
        },
        ..SocketOptions::default()
    };
    let mut pusher = Pusher::with_options(&ctx, options).unwrap();
    let ep = pusher.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let _stalled = raw_peer(&ep, "PULL");
    assert!(pusher.wait_for_peers(1, WAIT));
    let payload = bytes::Bytes::from(vec![3u8; 64 * 1024]);
    let mut refused = 0;
    for _ in 0..200 {
        let m = Message::new(vec![bytes::Bytes::from_static(b"t"), payload.clone()]);
        if !pusher.send(m).unwrap() {
            refused += 1;
        }
        if refused == 3 {
            break;
        }
    }
    assert_eq!(refused, 3, "12 MB never filled the stalled peer");
    assert_eq!(pusher.stats().dropped, 3);
}

/// Block at the puller: its full queue pauses reading, TCP's flow control fills up, and
/// the pusher (Block too) waits. Everything arrives once, in order, and nothing is dropped
/// anywhere; both ends show the wait in their stats.
#[test]
fn a_puller_under_block_holds_its_pusher_back_and_loses_nothing() {
    hold_back(RecvMode::Blocking);
}

/// The same with a busy-polling puller, which reads its connection itself: the I/O
/// thread, which would otherwise read it when the application is elsewhere, leaves it
/// alone, and the puller's reads pace the pusher.
#[test]
fn a_busy_polling_puller_under_block_holds_its_pusher_back_and_loses_nothing() {
    hold_back(RecvMode::BusyPoll);
}

#[track_caller]
fn hold_back(recv_mode: RecvMode) {
    // 40 MB: well past what the connection's kernel buffers and the pusher's session
    // can hold while the receiving thread sleeps, so the pusher has to wait.
    const N: usize = 10_000;
    let ctx = Context::new().unwrap();
    let block = blocking(16);
    let mut puller = Puller::with_options(
        &ctx,
        SocketOptions {
            recv_mode,
            ..block.clone()
        },
    )
    .unwrap();
    let ep = puller.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let mut pusher = Pusher::with_options(&ctx, block).unwrap();
    pusher.connect(&ep).unwrap();
    assert!(pusher.wait_for_peers(1, WAIT));
    let sender = std::thread::spawn(move || {
        let payload = bytes::Bytes::from(vec![7u8; 4096]);
        for n in 0..N {
            let m = tagged_job(&b"job"[..], n, &payload);
            assert!(pusher.send(m).unwrap(), "job {n} was not sent");
        }
        pusher
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        match puller.recv_timeout(WAIT).unwrap() {
            Some(m) => got.push(job_number(&m)),
            None => panic!("only {} of {N} arrived", got.len()),
        }
    }
    let mut pusher = sender.join().unwrap();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    let (sent, taken) = (pusher.stats(), puller.stats());
    assert_eq!((sent.dropped, taken.dropped), (0, 0));
    if recv_mode == RecvMode::Blocking {
        assert!(
            taken.blocked >= 1 && taken.blocked_time > Duration::ZERO,
            "the puller never paused: {taken:?}"
        );
    }
    assert!(sent.blocked >= 1, "the pusher never waited: {sent:?}");
    nothing_more(&mut [puller]);
}

/// Two pushers into one paused puller: each one's jobs arrive complete and in order, the
/// paused reads taking turns, so neither is starved.
#[test]
fn a_puller_under_block_takes_from_every_pusher_in_turn() {
    const N: usize = 3000;
    let ctx = Context::new().unwrap();
    let block = blocking(8);
    let mut puller = Puller::with_options(&ctx, block.clone()).unwrap();
    let ep = puller.bind("tcp://127.0.0.1:0").unwrap().to_string();
    let senders: Vec<_> = (0..2)
        .map(|who| {
            let mut pusher = Pusher::with_options(&ctx, block.clone()).unwrap();
            pusher.connect(&ep).unwrap();
            assert!(pusher.wait_for_peers(1, WAIT));
            std::thread::spawn(move || {
                let payload = bytes::Bytes::from(vec![who as u8; 4096]);
                for n in 0..N {
                    let m = tagged_job(who.to_string(), n, &payload);
                    assert!(pusher.send(m).unwrap());
                }
                pusher
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut got = [Vec::new(), Vec::new()];
    while got[0].len() + got[1].len() < 2 * N {
        let m = puller
            .recv_timeout(WAIT)
            .unwrap()
            .unwrap_or_else(|| panic!("only {} and {} arrived", got[0].len(), got[1].len()));
        let who: usize = std::str::from_utf8(&m.frames()[0])
            .unwrap()
            .parse()
            .unwrap();
        got[who].push(job_number(&m));
    }
    for s in senders {
        assert_eq!(s.join().unwrap().stats().dropped, 0);
    }
    for g in &got {
        assert_eq!(*g, (0..N).collect::<Vec<_>>());
    }
    assert_eq!(puller.stats().dropped, 0);
}

#[test]
fn a_receiving_socket_refuses_a_block_timeout_and_multicast_under_block() {
    let ctx = Context::new().unwrap();
    let timed = SocketOptions {
        policy: OverflowPolicy::Block {
            timeout: Some(Duration::from_millis(5)),
        },
        ..SocketOptions::default()
    };
    let err = Puller::with_options(&ctx, timed.clone()).unwrap_err();
    assert!(err.to_string().contains("timeout: None"), "{err}");
    assert!(Subscriber::with_options(&ctx, timed).is_err());
    let block = SocketOptions {
        policy: OverflowPolicy::Block { timeout: None },
        ..SocketOptions::default()
    };
    let mut sub = Subscriber::with_options(&ctx, block).unwrap();
    let err = sub
        .bind("udp://239.255.7.9:47219?iface=127.0.0.1")
        .unwrap_err();
    assert!(err.to_string().contains("multicast"), "{err}");
}

/// `volley push` into `volley pull`, both with their defaults (Block), while nobody reads
/// the pull's output: its stdout pipe fills, so it stops receiving, its queue fills, and
/// the push is held back through TCP. Every message is printed once, in order, and the
/// pull reports nothing dropped.
#[test]
fn cli_push_into_a_cli_pull_whose_output_stalls_loses_nothing() {
    const N: usize = 20_000;
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("tcp://{}", probe.local_addr().unwrap());
    drop(probe);
    let push = volley_cli(&["push", &ep, "--count", &N.to_string(), "--size", "1024"]);
    let pull = std::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["pull", &ep, "--count", &N.to_string(), "--timeout", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // 20 MB of output against a 64 KB pipe: the pull blocks on its stdout long before
    // the push is done.
    std::thread::sleep(Duration::from_millis(500));
    let out = pull.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}; stderr: {stderr}", out.status);
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), N, "stderr: {stderr}");
    for (n, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{n}.")),
            "line {n} is {}",
            &line[..line.len().min(20)]
        );
    }
    assert!(!stderr.contains("dropped"), "{stderr}");
    cli_output(push);
}
