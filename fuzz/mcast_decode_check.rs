// The checks of the `mcast_decode` fuzz target, shared (through `include!`) with the
// stable-toolchain smoke run in tests/fuzz_smoke.rs, so both exercise the same code.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use volley::proto::mcast::{Receiver, ReceiverConfig, Sender, SenderConfig};
use volley::wire::mcast::{decode, Frame, MessageFrames, PackedMessages, FRAME_HEADER_LEN};

/// Reassembly limit and receive window of the fuzzed receiver: small enough that the
/// fuzzer reaches both.
const MAX_MESSAGE: usize = 64 * 1024;
const WINDOW: usize = 64;

/// The whole check for one input; panics on any violation.
///
/// Input layout: the first byte selects the mode, the rest is datagrams.
/// - bit 0: the receiver (and sender) run in reliable mode;
/// - bit 1: a real sender's datagrams (heartbeat, packed, fragments) are fed to the
///   receiver before and after the fuzzed ones, from the same source address, so that
///   fuzzed datagrams land in a live session;
/// - bit 2: the rest is a sequence of datagrams, each preceded by its length (u16
///   little-endian; the last one may be cut short); otherwise the rest is one datagram.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let datagrams = split(mode, rest);
    for datagram in &datagrams {
        decode_raw(datagram);
    }
    drive(mode, &datagrams);
}

fn split(mode: u8, mut rest: &[u8]) -> Vec<&[u8]> {
    if mode & 0b100 == 0 {
        return vec![rest];
    }
    let mut datagrams = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        datagrams.push(&rest[2..end]);
        rest = &rest[end..];
    }
    datagrams
}

/// The decoder alone, with a re-encoding oracle: what decodes encodes back to the same
/// bytes, and an accepted packed payload is exactly `count` well-formed messages.
fn decode_raw(datagram: &[u8]) {
    match decode(datagram) {
        Ok(Frame::Data(data, payload)) => {
            let header_len = data.header_len();
            assert_eq!(datagram.len(), header_len + payload.len());
            let mut header = vec![0u8; header_len];
            data.encode_header(&mut header);
            assert_eq!(&datagram[..header_len], &header[..]);
            if data.is_packed() {
                let mut count = 0usize;
                let mut total = 0usize;
                for message in PackedMessages::new(payload) {
                    count += 1;
                    total += message.len();
                    let framed: usize = MessageFrames::new(message)
                        .map(|(at, len)| {
                            assert!(at + len <= message.len());
                            FRAME_HEADER_LEN + len
                        })
                        .sum();
                    assert_eq!(framed, message.len());
                }
                assert_eq!(count, usize::from(data.count));
                assert_eq!(total, payload.len());
            } else {
                let fragment = data.fragment.expect("unpacked DATA has a fragment header");
                assert!(
                    u64::from(fragment.offset) + payload.len() as u64
                        <= u64::from(fragment.total_len)
                );
                assert!(!payload.is_empty());
            }
        }
        Ok(Frame::Heartbeat(heartbeat)) => {
            let mut again = [0u8; 64];
            let len = heartbeat.encode(&mut again);
            assert_eq!(&again[..len], datagram);
        }
        Ok(Frame::Nak(nak)) => {
            let mut again = [0u8; 64];
            let len = nak.encode(&mut again);
            assert_eq!(&again[..len], datagram);
            assert!(nak.len > 0);
        }
        Err(_) => {}
    }
}

/// A receiver and a sender fed the datagrams with time advancing; the receiver's exact
/// accounting must hold after every step.
fn drive(mode: u8, datagrams: &[&[u8]]) {
    let reliable = mode & 0b1 != 0;
    let start = Instant::now();
    let mut now = start;
    let from: SocketAddr = ([10, 0, 0, 1], 5000).into();
    let mut receiver = Receiver::new(
        ReceiverConfig {
            reliable,
            max_message_size: MAX_MESSAGE,
            receive_window: WINDOW,
            seed: Some(1),
            ..ReceiverConfig::default()
        },
        start,
    )
    .expect("valid config");
    let mut sender = Sender::new(
        SenderConfig {
            reliable,
            max_datagram_size: 256,
            max_message_size: MAX_MESSAGE,
            retransmit_buffer: 16,
            ..SenderConfig::default()
        },
        0x5EED,
        start,
    )
    .expect("valid config");
    let mut buf = vec![0u8; 256];

    let mut real_traffic = |sender: &mut Sender, receiver: &mut Receiver, now: Instant| {
        sender
            .send_message(&[&b"topic"[..], b"payload"], now)
            .unwrap();
        sender.send_message(&[vec![7u8; 600]], now).unwrap();
        while let Some(len) = sender.poll_transmit(now, &mut buf) {
            receiver.handle_datagram(now, &buf[..len], from);
        }
    };
    if mode & 0b10 != 0 {
        real_traffic(&mut sender, &mut receiver, now);
    }
    for datagram in datagrams {
        now += Duration::from_micros(300);
        receiver.handle_datagram(now, datagram, from);
        sender.handle_datagram(now, datagram);
        settle(&mut receiver, now);
        let mut out = [0u8; 64];
        while receiver.poll_transmit(now, &mut out).is_some() {}
    }
    if mode & 0b10 != 0 {
        now += Duration::from_millis(1);
        real_traffic(&mut sender, &mut receiver, now);
    }
    let mut sink = vec![0u8; 256];
    while sender.poll_transmit(now, &mut sink).is_some() {}
    // Let every timer run out: gaps are NAKed to exhaustion or given up, publishers
    // retired. The accounting still holds.
    for _ in 0..200 {
        let Some(deadline) = receiver.poll_timeout() else {
            break;
        };
        now = now.max(deadline);
        receiver.handle_timeout(now);
        settle(&mut receiver, now);
    }
}

fn settle(receiver: &mut Receiver, now: Instant) {
    if receiver
        .poll_timeout()
        .is_some_and(|deadline| deadline <= now)
    {
        receiver.handle_timeout(now);
    }
    while receiver.poll_message().is_some() {}
    let stats = receiver.stats();
    for (id, publisher) in stats.publishers.iter().chain(&stats.retired) {
        if publisher.next_msg == u64::MAX || publisher.lost_messages == u64::MAX {
            continue; // saturated by absurd message numbers: nothing exact to check
        }
        assert_eq!(
            publisher.delivered_messages + publisher.lost_messages,
            publisher.next_msg - publisher.joined_at_msg,
            "accounting of {id}: {publisher:?}"
        );
        assert!(publisher.pending_datagrams <= WINDOW as u64);
    }
}
