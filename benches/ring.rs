//! `cargo bench --bench ring`
//!
//! Throughput of volley's lock-free rings (`volley::ring::{spsc, mpsc}`), side by side in
//! one run with `crossbeam_queue::ArrayQueue`, `crossbeam_channel::bounded` (used through
//! `try_send` / `try_recv`) and `rtrb` (SPSC only). Every ring holds 1024 items.
//!
//! Groups (criterion reports each in elements per second):
//! * `spsc_u64`, `spsc_64b`: one producer thread pushes N = 2^20 items (`u64`, or
//!   `[u8; 64]`), the bench thread pops them; both spin (`std::hint::spin_loop`) on
//!   full / empty. Timed from a spin handshake that starts both sides to the last pop;
//!   ring creation and thread start-up are outside the timing, and every contestant is
//!   timed by the same generic code. volley runs twice: `volley_busyspin` (DropNewest,
//!   `WaitStrategy::BusySpin`, the like-for-like setting since none of the others can
//!   park) and `volley_default` (the default `SpinThenPark`, where every push pays a
//!   wake-up check for a consumer that may be asleep).
//! * `mpsc_u64_2p`, `mpsc_64b_2p`: two producer threads push N/2 items each, the bench
//!   thread pops N. This machine has 2 cores, so 3 spinning threads would fight over
//!   them: in these two groups every contestant waits by spinning 64 times, then yielding
//!   (the two producers share one CPU). The interleaved summary's mpsc tables also show
//!   `volley_stamped`, the ring on the other core, `MpscCore::Stamped` (the default is
//!   `Published`), and its `mpsc_u64_2p_full` table runs the same contestants with a
//!   consumer that spends one `spin_loop` on each item it pops, so that the ring runs
//!   full: the case each core's design trades against the other.
//! * `single_thread`: one push then one pop on the bench thread (one element = one pair).
//! * `policy_nonfull`: the same push + pop on a never-full volley ring under each
//!   `OverflowPolicy` (BusySpin, so no wake-up checks are involved): the policy is applied
//!   only when the ring is full, so these should match. DropOldest is built on the
//!   stamped (MPSC) core, so it is also shown next to an mpsc ring; the `*_default_wait`
//!   lines show what the default `SpinThenPark` adds (under Block it adds a wake-up check
//!   to the pop side too).
//! * `batch`: the two-thread test moving runs of up to 64 items: volley's
//!   `push_batch` / `pop_batch` against rtrb's `write_chunk_uninit` / `read_chunk`.
//!
//! After the groups, an interleaved summary (`cargo bench --bench ring -- interleaved` runs
//! only it, in seconds; `-- interleaved_spsc_u64` only that table) runs the two-thread SPSC and MPSC contestants in turn, round after
//! round, and prints each one's median rate and volley's rate divided by each baseline's
//! rate within the same round: the ratios the targets are judged on. Criterion's
//! group-after-group order lets a change in machine load between groups pass for a
//! difference between rings; interleaving exposes every contestant to the same load.
//!
//! Placement: the bench thread (the consumer) is pinned to one CPU and every producer to
//! another, for every contestant alike (`VOLLEY_BENCH_PIN=0` turns it off). Unpinned, the
//! OS put a spinning pair on one CPU whenever other work ran, and runs fell 100-fold. In
//! the MPSC groups both producers share their CPU and take turns (they yield when the
//! ring is full); only the consumer has a CPU to itself.
//!
//! Any other load on the machine shows up as noise (the bench warns if the CPUs are busy
//! when it starts): a spinning side whose partner lost its CPU stalls for the whole time
//! slice. The interleaved summary therefore sets such runs aside (see `interleave`).
//! Two-thread SPSC runs of the Lamport-style rings (volley spsc, rtrb) are bimodal even
//! undisturbed: what we saw (counting empty and full polls in a scratch loop) is that runs
//! where the consumer keeps catching up with the producer (thousands of empty polls, every
//! item and tail store crossing cores on its own) settle around 100-140 Melem/s, and runs
//! where neither side waits much reach 200-330. Compare them within one run, and over
//! several runs. With the default criterion times the whole bench takes about 4 minutes;
//! `--warm-up-time 0.5 --measurement-time 1` brings it under 2.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use crossbeam_queue::ArrayQueue;
use volley::ring::{mpsc, spsc, ItemSize, MpscCore, OverflowPolicy, RingConfig, WaitStrategy};

