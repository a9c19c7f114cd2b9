//! Tests of [`crate::proto::zmtp::Session`]: two sessions over an in-memory link with
//! synthetic time, and single sessions fed hand-built bytes from a scripted peer.

use crate::proto::zmtp::{
    Event, Heartbeat, Message, Session, SessionConfig, SessionError, DEFAULT_HANDSHAKE_TIMEOUT,
    INLINE_BODY_MAX,
};
use crate::wire::zmtp::{
    decode_frame, put_frame, Command, Decoded, FrameKind, Greeting, Ready, SocketType, WireError,
    GREETING_LEN,
};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// One end of the link.
struct End {
    session: Session,
    /// Bytes received but not yet consumed by the session.
    input: BytesMut,
    events: Vec<Event>,
    /// Everything this end wrote, for inspecting the wire.
    sent: Vec<u8>,
}

impl End {
    fn new(config: SessionConfig, now: Instant) -> End {
        End {
            session: Session::new(config, now),
            input: BytesMut::new(),
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            self.events.push(event);
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.drain_events();
        std::mem::take(&mut self.events)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Two sessions connected back to back, in the style of quinn-proto's test pair.
struct Link {
    a: End,
    b: End,
    now: Instant,
    /// Bytes written by A are lost (B hears nothing).
    cut_a_to_b: bool,
    /// Bytes written by B are lost (A hears nothing).
    cut_b_to_a: bool,
}

impl Link {
    fn new(a: SessionConfig, b: SessionConfig) -> Link {
        let now = Instant::now();
        Link {
            a: End::new(a, now),
            b: End::new(b, now),
            now,
            cut_a_to_b: false,
            cut_b_to_a: false,
        }
    }

    fn of(a: SocketType, b: SocketType) -> Link {
        Link::new(SessionConfig::new(a), SessionConfig::new(b))
    }

    /// A PUB (side A) and a SUB (side B), handshake done, events drained.
    #[track_caller]
    fn pub_sub() -> Link {
        let mut link = Link::of(SocketType::Pub, SocketType::Sub);
        link.run().unwrap();
        assert!(link.a.session.is_ready() && link.b.session.is_ready());
        link.a.take_events();
        link.b.take_events();
        link
    }

    /// Moves one batch of bytes from `from` to `to`; true if anything moved.
    fn step(from: &mut End, to: &mut End, cut: bool, now: Instant) -> Result<bool, SessionError> {
        let mut wire = Vec::new();
        from.session.write_to(&mut wire).expect("Vec never blocks");
        from.sent.extend_from_slice(&wire);
        let moved = !wire.is_empty() && !cut;
        if moved {
            to.input.extend_from_slice(&wire);
            let result = to.session.handle_input(&mut to.input, now);
            to.drain_events();
            result?;
        }
        Ok(moved)
    }

    /// Exchanges bytes until both directions are quiet.
    fn run(&mut self) -> Result<(), (Side, SessionError)> {
        loop {
            let ab = Link::step(&mut self.a, &mut self.b, self.cut_a_to_b, self.now)
                .map_err(|e| (Side::B, e))?;
            let ba = Link::step(&mut self.b, &mut self.a, self.cut_b_to_a, self.now)
                .map_err(|e| (Side::A, e))?;
            if !ab && !ba {
                return Ok(());
            }
        }
    }

    /// Advances synthetic time, firing due timers on both sides, then exchanges bytes.
    fn advance(&mut self, by: Duration) -> Result<(), (Side, SessionError)> {
        self.now += by;
        for (side, end) in [(Side::A, &mut self.a), (Side::B, &mut self.b)] {
            if end.session.poll_timeout().is_some_and(|t| t <= self.now) {
                end.session
                    .handle_timeout(self.now)
                    .map_err(|e| (side, e))?;
            }
        }
        self.run()
    }
}

/// Frames of a byte stream (greeting stripped), as (kind, body).
#[track_caller]
fn frames_of(mut stream: &[u8]) -> Vec<(FrameKind, Vec<u8>)> {
    let mut frames = Vec::new();
    while !stream.is_empty() {
        let Ok(Decoded::Done(frame)) = decode_frame(stream, u64::MAX) else {
            panic!("malformed stream {stream:?}")
        };
        frames.push((frame.header.kind, frame.body.to_vec()));
        stream = &stream[frame.header.frame_len()..];
    }
    frames
}

/// Names of the commands in a byte stream that starts with a greeting.
#[track_caller]
fn command_names(stream: &[u8]) -> Vec<String> {
    frames_of(&stream[GREETING_LEN..])
        .into_iter()
        .filter(|(kind, _)| kind.is_command())
        .map(|(_, body)| {
            let name = Command::decode(&body).unwrap().name();
            String::from_utf8_lossy(name).into_owned()
        })
        .collect()
}

fn encode(command: Command<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    command.encode(&mut out);
    out
}

fn ready_bytes(socket_type: SocketType) -> Vec<u8> {
    encode(Command::Ready(Ready {
        socket_type,
        identity: None,
    }))
}

/// What a scripted peer of type `socket_type` announcing ZMTP 3.`minor` sends first.
fn handshake(minor: u8, socket_type: SocketType) -> Vec<u8> {
    let mut out = Greeting::null(minor).encode().to_vec();
    out.extend_from_slice(&ready_bytes(socket_type));
    out
}

fn message_bytes(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let more = i + 1 < frames.len();
        put_frame(&mut out, FrameKind::Message { more }, frame);
    }
    out
}

fn output(session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    session.write_to(&mut out).unwrap();
    out
}

/// Feeds `bytes` at once and returns the events.
fn feed(session: &mut Session, bytes: &[u8], now: Instant) -> Result<Vec<Event>, SessionError> {
    let mut input = BytesMut::from(bytes);
    let result = session.handle_input(&mut input, now);
    let mut events = Vec::new();
    while let Some(event) = session.poll_event() {
        events.push(event);
    }
    result.map(|()| events)
}

/// A session of type `ours` whose scripted peer completed the handshake; its greeting and
/// READY are already written out.
#[track_caller]
fn scripted(ours: SocketType, peer_minor: u8, theirs: SocketType) -> (Session, Instant) {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new(ours), now);
    output(&mut session);
    let events = feed(&mut session, &handshake(peer_minor, theirs), now).unwrap();
    assert!(matches!(events.as_slice(), [Event::Ready { .. }]));
    (session, now)
}

fn msg(frames: &[&[u8]]) -> Event {
    Event::Message(Message::new(
        frames.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
    ))
}

fn bytes_vec(frames: &[&[u8]]) -> Vec<Bytes> {
    frames.iter().map(|f| Bytes::copy_from_slice(f)).collect()
}

/// A writer that accepts at most `max` bytes per call and blocks on every
/// `block_every`-th call.
struct Chunky {
    out: Vec<u8>,
    max: usize,
    block_every: usize,
    calls: usize,
}

impl Chunky {
    fn new(max: usize, block_every: usize) -> Chunky {
        Chunky {
            out: Vec::new(),
            max,
            block_every,
            calls: 0,
        }
    }
}

impl Write for Chunky {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        if self.block_every > 0 && self.calls % self.block_every == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut budget = self.max;
        let mut written = 0;
        for buf in bufs {
            let take = buf.len().min(budget);
            self.out.extend_from_slice(&buf[..take]);
            written += take;
            budget -= take;
            if budget == 0 {
                break;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts `write_vectored` calls and the slices handed to it.
#[derive(Default)]
struct Counting {
    out: Vec<u8>,
    calls: usize,
    slice_ptrs: Vec<usize>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        for buf in bufs {
            self.slice_ptrs.push(buf.as_ptr() as usize);
            self.out.extend_from_slice(buf);
        }
        Ok(bufs.iter().map(|b| b.len()).sum())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

#[test]
fn greeting_and_ready_are_queued_at_once() {
    let mut session = Session::new(SessionConfig::new(SocketType::Pub), Instant::now());
    assert!(session.has_output());
    let mut expected = Greeting::null(1).encode().to_vec();
    expected.extend_from_slice(&[0x04, 25, 5]);
    expected.extend_from_slice(b"READY\x0bSocket-Type\x00\x00\x00\x03PUB");
    assert_eq!(output(&mut session), expected);
    assert!(!session.has_output());
    assert!(!session.is_ready());
    assert_eq!(session.peer_minor(), None);

    let mut config = SessionConfig::new(SocketType::Sub);
    config.greeting_minor = 0;
    let mut v30 = Session::new(config, Instant::now());
    assert_eq!(output(&mut v30)[11], 0, "3.0 greeting");
}

#[test]
fn handshake_pub_sub() {
    let mut link = Link::of(SocketType::Pub, SocketType::Sub);
    link.run().unwrap();
    assert_eq!(
        link.a.take_events(),
        [Event::Ready {
            peer_socket_type: SocketType::Sub,
            peer_minor: 1,
            peer_identity: None
        }]
    );
    assert_eq!(
        link.b.take_events(),
        [Event::Ready {
            peer_socket_type: SocketType::Pub,
            peer_minor: 1,
            peer_identity: None
        }]
    );
    assert!(link.a.session.is_ready());
    assert_eq!(link.a.session.peer_minor(), Some(1));
    assert_eq!(link.b.session.peer_socket_type(), Some(SocketType::Pub));
    assert_eq!(
        link.a.session.poll_timeout(),
        None,
        "no heartbeats configured"
    );
}

#[test]
fn handshake_with_30_peer_and_identity() {
    let mut dealer = SessionConfig::new(SocketType::Dealer);
    dealer.identity = Some(Bytes::from_static(b"worker-1"));
    dealer.greeting_minor = 0;
    let mut link = Link::new(dealer, SessionConfig::new(SocketType::Router));
    link.run().unwrap();
    assert_eq!(
        link.b.take_events(),
        [Event::Ready {
            peer_socket_type: SocketType::Dealer,
            peer_minor: 0,
            peer_identity: Some(Bytes::from_static(b"worker-1"))
        }]
    );
    assert_eq!(link.a.session.peer_minor(), Some(1));
}

#[test]
fn incompatible_socket_types_are_refused() {
    for (a, b) in [
        (SocketType::Pub, SocketType::Pub),
        (SocketType::Pub, SocketType::Push),
        (SocketType::Sub, SocketType::Pull),
    ] {
        let mut link = Link::of(a, b);
        let (side, err) = link.run().unwrap_err();
        assert_eq!(side, Side::B, "B hears A's READY first");
        assert_eq!(
            err,
            SessionError::IncompatibleSocketType { ours: b, theirs: a }
        );
        let text = err.to_string();
        assert!(text.contains(a.name()) && text.contains(b.name()), "{text}");
        assert!(!link.b.session.is_ready());
        // A hears B's READY and refuses it too.
        let wire = output(&mut link.b.session);
        let err = feed(&mut link.a.session, &wire, link.now).unwrap_err();
        assert_eq!(
            err,
            SessionError::IncompatibleSocketType { ours: a, theirs: b }
        );
    }
}

#[test]
fn refused_peer_gets_error_and_never_held_messages() {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new(SocketType::Pub), now);
    session
        .send_message(&bytes_vec(&[b"secret", b"payload"]))
        .unwrap();
    let greeting_and_ready = output(&mut session);
    assert_eq!(greeting_and_ready.len(), GREETING_LEN + 27);
    assert!(!session.has_output(), "the message waits for the handshake");

    let err = feed(&mut session, &handshake(1, SocketType::Push), now).unwrap_err();
    assert!(matches!(err, SessionError::IncompatibleSocketType { .. }));
    let rest = output(&mut session);
    let frames = frames_of(&rest);
    assert_eq!(frames.len(), 1, "only an ERROR, no message: {frames:?}");
    let Command::Error { reason } = Command::decode(&frames[0].1).unwrap() else {
        panic!("expected ERROR")
    };
    assert!(String::from_utf8_lossy(reason).contains("PUSH"));

    // Errors are final.
    assert_eq!(
        session.handle_input(&mut BytesMut::new(), now),
        Err(err.clone())
    );
    assert_eq!(session.send_message(&bytes_vec(&[b"x"])), Err(err.clone()));
    assert_eq!(session.handle_timeout(now), Err(err.clone()));
    assert_eq!(session.error(), Some(&err));
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn messages_before_ready_are_held_then_released() {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new(SocketType::Push), now);
    session.send_message(&bytes_vec(&[b"one"])).unwrap();
    session.send_subscribe(b"s"); // queued behind the held message
    session.send_message(&bytes_vec(&[b"two"])).unwrap();
    assert_eq!(output(&mut session).len(), GREETING_LEN + 28);
    assert!(!session.has_output());
    feed(&mut session, &handshake(1, SocketType::Pull), now).unwrap();
    assert!(session.has_output());
    let mut expected = message_bytes(&[b"one"]);
    expected.extend_from_slice(&encode(Command::Subscribe(b"s")));
    expected.extend_from_slice(&message_bytes(&[b"two"]));
    assert_eq!(output(&mut session), expected);
}

#[test]
fn bad_greetings_are_typed_errors() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    assert_eq!(
        feed(&mut s, b"GET / HTTP/1.1\r\n", now),
        Err(SessionError::Wire(WireError::BadSignature))
    );

    let mut v2 = Greeting::null(1).encode();
    v2[10] = 2;
    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    assert_eq!(
        feed(&mut s, &v2[..11], now),
        Err(SessionError::Wire(WireError::UnsupportedVersion {
            major: 2
        }))
    );

    let mut curve = Greeting::null(1).encode();
    curve[12..17].copy_from_slice(b"CURVE");
    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let err = feed(&mut s, &curve, now).unwrap_err();
    assert!(matches!(
        err,
        SessionError::Wire(WireError::UnsupportedMechanism { .. })
    ));
    assert!(err.to_string().contains("CURVE"), "{err}");
    // No ERROR command: the peer does not speak our framing.
    output(&mut s);
    assert!(!s.has_output());
}

#[test]
fn libzmq_style_padding_is_accepted() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let mut bytes = handshake(0, SocketType::Pub);
    bytes[1..9].copy_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]);
    let events = feed(&mut s, &bytes, now).unwrap();
    assert!(matches!(
        events.as_slice(),
        [Event::Ready { peer_minor: 0, .. }]
    ));
}

