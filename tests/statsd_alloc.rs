//! The StatsD hot path allocates nothing once warm: a counting global allocator (this
//! file is its own test binary so nothing else shares the counter) watches the calling
//! thread while it sends metrics of every type, tagged and not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::time::Duration;

use volley::statsd::{Client, Flavour, Metric};

struct Counting;

thread_local! {
    /// Allocations made by this thread (the sender thread's own are not counted).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn send_all(client: &Client, round: u64) {
    let tags = [("route", "/login"), ("code", "200")];
    let i = round as i64;
    let results = [
        client.count("requests", i),
        client.send(Metric::count("requests", 1).tags(&tags)),
        client.send(Metric::count("sampled", 1).sample_rate(0.5)),
        client.gauge("queue", i as f64 * 0.5),
        client.gauge("queue", -3.25),
        client.timing("latency", Duration::from_micros(round * 7)),
        client.timing_ms("latency", 1.5),
        client.set("users", "alice"),
        client.send(Metric::gauge("tagged", 2.0).tags(&tags)),
    ];
    for r in results {
        r.unwrap();
    }
    match client.flavour() {
        Flavour::DogStatsd => {
            client.histogram("h", 1.25).unwrap();
            client.distribution("d", 2.5).unwrap();
            client
                .send(
                    Metric::distribution("d", 1.0)
                        .tags(&tags)
                        .container_id("c1"),
                )
                .unwrap();
        }
        _ => client.gauge_delta("queue", -1.0).unwrap(),
    }
    // A refused metric allocates nothing either.
    assert!(client.count("bad|name", 1).is_err());
}

#[test]
fn zero_allocations_per_metric_once_warm() {
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = daemon.local_addr().unwrap().to_string();
    for flavour in [Flavour::Etsy, Flavour::DogStatsd, Flavour::Telegraf] {
        let client = Client::builder(&addr)
            .flavour(flavour)
            .prefix("app")
            .tag("env", "test")
            .queue_capacity(1 << 16)
            .build()
            .unwrap();
        // Warm-up: thread-locals (sampling state, wake-up counter) are set on first use.
        for round in 0..10 {
            send_all(&client, round);
        }
        let before = allocations();
        let rounds = 2_000;
        for round in 0..rounds {
            send_all(&client, round);
        }
        let during = allocations() - before;
        let stats = client.stats();
        assert_eq!(
            during,
            0,
            "{flavour:?}: {during} allocations for {} metric calls",
            rounds * 11
        );
        assert_eq!(
            stats.dropped, 0,
            "{flavour:?}: the queue must have taken them all"
        );
        assert!(stats.accepted >= rounds * 9);
        // The counter does see allocations on this thread: a line longer than a queue
        // slot is boxed (and counted as spilled).
        let long = "x".repeat(400);
        let before = allocations();
        client.count(&long, 1).unwrap();
        assert!(
            allocations() > before,
            "{flavour:?}: the spill must be seen"
        );
        assert_eq!(client.stats().spilled, 1);
    }
}