/// Capacity of every ring.
const CAP: usize = 1024;
/// Items moved per iteration of a two-thread test.
const N: u64 = 1 << 20;
/// Producer threads in the MPSC groups.
const PRODUCERS: u64 = 2;
/// Items per batch in the `batch` group.
const BATCH: usize = 64;

/// An item type under test: built from a running number, which the consumer sums to check
/// that every item arrived exactly once.
trait Item: Copy + Send + ItemSize + 'static {
    fn make(i: u64) -> Self;
    fn key(&self) -> u64;
}

impl Item for u64 {
    #[inline(always)]
    fn make(i: u64) -> Self {
        i
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        *self
    }
}

/// A 64-byte message.
type Msg64 = [u8; 64];

impl Item for Msg64 {
    #[inline(always)]
    fn make(i: u64) -> Self {
        let mut m = [0u8; 64];
        m[..8].copy_from_slice(&i.to_le_bytes());
        m
    }
    #[inline(always)]
    fn key(&self) -> u64 {
        let mut k = [0u8; 8];
        k.copy_from_slice(&self[..8]);
        u64::from_le_bytes(k)
    }
}

/// The producing end of any contestant, reduced to a non-blocking push.
trait Tx<T>: Send {
    fn try_push(&mut self, item: T) -> Result<(), T>;
}

/// The consuming end of any contestant, reduced to a non-blocking pop.
trait Rx<T> {
    fn try_pop(&mut self) -> Option<T>;
}

impl<T: ItemSize + Send> Tx<T> for volley::ring::Producer<T> {
    #[inline(always)]
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.push(item).map_err(|e| e.into_inner())
    }
}

impl<T: ItemSize + Send> Tx<T> for volley::ring::MpscProducer<T> {
    #[inline(always)]
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.push(item).map_err(|e| e.into_inner())
    }
}

impl<T: ItemSize> Rx<T> for volley::ring::Consumer<T> {
    #[inline(always)]
    fn try_pop(&mut self) -> Option<T> {
        volley::ring::Consumer::try_pop(self).ok()
    }
}

impl<T: Send> Tx<T> for Arc<ArrayQueue<T>> {
    #[inline(always)]
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.push(item)
    }
}

impl<T> Rx<T> for Arc<ArrayQueue<T>> {
    #[inline(always)]
    fn try_pop(&mut self) -> Option<T> {
        self.pop()
    }
}

impl<T: Send> Tx<T> for crossbeam_channel::Sender<T> {
    #[inline(always)]
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.try_send(item).map_err(|e| e.into_inner())
    }
}

impl<T> Rx<T> for crossbeam_channel::Receiver<T> {
    #[inline(always)]
    fn try_pop(&mut self) -> Option<T> {
        self.try_recv().ok()
    }
}

impl<T: Send> Tx<T> for rtrb::Producer<T> {
    #[inline(always)]
    fn try_push(&mut self, item: T) -> Result<(), T> {
        self.push(item).map_err(|rtrb::PushError::Full(item)| item)
    }
}

impl<T> Rx<T> for rtrb::Consumer<T> {
    #[inline(always)]
    fn try_pop(&mut self) -> Option<T> {
        self.pop().ok()
    }
}

fn busy(policy: OverflowPolicy) -> RingConfig {
    RingConfig::with_policy(policy).wait(WaitStrategy::BusySpin)
}

fn volley_spsc<T: Item>() -> (volley::ring::Producer<T>, volley::ring::Consumer<T>) {
    spsc(CAP, busy(OverflowPolicy::DropNewest))
}

fn volley_spsc_default<T: Item>() -> (volley::ring::Producer<T>, volley::ring::Consumer<T>) {
    spsc(CAP, RingConfig::default())
}

fn volley_mpsc<T: Item>() -> (volley::ring::MpscProducer<T>, volley::ring::Consumer<T>) {
    mpsc(CAP, busy(OverflowPolicy::DropNewest))
}

fn volley_mpsc_stamped<T: Item>() -> (volley::ring::MpscProducer<T>, volley::ring::Consumer<T>) {
    mpsc(
        CAP,
        busy(OverflowPolicy::DropNewest).mpsc_core(MpscCore::Stamped),
    )
}