#[test]
fn handshake_violations() {
    let now = Instant::now();
    let greeting = Greeting::null(1).encode();

    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let mut bytes = greeting.to_vec();
    bytes.extend_from_slice(&message_bytes(&[b"early"]));
    assert_eq!(
        feed(&mut s, &bytes, now),
        Err(SessionError::MessageBeforeReady)
    );

    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let mut bytes = greeting.to_vec();
    bytes.extend_from_slice(&encode(Command::Ping {
        ttl_deciseconds: 0,
        context: b"",
    }));
    assert_eq!(
        feed(&mut s, &bytes, now),
        Err(SessionError::UnexpectedCommand {
            name: "PING".into()
        })
    );

    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let mut bytes = handshake(1, SocketType::Pub);
    bytes.extend_from_slice(&ready_bytes(SocketType::Pub));
    assert_eq!(
        feed(&mut s, &bytes, now),
        Err(SessionError::UnexpectedCommand {
            name: "READY".into()
        })
    );

    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let mut bytes = greeting.to_vec();
    bytes.extend_from_slice(b"\x04\x06\x05READY"); // no Socket-Type
    assert_eq!(
        feed(&mut s, &bytes, now),
        Err(SessionError::Wire(WireError::MissingSocketType))
    );
}

#[test]
fn peer_error_command() {
    let now = Instant::now();
    for ready_first in [false, true] {
        let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
        let mut bytes = if ready_first {
            handshake(1, SocketType::Pub)
        } else {
            Greeting::null(1).encode().to_vec()
        };
        bytes.extend_from_slice(&encode(Command::Error {
            reason: b"Invalid socket type",
        }));
        let err = feed(&mut s, &bytes, now).unwrap_err();
        assert_eq!(
            err,
            SessionError::PeerError {
                reason: "Invalid socket type".into()
            }
        );
        assert!(err.to_string().contains("Invalid socket type"));
    }
}

