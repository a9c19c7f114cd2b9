// The checks of the `zmtp_decode` fuzz target, shared (through `include!`) with the
// stable-toolchain smoke run in tests/fuzz_smoke.rs, so both exercise the same code.

use bytes::BytesMut;
use std::time::{Duration, Instant};
use volley::proto::zmtp::{Heartbeat, Session, SessionConfig};
use volley::wire::zmtp::{
    decode_frame, frame_header_len, Command, Decoded, Greeting, Ready, SocketType, Subscription,
    LONG_HEADER_LEN,
};

/// Message size limit for the session and frame limit for the raw decoder; small enough
/// that the fuzzer reaches it, and the session's command floor (64 KiB) equals it.
const MAX: u64 = 64 * 1024;

/// The whole check for one input; panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    decode_raw(stream);
    drive_session(mode, stream);
}

/// The pure decoders, frame after frame, with a re-encoding oracle for commands.
fn decode_raw(mut input: &[u8]) {
    let _ = Greeting::decode(input);
    let _ = Command::decode(input);
    let _ = Subscription::from_message_body(input);
    loop {
        match decode_frame(input, MAX) {
            Ok(Decoded::Done(frame)) => {
                let len = frame.header.frame_len();
                assert!(len <= input.len());
                assert!(frame.body.len() as u64 <= MAX);
                if frame.header.kind.is_command() {
                    if let Ok(command) = Command::decode(frame.body) {
                        // Decoding what we encode gives back the same command.
                        let mut encoded = Vec::new();
                        command.encode(&mut encoded);
                        assert_eq!(
                            encoded.len(),
                            frame_header_len(command.body_len()) + command.body_len()
                        );
                        let Ok(Decoded::Done(again)) = decode_frame(&encoded, u64::MAX) else {
                            panic!("re-encoded command does not decode as a frame");
                        };
                        assert_eq!(Command::decode(again.body).as_ref(), Ok(&command));
                    }
                }
                input = &input[len..];
            }
            Ok(Decoded::NeedMore(missing)) => {
                assert!(missing > 0);
                break;
            }
            Err(_) => break,
        }
    }
}

/// A session fed the stream piece by piece, with output, events and timers exercised.
fn drive_session(mode: u8, stream: &[u8]) {
    let (ours, theirs) = if mode & 0b10 != 0 {
        (SocketType::Pub, SocketType::Sub)
    } else {
        (SocketType::Sub, SocketType::Pub)
    };
    let start = Instant::now();
    let mut config = SessionConfig::new(ours);
    config.max_message_size = MAX;
    config.heartbeat = Some(Heartbeat::new(Duration::from_millis(100)));
    let mut session = Session::new(config, start);

    let mut bytes = Vec::new();
    if mode & 0b01 != 0 {
        bytes.extend_from_slice(&Greeting::null(1).encode());
        Command::Ready(Ready {
            socket_type: theirs,
            identity: None,
        })
        .encode(&mut bytes);
    }
    bytes.extend_from_slice(stream);
    let piece = usize::from(mode >> 2) + 1;

    let mut input = BytesMut::new();
    let mut now = start;
    let mut sink = std::io::sink();
    for chunk in bytes.chunks(piece) {
        input.extend_from_slice(chunk);
        now += Duration::from_millis(30);
        let failed = session.handle_input(&mut input, now).is_err();
        while session.poll_event().is_some() {}
        if !failed {
            // Only a partial unit may stay behind: never more than the largest frame.
            assert!(input.len() < LONG_HEADER_LEN + MAX as usize);
            if chunk.first().is_some_and(|b| b & 1 != 0) {
                session.send_subscribe(chunk);
            }
            let _ = session.send_message(&[bytes::Bytes::copy_from_slice(chunk)]);
        }
        if session
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            let _ = session.handle_timeout(now);
        }
        let _ = session.write_to(&mut sink);
        if failed {
            break;
        }
    }
}
