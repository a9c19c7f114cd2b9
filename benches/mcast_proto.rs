//! `cargo bench --bench mcast_proto`
//!
//! CPU cost of the multicast protocol layer alone (no sockets): 64-byte messages through
//! a `volley::proto::mcast::Sender` (packing into 1400-byte datagrams, sequencing,
//! heartbeat bookkeeping) and a `Receiver` (decode, validation, ordering, loss
//! accounting, one `Message` of `Bytes` frames per message), side by side in one run
//! with a hand-written baseline doing the minimum the same job needs: length-prefix the
//! messages into 1400-byte buffers, then split each buffer back into `Bytes` slices of
//! one shared copy. The ratio is what the protocol adds over bare framing; the issue's
//! 5 M msgs/s end-to-end target needs the protocol well above that.
//!
//! Groups (criterion reports elements = messages per second), each moving batches of
//! 1000 messages (one batch = one I/O-thread pass: queue all, then transmit all):
//! * `pack_unpack_64b`: `volley_best_effort`, `volley_reliable` (the sender also keeps
//!   every datagram in its retransmit buffer) and `baseline_length_prefix`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use volley::proto::mcast::{Receiver, ReceiverConfig, Sender, SenderConfig};

const BATCH: usize = 1000;
const SIZE: usize = 64;
const DATAGRAM: usize = 1400;

fn volley(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    reliable: bool,
) {
    let start = Instant::now();
    let mut sender = Sender::new(
        SenderConfig {
            reliable,
            ..SenderConfig::default()
        },
        1,
        start,
    )
    .unwrap();
    let mut receiver = Receiver::new(
        ReceiverConfig {
            reliable,
            seed: Some(1),
            ..ReceiverConfig::default()
        },
        start,
    )
    .unwrap();
    let from: SocketAddr = ([10, 0, 0, 1], 5000).into();
    let payload = [7u8; SIZE];
    let mut buf = vec![0u8; DATAGRAM];
    let mut now = start;
    c.bench_function(name, |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            for _ in 0..BATCH {
                sender.send_message(&[&payload[..]], now).unwrap();
            }
            while let Some(len) = sender.poll_transmit(now, &mut buf) {
                receiver.handle_datagram_bytes(now, Bytes::copy_from_slice(&buf[..len]), from);
            }
            let mut got = 0;
            while let Some((_, message)) = receiver.poll_message() {
                black_box(&message);
                got += 1;
            }
            assert_eq!(got, BATCH);
        })
    });
    let stats = receiver.stats().total();
    assert_eq!(stats.lost_messages, 0);
}

/// The same job by hand: `[u32 len][bytes]` records packed into 1400-byte buffers, each
/// buffer copied once into `Bytes` and cut into one `Vec<Bytes>` per message.
fn baseline(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let payload = [7u8; SIZE];
    let mut datagram = Vec::with_capacity(DATAGRAM);
    let mut out: Vec<Vec<Bytes>> = Vec::with_capacity(BATCH);
    c.bench_function("baseline_length_prefix", |b| {
        b.iter(|| {
            let unpack = |datagram: &[u8], out: &mut Vec<Vec<Bytes>>| {
                let bytes = Bytes::copy_from_slice(datagram);
                let mut at = 0;
                while at < bytes.len() {
                    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                    out.push(vec![bytes.slice(at + 4..at + 4 + len)]);
                    at += 4 + len;
                }
            };
            for _ in 0..BATCH {
                if datagram.len() + 4 + SIZE > DATAGRAM {
                    unpack(&datagram, &mut out);
                    datagram.clear();
                }
                datagram.extend_from_slice(&(SIZE as u32).to_le_bytes());
                datagram.extend_from_slice(&payload);
            }
            unpack(&datagram, &mut out);
            datagram.clear();
            assert_eq!(out.len(), BATCH);
            black_box(&out);
            out.clear();
        })
    });
}

fn pack_unpack(c: &mut Criterion) {
    let mut group = c.benchmark_group("pack_unpack_64b");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(3));
    volley(&mut group, "volley_best_effort", false);
    volley(&mut group, "volley_reliable", true);
    baseline(&mut group);
    group.finish();
}

criterion_group!(benches, pack_unpack);
criterion_main!(benches);