#[test]
fn handshake_timeout() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let deadline = now + DEFAULT_HANDSHAKE_TIMEOUT;
    assert_eq!(s.poll_timeout(), Some(deadline));
    // Half a greeting is not a handshake.
    feed(&mut s, &Greeting::null(1).encode()[..30], now).unwrap();
    s.handle_timeout(deadline - Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        s.handle_timeout(deadline),
        Err(SessionError::HandshakeTimeout)
    );

    let mut config = SessionConfig::new(SocketType::Sub);
    config.handshake_timeout = None;
    assert_eq!(Session::new(config, now).poll_timeout(), None);
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

#[test]
fn multipart_message_pub_to_sub() {
    let mut link = Link::pub_sub();
    let big = vec![0xAB; INLINE_BODY_MAX + 10];
    let medium = vec![0xCD; 300];
    let frames: [&[u8]; 4] = [b"cpu.load", &medium, &big, b""];
    link.a.session.send_message(&bytes_vec(&frames)).unwrap();
    link.a
        .session
        .send_message(&bytes_vec(&[b"single"]))
        .unwrap();
    link.run().unwrap();
    let events = link.b.take_events();
    assert_eq!(events, [msg(&frames), msg(&[b"single"])]);
    let Event::Message(m) = &events[0] else {
        unreachable!()
    };
    assert_eq!(m.topic(), b"cpu.load");
    assert_eq!(m.byte_len(), 8 + 300 + INLINE_BODY_MAX + 10);
    assert_eq!(m.frames().len(), 4);
}