/// A consuming end that spends one `spin_loop` on every item it pops: a consumer slower
/// than its producers, so that the ring runs full.
struct SlowConsumer<C>(C);

impl<T, C: Rx<T>> Rx<T> for SlowConsumer<C> {
    #[inline(always)]
    fn try_pop(&mut self) -> Option<T> {
        let item = self.0.try_pop();
        if item.is_some() {
            spin_loop();
        }
        item
    }
}

/// `make`'s ring with a [`SlowConsumer`].
fn slow<P, C>(make: fn() -> (P, C)) -> (P, SlowConsumer<C>) {
    let (tx, rx) = make();
    (tx, SlowConsumer(rx))
}

fn volley_mpsc_default<T: Item>() -> (volley::ring::MpscProducer<T>, volley::ring::Consumer<T>) {
    mpsc(CAP, RingConfig::default())
}

fn array_queue<T: Item>() -> (Arc<ArrayQueue<T>>, Arc<ArrayQueue<T>>) {
    let q = Arc::new(ArrayQueue::new(CAP));
    (q.clone(), q)
}

fn channel<T: Item>() -> (crossbeam_channel::Sender<T>, crossbeam_channel::Receiver<T>) {
    crossbeam_channel::bounded(CAP)
}

fn rtrb_ring<T: Item>() -> (rtrb::Producer<T>, rtrb::Consumer<T>) {
    rtrb::RingBuffer::new(CAP)
}

/// How a side waits for room or for an item. Both sides of every contestant in a group
/// use the same one.
#[derive(Clone, Copy)]
enum Wait {
    /// `spin_loop` only: one thread per core.
    Spin,
    /// 64 `spin_loop`s, then `yield_now` between checks: more threads than cores.
    SpinYield,
}

struct Backoff {
    wait: Wait,
    spins: u32,
}

impl Backoff {
    #[inline(always)]
    fn new(wait: Wait) -> Self {
        Backoff { wait, spins: 0 }
    }

    #[inline(always)]
    fn snooze(&mut self) {
        match self.wait {
            Wait::Spin => spin_loop(),
            Wait::SpinYield => {
                if self.spins < 64 {
                    self.spins += 1;
                    spin_loop();
                } else {
                    thread::yield_now();
                }
            }
        }
    }
}

#[inline(always)]
fn push_until_done<T, P: Tx<T>>(tx: &mut P, mut item: T, wait: Wait) {
    let mut backoff = Backoff::new(wait);
    loop {
        match tx.try_push(item) {
            Ok(()) => return,
            Err(back) => {
                item = back;
                backoff.snooze();
            }
        }
    }
}

#[inline(always)]
fn pop_until_done<T, C: Rx<T>>(rx: &mut C, wait: Wait) -> T {
    let mut backoff = Backoff::new(wait);
    loop {
        if let Some(item) = rx.try_pop() {
            return item;
        }
        backoff.snooze();
    }
}

/// The start line of a multi-thread run: producers check in and wait (spinning, so that
/// no wake-up latency lands inside the timing); the consumer waits for all of them,
/// starts the clock and lets them go.
struct StartLine {
    ready: AtomicUsize,
    go: AtomicBool,
}

impl StartLine {
    fn new() -> Self {
        StartLine {
            ready: AtomicUsize::new(0),
            go: AtomicBool::new(false),
        }
    }

    fn producer_ready(&self, wait: Wait) {
        self.ready.fetch_add(1, Ordering::AcqRel);
        let mut backoff = Backoff::new(wait);
        while !self.go.load(Ordering::Acquire) {
            backoff.snooze();
        }
    }

    fn start(&self, producers: usize, wait: Wait) -> Instant {
        let mut backoff = Backoff::new(wait);
        while self.ready.load(Ordering::Acquire) < producers {
            backoff.snooze();
        }
        let t0 = Instant::now();
        self.go.store(true, Ordering::Release);
        t0
    }
}

/// Where the threads of a two-thread run are placed: the consumer (the bench thread) on
/// one CPU, every producer on another, the same for every contestant. Unpinned, the OS
/// may put a spinning pair on one CPU whenever other work runs (it balances by load, and a
/// spinner looks like load): the spinner then waits out the other's whole time slice for
/// every ring-full of items, and a run drops 100-fold (measured: 2 M/s instead of 250).
/// `VOLLEY_BENCH_PIN=0` turns pinning off to compare.
#[derive(Clone, Copy)]
struct Placement {
    consumer: Option<usize>,
    producers: Option<usize>,
}