#[test]
fn empty_message_is_refused() {
    let mut link = Link::pub_sub();
    assert_eq!(
        link.a.session.send_message::<Bytes>(&[]),
        Err(SessionError::EmptyMessage)
    );
    assert!(
        link.a.session.is_ready(),
        "a local misuse does not fail the session"
    );
}

#[test]
fn unknown_commands_after_ready_are_ignored() {
    let (mut s, now) = scripted(SocketType::Sub, 1, SocketType::Pub);
    let mut bytes = encode(Command::Unknown {
        name: b"X-FUTURE",
        data: b"whatever",
    });
    bytes.extend_from_slice(&encode(Command::Pong { context: b"" }));
    bytes.extend_from_slice(&message_bytes(&[b"t", b"v"]));
    assert_eq!(feed(&mut s, &bytes, now).unwrap(), [msg(&[b"t", b"v"])]);
}

#[test]
fn one_byte_at_a_time() {
    let now = Instant::now();
    let mut stream = handshake(1, SocketType::Pub);
    stream.extend_from_slice(&message_bytes(&[b"topic", &[7; 300], b"end"]));
    stream.extend_from_slice(&encode(Command::Ping {
        ttl_deciseconds: 0,
        context: b"c",
    }));
    stream.extend_from_slice(&encode(Command::Subscribe(b"odd")));
    stream.extend_from_slice(&message_bytes(&[b""]));

    let mut whole = Session::new(SessionConfig::new(SocketType::Sub), now);
    let expected = feed(&mut whole, &stream, now).unwrap();
    assert_eq!(expected.len(), 4, "{expected:?}");

    let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
    let mut input = BytesMut::new();
    let mut events = Vec::new();
    for (i, byte) in stream.iter().enumerate() {
        input.extend_from_slice(&[*byte]);
        s.handle_input(&mut input, now).unwrap();
        while let Some(event) = s.poll_event() {
            events.push(event);
        }
        if i + 1 == GREETING_LEN {
            assert_eq!(s.peer_minor(), Some(1), "greeting complete at byte 64");
            assert!(input.is_empty());
        }
        if i + 1 < GREETING_LEN {
            assert_eq!(s.peer_minor(), None);
        }
    }
    assert!(input.is_empty());
    assert_eq!(events, expected);
    assert_eq!(output(&mut s), output(&mut whole), "same PONG either way");
}

#[test]
fn message_size_limit_is_decided_from_headers() {
    let now = Instant::now();
    let mut config = SessionConfig::new(SocketType::Sub);
    config.max_message_size = 100;
    let mut s = Session::new(config.clone(), now);
    feed(&mut s, &handshake(1, SocketType::Pub), now).unwrap();
    // Exactly at the limit is fine.
    let fine = message_bytes(&[&[1; 50], &[2; 50]]);
    assert_eq!(feed(&mut s, &fine, now).unwrap().len(), 1);
    // 40 + 40 + the header of another 40: refused before that body arrives.
    let mut bytes = message_bytes(&[&[1; 40], &[2; 40]]);
    bytes[42] |= 0x01; // second frame gets MORE
    bytes.extend_from_slice(&[0x00, 40]);
    assert_eq!(
        feed(&mut s, &bytes, now),
        Err(SessionError::MessageTooLarge {
            size: 120,
            max: 100
        })
    );
    // The same with every body already received (the decoder's fast path for runs of
    // complete frames must refuse it too), and one complete short frame over the limit.
    for (frames, size) in [
        (&[&[1u8; 40][..], &[2; 40], &[3; 40]][..], 120),
        (&[&[4; 101][..]][..], 101),
    ] {
        let mut s = Session::new(config.clone(), now);
        feed(&mut s, &handshake(1, SocketType::Pub), now).unwrap();
        assert_eq!(
            feed(&mut s, &message_bytes(frames), now),
            Err(SessionError::MessageTooLarge { size, max: 100 })
        );
    }

    // A LONG frame declaring 2^62 bytes: refused from 9 bytes, nothing allocated.
    let mut s = Session::new(config, now);
    feed(&mut s, &handshake(1, SocketType::Pub), now).unwrap();
    let mut input = BytesMut::with_capacity(16);
    input.extend_from_slice(&[0x02, 0x40, 0, 0, 0, 0, 0, 0, 0]);
    let capacity = input.capacity();
    let err = s.handle_input(&mut input, now).unwrap_err();
    assert_eq!(
        err,
        SessionError::MessageTooLarge {
            size: 1 << 62,
            max: 100
        }
    );
    assert_eq!(input.capacity(), capacity);
    assert!(err.to_string().contains("100"));
}

#[test]
fn oversized_commands_are_refused() {
    let now = Instant::now();
    let mut config = SessionConfig::new(SocketType::Pub);
    config.max_message_size = 10;
    let mut s = Session::new(config, now);
    feed(&mut s, &handshake(1, SocketType::Sub), now).unwrap();
    // Commands may exceed a tiny message limit (READY did, at 26 bytes) ...
    let events = feed(&mut s, &encode(Command::Subscribe(&[b'x'; 1000])), now).unwrap();
    assert_eq!(events.len(), 1);
    // ... but not the 64 KiB floor.
    let err = feed(&mut s, &[0x06, 0, 0, 0, 0, 0, 1, 0, 1], now).unwrap_err();
    assert!(matches!(
        err,
        SessionError::Wire(WireError::FrameTooLarge {
            declared: 65537,
            ..
        })
    ));
}

#[test]
fn malformed_frames_fail_the_session() {
    for bad in [
        &[0x80u8, 0][..],
        &[0x05, 0],
        &[0x04, 0],
        &[0x04, 2, 5, b'R'],
    ] {
        let (mut s, now) = scripted(SocketType::Sub, 1, SocketType::Pub);
        let err = feed(&mut s, bad, now).unwrap_err();
        assert!(matches!(err, SessionError::Wire(_)), "{bad:?} -> {err:?}");
        assert!(s.error().is_some());
        assert!(!s.is_ready());
    }
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

#[test]
fn subscribe_to_31_peer_uses_commands() {
    let mut link = Link::pub_sub();
    let before = link.b.sent.len();
    link.b.session.send_subscribe(b"cpu.");
    link.b.session.send_subscribe(b"cpu.");
    link.b.session.send_cancel(b"cpu.");
    link.run().unwrap();
    let mut expected = encode(Command::Subscribe(b"cpu."));
    assert_eq!(&expected[..], b"\x04\x0e\x09SUBSCRIBE\x63\x70\x75\x2e");
    expected.extend_from_slice(&encode(Command::Subscribe(b"cpu.")));
    expected.extend_from_slice(b"\x04\x0b\x06CANCELcpu.");
    assert_eq!(&link.b.sent[before..], expected.as_slice());
    assert_eq!(
        link.a.take_events(),
        [
            Event::Subscribe(Bytes::from_static(b"cpu.")),
            Event::Subscribe(Bytes::from_static(b"cpu.")),
            Event::Cancel(Bytes::from_static(b"cpu.")),
        ]
    );
    let table = link.a.session.peer_subscriptions();
    assert_eq!(table.count(b"cpu."), 1, "counted");
    assert!(table.matches(b"cpu.load"));
    link.b.session.send_cancel(b"cpu.");
    link.run().unwrap();
    assert!(!link.a.session.peer_subscriptions().matches(b"cpu.load"));
}

#[test]
fn subscribe_to_30_peer_uses_message_form() {
    let mut publisher = SessionConfig::new(SocketType::Pub);
    publisher.greeting_minor = 0;
    let mut link = Link::new(publisher, SessionConfig::new(SocketType::Sub));
    link.run().unwrap();
    link.a.take_events();
    let before = link.b.sent.len();
    link.b.session.send_subscribe(b"ab");
    link.b.session.send_cancel(b"ab");
    link.run().unwrap();
    assert_eq!(&link.b.sent[before..], b"\x00\x03\x01ab\x00\x03\x00ab");
    // Our PUB reads the 3.0 form as subscriptions, not messages.
    assert_eq!(
        link.a.take_events(),
        [
            Event::Subscribe(Bytes::from_static(b"ab")),
            Event::Cancel(Bytes::from_static(b"ab")),
        ]
    );
}

#[test]
fn subscribe_before_peer_greeting_is_deferred() {
    for (peer_minor, expected) in [
        (1u8, {
            let mut e = encode(Command::Subscribe(b"a"));
            e.extend_from_slice(&encode(Command::Cancel(b"b")));
            e
        }),
        (0u8, b"\x00\x02\x01a\x00\x02\x00b".to_vec()),
    ] {
        let now = Instant::now();
        let mut s = Session::new(SessionConfig::new(SocketType::Sub), now);
        s.send_subscribe(b"a");
        s.send_cancel(b"b");
        // Greeting and READY still leave; the subscriptions wait for the peer's version.
        assert_eq!(output(&mut s).len(), GREETING_LEN + 27);
        assert!(!s.has_output());
        assert!(s.queued_len() >= 2);
        let greeting = Greeting::null(peer_minor).encode();
        feed(&mut s, &greeting, now).unwrap();
        assert!(s.has_output());
        assert_eq!(output(&mut s), expected, "peer minor {peer_minor}");
        assert_eq!(s.queued_len(), 0);
    }
}

#[test]
fn legacy_subscriptions_only_at_publishers() {
    // XPUB reads both forms.
    let (mut xpub, now) = scripted(SocketType::XPub, 0, SocketType::Sub);
    let mut bytes = message_bytes(&[b"\x01news"]);
    bytes.extend_from_slice(&encode(Command::Subscribe(b"x")));
    bytes.extend_from_slice(&message_bytes(&[b"\x00news"]));
    bytes.extend_from_slice(&message_bytes(&[b"\x02upstream", b"data"]));
    assert_eq!(
        feed(&mut xpub, &bytes, now).unwrap(),
        [
            Event::Subscribe(Bytes::from_static(b"news")),
            Event::Subscribe(Bytes::from_static(b"x")),
            Event::Cancel(Bytes::from_static(b"news")),
            msg(&[b"\x02upstream", b"data"]),
        ]
    );
    // A SUB receiving the same bytes from its publisher sees plain messages.
    let (mut sub, now) = scripted(SocketType::Sub, 1, SocketType::Pub);
    assert_eq!(
        feed(&mut sub, &message_bytes(&[b"\x01news"]), now).unwrap(),
        [msg(&[b"\x01news"])]
    );
}

// ---------------------------------------------------------------------------------------
// Heartbeats
// ---------------------------------------------------------------------------------------

#[test]
fn ping_is_answered_with_pong_even_on_30() {
    for minor in [0u8, 1] {
        let (mut s, now) = scripted(SocketType::Pub, minor, SocketType::Sub);
        let ping = encode(Command::Ping {
            ttl_deciseconds: 0,
            context: b"ctx",
        });
        assert_eq!(&ping[..], b"\x04\x0a\x04PING\x00\x00ctx");
        assert!(feed(&mut s, &ping, now).unwrap().is_empty());
        assert_eq!(output(&mut s), b"\x04\x08\x04PONGctx");
        assert_eq!(s.poll_timeout(), None, "a TTL of 0 arms nothing");
    }
}

#[test]
fn peer_ttl_is_honoured_without_local_heartbeats() {
    let (mut s, now) = scripted(SocketType::Sub, 1, SocketType::Pub);
    let ping = encode(Command::Ping {
        ttl_deciseconds: 5,
        context: b"",
    });
    feed(&mut s, &ping, now).unwrap();
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_millis(500)));
    // Traffic after the PING disarms the TTL (as in libzmq), even in the same read.
    let later = now + Duration::from_millis(400);
    feed(&mut s, &message_bytes(&[b"m"]), later).unwrap();
    assert_eq!(s.poll_timeout(), None);
    let mut ping_then_message = ping.clone();
    ping_then_message.extend_from_slice(&message_bytes(&[b"m"]));
    feed(&mut s, &ping_then_message, later).unwrap();
    assert_eq!(s.poll_timeout(), None);
    // The next PING re-arms it.
    feed(&mut s, &ping, later).unwrap();
    let deadline = later + Duration::from_millis(500);
    assert_eq!(s.poll_timeout(), Some(deadline));
    s.handle_timeout(deadline - Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        s.handle_timeout(deadline),
        Err(SessionError::HeartbeatTimeout {
            silent_for: Duration::from_millis(500)
        })
    );
}