impl Placement {
    fn get() -> Placement {
        static PLACEMENT: std::sync::OnceLock<(Option<usize>, Option<usize>)> =
            std::sync::OnceLock::new();
        let &(consumer, producers) = PLACEMENT.get_or_init(|| {
            let cpus = allowed_cpus();
            let off = std::env::var("VOLLEY_BENCH_PIN").is_ok_and(|v| v == "0");
            if off || cpus.len() < 2 {
                if !off {
                    eprintln!("note: fewer than 2 CPUs allowed; two-thread runs are not pinned");
                }
                (None, None)
            } else {
                (Some(cpus[0]), Some(cpus[1]))
            }
        });
        Placement {
            consumer,
            producers,
        }
    }
}

/// The CPUs this process may run on.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set;
    // sched_getaffinity(0, ..) fills it for the calling thread and writes nothing else.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        set
    };
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the number of bits in the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pins the calling thread to `cpu` (when given); the placement is part of the setup, so
/// a failure stops the bench rather than silently measuring something else.
fn pin(cpu: Option<usize>) {
    #[cfg(target_os = "linux")]
    if let Some(cpu) = cpu {
        // SAFETY: as in `allowed_cpus`; `cpu` came from the allowed set, so it is below
        // CPU_SETSIZE; sched_setaffinity(0, ..) changes only the calling thread.
        let ok = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
        assert!(ok, "cannot pin to CPU {cpu}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}

/// Sum of the keys `0..n`, which a run must deliver.
fn expected_sum(n: u64) -> u64 {
    n * (n - 1) / 2
}

/// `iters` runs of [`run_once`]; returns their total time.
fn run_threads<T, P, C>(
    iters: u64,
    n: u64,
    producers: u64,
    wait: Wait,
    make: impl Fn() -> (P, C),
    split: impl Fn(P) -> Vec<P>,
) -> Duration
where
    T: Item,
    P: Tx<T>,
    C: Rx<T>,
{
    (0..iters)
        .map(|_| run_once::<T, _, _>(n, producers, wait, &make, &split).elapsed)
        .sum()
}

/// What one two-thread run measured.
struct RunResult {
    /// From the start line to the last pop.
    elapsed: Duration,
    /// Whether another task took a CPU from a side during the run (see [`switches`]):
    /// with spinning sides, such a run measures the scheduler, not the ring.
    disturbed: bool,
}

/// One run: producers (`producers` clones of the producing end, each on its own thread,
/// each pushing its share of `n` items), the bench thread popping all `n`.
fn run_once<T, P, C>(
    n: u64,
    producers: u64,
    wait: Wait,
    make: &impl Fn() -> (P, C),
    split: &impl Fn(P) -> Vec<P>,
) -> RunResult
where
    T: Item,
    P: Tx<T>,
    C: Rx<T>,
{
    let share = n / producers;
    assert_eq!(share * producers, n);
    let place = Placement::get();
    pin(place.consumer);
    let (tx, mut rx) = make();
    let txs = split(tx);
    assert_eq!(txs.len() as u64, producers);
    let line = StartLine::new();
    let line = &line;
    thread::scope(|s| {
        let handles: Vec<_> = txs
            .into_iter()
            .enumerate()
            .map(|(p, mut tx)| {
                let first = p as u64 * share;
                s.spawn(move || {
                    pin(place.producers);
                    line.producer_ready(wait);
                    let before = switches();
                    for i in first..first + share {
                        push_until_done(&mut tx, T::make(i), wait);
                    }
                    switches() - before
                })
            })
            .collect();
        let t0 = line.start(producers as usize, wait);
        let before = switches();
        let mut sum = 0u64;
        for _ in 0..n {
            sum = sum.wrapping_add(pop_until_done(&mut rx, wait).key());
        }
        let elapsed = t0.elapsed();
        let consumer_switches = switches() - before;
        assert_eq!(sum, expected_sum(n), "items lost or duplicated");
        let producer_switches: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // Producers that share a CPU (MPSC) switch to each other when they yield, which
        // says nothing about other load: only the consumer, alone on its CPU, counts then.
        let disturbed = consumer_switches > 0 || (producers == 1 && producer_switches > 0);
        RunResult { elapsed, disturbed }
    })
}

/// Involuntary context switches of the calling thread so far: preemptions, and yields that
/// let another task run (Linux counts both there). 0 where unsupported.
fn switches() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `rusage` is plain data; getrusage fills it for the calling thread and
        // writes nothing else.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::getrusage(libc::RUSAGE_THREAD, &mut usage) != 0 {
                return 0;
            }
            usage
        };
        usage.ru_nivcsw as u64
    }
    #[cfg(not(target_os = "linux"))]
    0
}