fn heartbeat_link(a: SocketType, b: SocketType, b_pings: bool) -> Link {
    let mut ca = SessionConfig::new(a);
    ca.heartbeat = Some(Heartbeat::new(Duration::from_secs(1)));
    let mut cb = SessionConfig::new(b);
    if b_pings {
        cb.heartbeat = Some(Heartbeat::new(Duration::from_secs(1)));
    }
    let mut link = Link::new(ca, cb);
    link.run().unwrap();
    link
}

fn count(sent: &[u8], name: &str) -> usize {
    command_names(sent).iter().filter(|n| *n == name).count()
}

#[test]
fn idle_link_pings_and_stays_up() {
    let mut link = heartbeat_link(SocketType::Pub, SocketType::Sub, false);
    assert_eq!(
        link.a.session.poll_timeout(),
        Some(link.now + Duration::from_secs(1))
    );
    for _ in 0..10 {
        link.advance(Duration::from_millis(500)).unwrap();
    }
    // Only PONGs come back, which do not make the link busy both ways.
    assert_eq!(count(&link.a.sent, "PING"), 5);
    assert_eq!(count(&link.b.sent, "PONG"), 5);
    assert_eq!(count(&link.b.sent, "PING"), 0);
    assert!(link.a.session.is_ready() && link.b.session.is_ready());

    // Both pinging: each PING/PONG exchange makes the next round unnecessary.
    let mut link = heartbeat_link(SocketType::Pub, SocketType::Sub, true);
    for _ in 0..10 {
        link.advance(Duration::from_millis(500)).unwrap();
    }
    assert_eq!(count(&link.a.sent, "PING"), 3, "rounds 1, 3 and 5");
    assert_eq!(count(&link.b.sent, "PING"), 3);
    assert!(link.a.session.is_ready() && link.b.session.is_ready());
    // The TTL we announce is three intervals, in deciseconds.
    let first_ping = frames_of(&link.a.sent[GREETING_LEN..])
        .into_iter()
        .find(|(_, body)| body.starts_with(b"\x04PING"))
        .unwrap();
    assert_eq!(first_ping.1, b"\x04PING\x00\x1e");
}

#[test]
fn silent_peer_times_out() {
    let mut link = heartbeat_link(SocketType::Pub, SocketType::Sub, true);
    link.cut_b_to_a = true;
    link.advance(Duration::from_millis(999)).unwrap();
    assert_eq!(command_names(&link.a.sent), ["READY"]);
    link.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(command_names(&link.a.sent), ["READY", "PING"]);
    let ping_sent = link.now;
    assert_eq!(
        link.a.session.poll_timeout(),
        Some(ping_sent + Duration::from_secs(1))
    );
    // The peer's PONG never arrives.
    link.advance(Duration::from_millis(999)).unwrap();
    let err = link.advance(Duration::from_millis(1)).unwrap_err();
    assert_eq!(
        err,
        (
            Side::A,
            SessionError::HeartbeatTimeout {
                silent_for: Duration::from_secs(2)
            }
        )
    );
    assert!(err.1.to_string().contains("heartbeat"));
}