fn two_thread_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(N));
    g.sampling_mode(SamplingMode::Flat);
    // Runs of this kind swing between a fast mode (the producer stays ahead, the consumer
    // streams) and a slow one (the consumer catches up, every item crosses cores on its
    // own): a longer measurement averages over more of both.
    g.measurement_time(Duration::from_secs(3));
    g
}

fn bench_spsc<T: Item>(g: &mut BenchmarkGroup<'_, WallTime>) {
    fn one<P>(p: P) -> Vec<P> {
        vec![p]
    }
    let w = Wait::Spin;
    g.bench_function("volley_busyspin", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, 1, w, volley_spsc::<T>, one))
    });
    g.bench_function("volley_default", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, 1, w, volley_spsc_default::<T>, one))
    });
    g.bench_function("arrayqueue", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, 1, w, array_queue::<T>, one))
    });
    g.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, 1, w, channel::<T>, one))
    });
    g.bench_function("rtrb", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, 1, w, rtrb_ring::<T>, one))
    });
}

fn bench_mpsc<T: Item>(g: &mut BenchmarkGroup<'_, WallTime>) {
    fn clones<P: Clone>(p: P) -> Vec<P> {
        (0..PRODUCERS).map(|_| p.clone()).collect()
    }
    let w = Wait::SpinYield;
    let p = PRODUCERS;
    g.bench_function("volley_busyspin", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, p, w, volley_mpsc::<T>, clones))
    });
    g.bench_function("volley_default", |b| {
        b.iter_custom(|iters| {
            run_threads::<T, _, _>(iters, N, p, w, volley_mpsc_default::<T>, clones)
        })
    });
    g.bench_function("arrayqueue", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, p, w, array_queue::<T>, clones))
    });
    g.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|iters| run_threads::<T, _, _>(iters, N, p, w, channel::<T>, clones))
    });
}

fn spsc_u64(c: &mut Criterion) {
    bench_spsc::<u64>(&mut two_thread_group(c, "spsc_u64"));
}

fn spsc_64b(c: &mut Criterion) {
    bench_spsc::<Msg64>(&mut two_thread_group(c, "spsc_64b"));
}

fn mpsc_u64_2p(c: &mut Criterion) {
    bench_mpsc::<u64>(&mut two_thread_group(c, "mpsc_u64_2p"));
}

fn mpsc_64b_2p(c: &mut Criterion) {
    bench_mpsc::<Msg64>(&mut two_thread_group(c, "mpsc_64b_2p"));
}

/// One push then one pop on the bench thread, on a ring that never holds more than one
/// item.
fn push_pop<P: Tx<u64>, C: Rx<u64>>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    make: impl Fn() -> (P, C),
) {
    let (mut tx, mut rx) = make();
    g.bench_function(name, |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(1);
            if tx.try_push(black_box(i)).is_err() {
                panic!("ring full");
            }
            match rx.try_pop() {
                Some(v) => black_box(v),
                None => panic!("ring empty"),
            }
        })
    });
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("single_thread");
    g.throughput(Throughput::Elements(1));
    push_pop(&mut g, "volley_spsc", volley_spsc::<u64>);
    push_pop(&mut g, "volley_spsc_default", volley_spsc_default::<u64>);
    push_pop(&mut g, "volley_mpsc", volley_mpsc::<u64>);
    push_pop(&mut g, "arrayqueue", array_queue::<u64>);
    push_pop(&mut g, "rtrb", rtrb_ring::<u64>);
    push_pop(&mut g, "crossbeam_channel", channel::<u64>);
    g.finish();
}

fn policy_nonfull(c: &mut Criterion) {
    let block = OverflowPolicy::Block { timeout: None };
    let buffer = OverflowPolicy::Buffer { max_bytes: 1 << 20 };
    let mut g = c.benchmark_group("policy_nonfull");
    g.throughput(Throughput::Elements(1));
    let policies = [
        ("drop_newest", OverflowPolicy::DropNewest),
        ("drop_oldest", OverflowPolicy::DropOldest),
        ("block", block),
        ("buffer", buffer),
    ];
    for (name, policy) in policies {
        push_pop(&mut g, &format!("spsc_{name}"), || {
            spsc::<u64>(CAP, busy(policy))
        });
    }
    // DropOldest runs on the stamped core: compare it with the same core under mpsc.
    for (name, policy) in [
        ("drop_newest", OverflowPolicy::DropNewest),
        ("drop_oldest", OverflowPolicy::DropOldest),
    ] {
        push_pop(&mut g, &format!("mpsc_{name}"), || {
            mpsc::<u64>(CAP, busy(policy))
        });
    }
    // What the default wait strategy (SpinThenPark) adds on top of the policy.
    push_pop(&mut g, "spsc_drop_newest_default_wait", || {
        spsc::<u64>(CAP, RingConfig::with_policy(OverflowPolicy::DropNewest))
    });
    push_pop(&mut g, "spsc_block_default_wait", || {
        spsc::<u64>(CAP, RingConfig::with_policy(block))
    });
    g.finish();
}

/// volley: the producer hands over runs of up to `BATCH` items with `push_batch`, the
/// consumer takes up to `BATCH` at a time with `pop_batch`.
fn volley_batch_run(iters: u64, n: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (mut tx, mut rx) = volley_spsc::<u64>();
        let line = StartLine::new();
        let line = &line;
        let place = Placement::get();
        pin(place.consumer);
        total += thread::scope(|s| {
            s.spawn(move || {
                pin(place.producers);
                line.producer_ready(Wait::Spin);
                let mut next = 0;
                while next < n {
                    let end = (next + BATCH as u64).min(n);
                    let done = tx.push_batch((next..end).map(u64::make));
                    next += done.pushed as u64;
                    if done.error.is_some() {
                        spin_loop();
                    }
                }
            });
            let t0 = line.start(1, Wait::Spin);
            let (mut got, mut sum) = (0, 0u64);
            while got < n {
                let k = rx.pop_batch(BATCH, |v| sum = sum.wrapping_add(v.key()));
                if k == 0 {
                    spin_loop();
                }
                got += k as u64;
            }
            let elapsed = t0.elapsed();
            assert_eq!(sum, expected_sum(n), "items lost or duplicated");
            elapsed
        });
    }
    total
}

/// rtrb: the same shape with `write_chunk_uninit(..).fill_from_iter(..)` and
/// `read_chunk(..)` consumed by value, each taking as many slots as are free, up to
/// `BATCH`.
fn rtrb_batch_run(iters: u64, n: u64) -> Duration {
    use rtrb::chunks::ChunkError;
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (mut tx, mut rx) = rtrb_ring::<u64>();
        let line = StartLine::new();
        let line = &line;
        let place = Placement::get();
        pin(place.consumer);
        total += thread::scope(|s| {
            s.spawn(move || {
                pin(place.producers);
                line.producer_ready(Wait::Spin);
                let mut next = 0;
                while next < n {
                    let want = (n - next).min(BATCH as u64) as usize;
                    let chunk = match tx.write_chunk_uninit(want) {
                        Ok(chunk) => Some(chunk),
                        Err(ChunkError::TooFewSlots(0)) => None,
                        Err(ChunkError::TooFewSlots(free)) => tx.write_chunk_uninit(free).ok(),
                    };
                    match chunk {
                        Some(chunk) => next += chunk.fill_from_iter((next..).map(u64::make)) as u64,
                        None => spin_loop(),
                    }
                }
            });
            let t0 = line.start(1, Wait::Spin);
            let (mut got, mut sum) = (0, 0u64);
            while got < n {
                let chunk = match rx.read_chunk(BATCH) {
                    Ok(chunk) => Some(chunk),
                    Err(ChunkError::TooFewSlots(0)) => None,
                    Err(ChunkError::TooFewSlots(ready)) => rx.read_chunk(ready).ok(),
                };
                match chunk {
                    Some(chunk) => {
                        got += chunk.len() as u64;
                        for v in chunk {
                            sum = sum.wrapping_add(v.key());
                        }
                    }
                    None => spin_loop(),
                }
            }
            let elapsed = t0.elapsed();
            assert_eq!(sum, expected_sum(n), "items lost or duplicated");
            elapsed
        });
    }
    total
}