#[test]
fn busy_link_does_not_ping_but_one_way_traffic_does() {
    // DEALER <-> DEALER, both sending every 100 ms: no PING needed.
    let mut link = heartbeat_link(SocketType::Dealer, SocketType::Dealer, true);
    for _ in 0..50 {
        link.a.session.send_message(&bytes_vec(&[b"a"])).unwrap();
        link.b.session.send_message(&bytes_vec(&[b"b"])).unwrap();
        link.advance(Duration::from_millis(100)).unwrap();
    }
    assert_eq!(command_names(&link.a.sent), ["READY"]);
    assert_eq!(command_names(&link.b.sent), ["READY"]);

    // PUB -> SUB, only the publisher talks: the SUB pings (it sends nothing else); the
    // PUB hears those PINGs and answers them, so it has no reason to ping.
    let mut link = heartbeat_link(SocketType::Pub, SocketType::Sub, true);
    for _ in 0..30 {
        link.a.session.send_message(&bytes_vec(&[b"m"])).unwrap();
        link.advance(Duration::from_millis(100)).unwrap();
    }
    assert_eq!(count(&link.b.sent, "PING"), 3, "every round");
    assert_eq!(count(&link.a.sent, "PONG"), 3);
    assert_eq!(count(&link.a.sent, "PING"), 0);
    assert!(link.a.session.is_ready() && link.b.session.is_ready());

    // When the SUB dies silently, the PUB starts pinging and gives up.
    link.cut_b_to_a = true;
    let mut result = Ok(());
    for _ in 0..30 {
        link.a.session.send_message(&bytes_vec(&[b"m"])).unwrap();
        result = link.advance(Duration::from_millis(100));
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(
        result,
        Err((Side::A, SessionError::HeartbeatTimeout { .. }))
    ));
    assert!(count(&link.a.sent, "PING") >= 1);
}

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

#[test]
fn many_small_messages_leave_in_one_write() {
    let mut link = Link::pub_sub();
    for i in 0..100u32 {
        link.a
            .session
            .send_message(&[
                Bytes::from_static(b"t"),
                Bytes::from(i.to_be_bytes().to_vec()),
            ])
            .unwrap();
    }
    let mut w = Counting::default();
    let n = link.a.session.write_to(&mut w).unwrap();
    assert_eq!(w.calls, 1);
    assert_eq!(n, 100 * (3 + 6));
    assert_eq!(w.slice_ptrs.len(), 1, "one contiguous batch");

    let big = Bytes::from(vec![9u8; 100_000]);
    for _ in 0..3 {
        link.a
            .session
            .send_message(&[Bytes::from_static(b"t"), big.clone()])
            .unwrap();
    }
    let mut w = Counting::default();
    link.a.session.write_to(&mut w).unwrap();
    assert_eq!(w.calls, 1);
    assert_eq!(
        w.slice_ptrs
            .iter()
            .filter(|&&p| p == big.as_ptr() as usize)
            .count(),
        3,
        "the large body is written from the caller's buffer, not copied"
    );
}

#[test]
fn partial_writes_and_would_block() {
    let mut link = Link::pub_sub();
    let big = vec![5u8; 10_000];
    let sent: [&[u8]; 3] = [b"topic", &big, b"tail"];
    for _ in 0..3 {
        link.a.session.send_message(&bytes_vec(&sent)).unwrap();
    }
    let total = link.a.session.queued_len();
    let mut w = Chunky::new(3, 2);
    let mut blocked = 0;
    let mut written = 0;
    while link.a.session.has_output() {
        let before = link.a.session.queued_len();
        match link.a.session.write_to(&mut w) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                blocked += 1;
                written += before - link.a.session.queued_len();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(blocked > 100);
    assert_eq!(written, total);
    assert_eq!(w.out.len(), total);
    let events = feed(&mut link.b.session, &w.out, link.now).unwrap();
    assert_eq!(events, [msg(&sent), msg(&sent), msg(&sent)]);
}

#[test]
fn partial_writes_of_small_messages_keep_their_order() {
    // Small messages only: the session writes its batch with plain `write` calls, and a
    // socket that takes a few bytes at a time or would block must not reorder or lose any.
    let mut link = Link::pub_sub();
    let sent: Vec<[Vec<u8>; 2]> = (0..50u32)
        .map(|i| [b"t".to_vec(), i.to_be_bytes().repeat(1 + i as usize % 3)])
        .collect();
    for m in &sent {
        link.a
            .session
            .send_message(&[Bytes::from(m[0].clone()), Bytes::from(m[1].clone())])
            .unwrap();
    }
    let total = link.a.session.queued_len();
    let mut w = Chunky::new(7, 3);
    let mut guard = 0;
    while link.a.session.has_output() {
        match link.a.session.write_to(&mut w) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        guard += 1;
        assert!(guard < 10_000, "write_to made no progress");
    }
    assert_eq!(w.out.len(), total);
    let events = feed(&mut link.b.session, &w.out, link.now).unwrap();
    let expected: Vec<_> = sent
        .iter()
        .map(|m| msg(&[m[0].as_slice(), m[1].as_slice()]))
        .collect();
    assert_eq!(events, expected);
}

#[test]
fn write_zero_is_an_error() {
    struct Zero;
    impl Write for Zero {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut s = Session::new(SessionConfig::new(SocketType::Pub), Instant::now());
    let err = s.write_to(&mut Zero).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    assert!(s.has_output());
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 250..300),
        1 => proptest::collection::vec(any::<u8>(), INLINE_BODY_MAX - 2..INLINE_BODY_MAX + 300),
    ]
}