fn batch(c: &mut Criterion) {
    let mut g = two_thread_group(c, "batch");
    g.bench_function("volley_busyspin", |b| {
        b.iter_custom(|iters| volley_batch_run(iters, N))
    });
    g.bench_function("rtrb_chunks", |b| {
        b.iter_custom(|iters| rtrb_batch_run(iters, N))
    });
    g.finish();
}

/// Busy and total jiffies of all CPUs, from the first line of `/proc/stat` (Linux only).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map_while(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Warns when other processes keep the CPUs busy: two spinning threads on a 2-core
/// machine then share cores with them, and the two-thread numbers mean little.
fn warn_if_busy() {
    let Some((busy0, total0)) = cpu_jiffies() else {
        return;
    };
    thread::sleep(Duration::from_millis(300));
    let Some((busy1, total1)) = cpu_jiffies() else {
        return;
    };
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy_cpus = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * cpus;
    if busy_cpus > 0.2 {
        eprintln!(
            "warning: {busy_cpus:.1} of {cpus} CPUs busy before the run; \
             two-thread results will be distorted"
        );
    }
}

fn config() -> Criterion {
    warn_if_busy();
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = spsc_u64, spsc_64b, mpsc_u64_2p, mpsc_64b_2p, single_thread, policy_nonfull, batch
}

/// Undisturbed rounds the interleaved comparison aims for.
const ROUNDS: usize = 25;
/// Items per run in the interleaved comparison: about 1 ms at 250 M/s, well inside a
/// scheduler time slice, so that a run on a loaded machine has a fair chance of being
/// undisturbed; thread start-up and ring creation stay outside the timing.
const N_ROUND: u64 = 1 << 18;
/// How long one table may keep running rounds to collect undisturbed ones.
const TABLE_BUDGET: Duration = Duration::from_secs(20);

/// One two-thread run of `N_ROUND` items through a fresh ring.
type Run = Box<dyn Fn() -> RunResult>;

fn rate(elapsed: Duration) -> f64 {
    N_ROUND as f64 / elapsed.as_secs_f64()
}

fn spsc_run<T: Item, P: Tx<T> + 'static, C: Rx<T> + 'static>(make: fn() -> (P, C)) -> Run {
    Box::new(move || run_once::<T, _, _>(N_ROUND, 1, Wait::Spin, &make, &|p| vec![p]))
}

fn mpsc_run<T: Item, P: Tx<T> + Clone + 'static, C: Rx<T> + 'static>(make: fn() -> (P, C)) -> Run {
    Box::new(move || {
        run_once::<T, _, _>(N_ROUND, PRODUCERS, Wait::SpinYield, &make, &|p| {
            (0..PRODUCERS).map(|_| p.clone()).collect()
        })
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The two-thread contestants of one table, run in turn, round after round, so that every
/// contestant meets the same phases of machine noise; the first contestant is volley.
///
/// Runs during which another task took a CPU from one of the sides are set aside: a
/// spinning pair stalls for the whole time slice of whatever runs in its place, so such a
/// run measures the scheduler (on this 2-vCPU host under load, rates swung 100-fold).
/// Rounds go on until every baseline has `ROUNDS` rounds in which both its run and
/// volley's were undisturbed, or the time budget is spent. Prints, per contestant, the
/// median rate of its undisturbed runs and their spread, the median over those paired
/// rounds of volley's rate divided by its rate in the same round, and how many runs were
/// kept; a contestant with fewer than 5 undisturbed pairs is shown over all its runs and
/// marked.
fn interleave(title: &str, contestants: Vec<(&str, Run)>) {
    let k = contestants.len();
    // rounds[r][i]: contestant i's run in round r, as (rate, disturbed).
    let mut rounds: Vec<Vec<(f64, bool)>> = Vec::new();
    // The rounds where volley's run and contestant i's run were both undisturbed.
    let paired = |rounds: &[Vec<(f64, bool)>], i: usize| -> Vec<(f64, f64)> {
        rounds
            .iter()
            .filter(|r| !r[0].1 && !r[i].1)
            .map(|r| (r[0].0, r[i].0))
            .collect()
    };
    let start = Instant::now();
    while (1..k).any(|i| paired(&rounds, i).len() < ROUNDS)
        && (start.elapsed() < TABLE_BUDGET || rounds.len() < ROUNDS)
    {
        let r = rounds.len();
        let mut round = vec![(0.0, false); k];
        for j in 0..k {
            // Rotate the order so no contestant always follows the same one.
            let i = (j + r) % k;
            let result = (contestants[i].1)();
            round[i] = (rate(result.elapsed), result.disturbed);
        }
        rounds.push(round);
    }
    println!(
        "\n{title}: {} interleaved rounds of {N_ROUND} items, medians over undisturbed runs",
        rounds.len()
    );
    println!(
        "{:<20} {:>10} {:>16} {:>16} {:>14}",
        "contestant", "Melem/s", "min-max", "volley / this", "runs kept"
    );
    for (i, (name, _)) in contestants.iter().enumerate() {
        let mut rates: Vec<f64> = rounds.iter().filter(|r| !r[i].1).map(|r| r[i].0).collect();
        let mut pairs = paired(&rounds, i);
        let mut flag = "";
        if pairs.len() < 5 {
            // Too few undisturbed runs to say anything: show everything, marked.
            rates = rounds.iter().map(|r| r[i].0).collect();
            pairs = rounds.iter().map(|r| (r[0].0, r[i].0)).collect();
            flag = " (ALL runs: too few undisturbed)";
        }
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<20} {:>10.1} {:>16} {:>16.2} {:>14}{flag}",
            name,
            median(rates.clone()) / 1e6,
            format!("{:.1}-{:.1}", lo / 1e6, hi / 1e6),
            median(pairs.iter().map(|(v, b)| v / b).collect()),
            format!("{}/{}", rates.len(), rounds.len()),
        );
    }
}

/// The table the targets are judged on; runs after criterion's groups unless a filter
/// that does not mention `interleaved` was given.
fn interleaved_summary() {
    let filtered = std::env::args()
        .skip(1)
        // Option values (`--measurement-time 1`) are numbers, not filters.
        .any(|a| !a.starts_with('-') && a.parse::<f64>().is_err() && !a.contains("interleaved"));
    if filtered {
        return;
    }
    // `interleaved_spsc_u64` (etc.) runs only that table.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.starts_with("interleaved_"))
        .collect();
    let wanted = |title: &str| picked.is_empty() || picked.iter().any(|a| a.ends_with(title));
    let interleave = |title: &str, contestants: Vec<(&str, Run)>| {
        if wanted(title) {
            interleave(title, contestants)
        }
    };
    interleave(
        "spsc_u64",
        vec![
            ("volley_busyspin", spsc_run::<u64, _, _>(volley_spsc::<u64>)),
            ("arrayqueue", spsc_run::<u64, _, _>(array_queue::<u64>)),
            ("rtrb", spsc_run::<u64, _, _>(rtrb_ring::<u64>)),
            ("crossbeam_channel", spsc_run::<u64, _, _>(channel::<u64>)),
        ],
    );
    interleave(
        "spsc_64b",
        vec![
            (
                "volley_busyspin",
                spsc_run::<Msg64, _, _>(volley_spsc::<Msg64>),
            ),
            ("arrayqueue", spsc_run::<Msg64, _, _>(array_queue::<Msg64>)),
            ("rtrb", spsc_run::<Msg64, _, _>(rtrb_ring::<Msg64>)),
        ],
    );
    interleave(
        "mpsc_u64_2p",
        vec![
            ("volley_busyspin", mpsc_run::<u64, _, _>(volley_mpsc::<u64>)),
            ("arrayqueue", mpsc_run::<u64, _, _>(array_queue::<u64>)),
            (
                "volley_stamped",
                mpsc_run::<u64, _, _>(volley_mpsc_stamped::<u64>),
            ),
            ("crossbeam_channel", mpsc_run::<u64, _, _>(channel::<u64>)),
        ],
    );
    interleave(
        "mpsc_u64_2p_full",
        vec![
            (
                "volley_busyspin",
                mpsc_run::<u64, _, _>(|| slow(volley_mpsc::<u64>)),
            ),
            (
                "arrayqueue",
                mpsc_run::<u64, _, _>(|| slow(array_queue::<u64>)),
            ),
            (
                "volley_stamped",
                mpsc_run::<u64, _, _>(|| slow(volley_mpsc_stamped::<u64>)),
            ),
        ],
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved_summary();
}