fn messages_strategy() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    proptest::collection::vec(proptest::collection::vec(frame_strategy(), 1..5), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a session encodes, another decodes to the same messages, however the
    /// stream is split into reads and however the writer cuts it.
    #[test]
    fn encode_decode_roundtrip(
        messages in messages_strategy(),
        cuts in proptest::collection::vec(1usize..700, 1..40),
        write_max in 1usize..5000,
        block_every in prop_oneof![Just(0usize), Just(2), Just(3)],
    ) {
        let now = Instant::now();
        let mut tx = Session::new(SessionConfig::new(SocketType::Push), now);
        let mut rx = Session::new(SessionConfig::new(SocketType::Pull), now);
        for message in &messages {
            let frames: Vec<Bytes> = message.iter().map(|f| Bytes::copy_from_slice(f)).collect();
            tx.send_message(&frames).unwrap();
        }
        // PULL's greeting and READY unlock PUSH's held messages.
        let mut hello = BytesMut::from(output(&mut rx).as_slice());
        tx.handle_input(&mut hello, now).unwrap();
        prop_assert!(hello.is_empty());

        let mut w = Chunky::new(write_max, block_every);
        let mut guard = 0;
        while tx.has_output() {
            match tx.write_to(&mut w) {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
            guard += 1;
            prop_assert!(guard < 1_000_000);
        }

        let mut input = BytesMut::new();
        let mut received = Vec::new();
        let mut rest = w.out.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            input.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            rx.handle_input(&mut input, now).unwrap();
            while let Some(event) = rx.poll_event() {
                received.push(event);
            }
        }
        prop_assert!(input.is_empty());
        let expected: Vec<Event> = std::iter::once(Event::Ready {
            peer_socket_type: SocketType::Push,
            peer_minor: 1,
            peer_identity: None,
        })
        .chain(messages.iter().map(|m| {
            Event::Message(Message::new(m.iter().map(|f| Bytes::copy_from_slice(f)).collect()))
        }))
        .collect();
        prop_assert_eq!(received, expected);
    }

    /// Arbitrary bytes after a valid handshake never panic the session.
    #[test]
    fn garbage_never_panics(
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
        publisher: bool,
        chunk in 1usize..50,
    ) {
        let (ours, theirs) = if publisher {
            (SocketType::Pub, SocketType::Sub)
        } else {
            (SocketType::Sub, SocketType::Pub)
        };
        let now = Instant::now();
        let mut s = Session::new(SessionConfig::new(ours), now);
        let mut input = BytesMut::from(handshake(1, theirs).as_slice());
        s.handle_input(&mut input, now).unwrap();
        for piece in garbage.chunks(chunk) {
            input.extend_from_slice(piece);
            if s.handle_input(&mut input, now).is_err() {
                break;
            }
        }
        while s.poll_event().is_some() {}
        let _ = s.handle_timeout(now + Duration::from_secs(60));
        let _ = s.write_to(&mut io::sink());
    }
}

#[test]
fn two_frame_messages_decode_like_any_other_shape_at_every_split() {
    // Two-frame messages take their own path (built in place); around them, one- and
    // three-frame messages, and a split of the stream at every byte, so that a pair's
    // second frame is sometimes in the next read and a pair sometimes follows a
    // message still waiting for its last frame.
    let shapes: [&[&[u8]]; 5] = [
        &[b"t", b"pair one"],
        &[b"single"],
        &[b"t", b"", b"three"],
        &[b"", b"empty topic"],
        &[b"t", b"pair two"],
    ];
    let mut body = Vec::new();
    for shape in shapes {
        body.extend_from_slice(&message_bytes(shape));
    }
    let expected: Vec<Vec<&[u8]>> = shapes.iter().map(|s| s.to_vec()).collect();
    for split in 0..=body.len() {
        let now = Instant::now();
        let mut session = Session::new(SessionConfig::new(SocketType::Sub), now);
        output(&mut session);
        let mut input = BytesMut::from(handshake(1, SocketType::Pub).as_slice());
        let mut got = Vec::new();
        input.extend_from_slice(&body[..split]);
        session
            .handle_input_with(&mut input, now, &mut |m| got.push(m))
            .unwrap();
        input.extend_from_slice(&body[split..]);
        session
            .handle_input_with(&mut input, now, &mut |m| got.push(m))
            .unwrap();
        assert!(input.is_empty());
        let frames: Vec<Vec<&[u8]>> = got
            .iter()
            .map(|m| m.frames().iter().map(|f| &f[..]).collect())
            .collect();
        assert_eq!(frames, expected, "split at {split}");
    }
}

#[test]
fn handle_input_with_hands_messages_to_the_callback_and_queues_the_rest() {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::new(SocketType::Sub), now);
    output(&mut session);
    // The handshake, two messages (one split across two calls) and a PING in one stream.
    let mut stream = handshake(1, SocketType::Pub);
    stream.extend_from_slice(&message_bytes(&[b"t", b"one"]));
    stream.extend_from_slice(&encode(Command::Ping {
        ttl_deciseconds: 0,
        context: b"c",
    }));
    stream.extend_from_slice(&message_bytes(&[b"t", b"two", b"three"]));
    let (first, second) = stream.split_at(stream.len() - 3);
    let mut got = Vec::new();
    let mut input = BytesMut::from(first);
    session
        .handle_input_with(&mut input, now, &mut |m| got.push(m))
        .unwrap();
    assert_eq!(got.len(), 1, "the second message is not complete yet");
    input.extend_from_slice(second);
    session
        .handle_input_with(&mut input, now, &mut |m| got.push(m))
        .unwrap();
    let frames: Vec<Vec<&[u8]>> = got
        .iter()
        .map(|m| m.frames().iter().map(|f| &f[..]).collect())
        .collect();
    assert_eq!(
        frames,
        [vec![&b"t"[..], b"one"], vec![&b"t"[..], b"two", b"three"]]
    );
    // Only the READY went to the queue, and the PING was answered.
    let mut events = Vec::new();
    while let Some(e) = session.poll_event() {
        events.push(e);
    }
    assert!(
        matches!(events.as_slice(), [Event::Ready { .. }]),
        "{events:?}"
    );
    let pong: Vec<String> = frames_of(&output(&mut session))
        .into_iter()
        .map(|(_, body)| {
            String::from_utf8_lossy(Command::decode(&body).unwrap().name()).into_owned()
        })
        .collect();
    assert_eq!(pong, ["PONG"]);
}
