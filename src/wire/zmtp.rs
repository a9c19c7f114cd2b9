//! ZMTP 3.x codec: greeting, frames, commands, socket types.
//!
//! This is the byte layer of ZeroMQ's transport protocol as libzmq really speaks it
//! (RFC 23 = ZMTP 3.0, RFC 37 = ZMTP 3.1), restricted to the `NULL` security mechanism.
//! It is a pure codec: the only state is the input slice the caller hands in. The
//! connection state machine that sequences these units lives in [`crate::proto::zmtp`].
//!
//! # Decoding contract
//!
//! Every decoder takes `&[u8]` holding whatever has arrived so far and returns
//! - `Ok(Decoded::NeedMore(n))` when the input is a valid but incomplete prefix (`n` is a
//!   lower bound on the missing bytes; more may be needed after those arrive),
//! - `Ok(Decoded::Done(..))` with the decoded unit, or
//! - `Err(WireError)` as soon as the bytes seen so far can no longer become valid.
//!
//! Incomplete input is never an error, and errors are reported as early as possible (a
//! bad greeting signature is rejected from its first byte, an oversized frame from its
//! header alone). No decoder allocates memory according to a length announced by the
//! peer and no decoder panics, whatever the input.
//!
//! # Tolerance
//!
//! Decoders follow what libzmq accepts rather than the strictest reading of the RFCs:
//! greeting padding is ignored (libzmq's is not zero), any minor version ≥ 0 of major 3
//! is accepted, unknown READY properties and unknown commands are passed over, property
//! names are compared case-insensitively, and PING/PONG contexts longer than 16 bytes are
//! truncated (as libzmq does) instead of refused. Encoders emit exactly what libzmq
//! expects (notably the `Socket-Type` spelling, which libzmq compares byte for byte).

use bytes::BufMut;
use std::fmt;
use std::str::FromStr;

/// Length of a ZMTP 3.x greeting.
pub const GREETING_LEN: usize = 64;
/// The only major version this codec speaks.
pub const MAJOR_VERSION: u8 = 3;
/// Minor version announced by default: ZMTP 3.1 (SUBSCRIBE/CANCEL commands, PING/PONG).
pub const DEFAULT_MINOR_VERSION: u8 = 1;
/// Length of the zero-padded mechanism name in the greeting.
pub const MECHANISM_LEN: usize = 20;
/// Name of the only supported security mechanism.
pub const NULL_MECHANISM: &[u8] = b"NULL";

/// Frame flag: more frames of the same message follow.
pub const FLAG_MORE: u8 = 0x01;
/// Frame flag: the size field is 8 bytes (big-endian) instead of 1.
pub const FLAG_LONG: u8 = 0x02;
/// Frame flag: the frame is a command, not a message frame.
pub const FLAG_COMMAND: u8 = 0x04;
const RESERVED_FLAGS: u8 = !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND);

/// Header length of a frame whose body fits the 1-byte size field.
pub const SHORT_HEADER_LEN: usize = 2;
/// Header length of a frame with an 8-byte size field.
pub const LONG_HEADER_LEN: usize = 9;

/// Maximum PING/PONG context length (RFC 37).
pub const MAX_PING_CONTEXT: usize = 16;

/// `READY` command name.
pub const READY: &[u8] = b"READY";
/// `SUBSCRIBE` command name (ZMTP 3.1).
pub const SUBSCRIBE: &[u8] = b"SUBSCRIBE";
/// `CANCEL` command name (ZMTP 3.1).
pub const CANCEL: &[u8] = b"CANCEL";
/// `PING` command name (ZMTP 3.1).
pub const PING: &[u8] = b"PING";
/// `PONG` command name (ZMTP 3.1).
pub const PONG: &[u8] = b"PONG";
/// `ERROR` command name.
pub const ERROR: &[u8] = b"ERROR";

/// READY property carrying the socket type. libzmq matches this spelling byte for byte.
pub const PROPERTY_SOCKET_TYPE: &[u8] = b"Socket-Type";
/// READY property carrying the routing identity.
pub const PROPERTY_IDENTITY: &[u8] = b"Identity";

/// Result of a decoder that may need more input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// The input is a valid prefix; at least this many more bytes are needed.
    NeedMore(usize),
    /// A complete unit was decoded.
    Done(T),
}

/// A malformed or unsupported ZMTP unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Greeting byte 0 is not `0xFF` or the low bit of byte 9 is clear: not a ZMTP 3 peer
    /// (possibly ZMTP 1.0 or not ZeroMQ at all).
    BadSignature,
    /// The peer's major version is below 3 (ZMTP 1.0/2.0).
    UnsupportedVersion {
        /// Major version announced by the peer.
        major: u8,
    },
    /// The peer asked for a security mechanism other than `NULL`.
    UnsupportedMechanism {
        /// The raw, zero-padded mechanism field.
        mechanism: [u8; MECHANISM_LEN],
    },
    /// A frame's flags byte has bits set that ZMTP reserves.
    ReservedFlags {
        /// The whole flags byte.
        flags: u8,
    },
    /// A command frame has the MORE flag set; commands are always single frames.
    CommandWithMore,
    /// A frame declares a body larger than the caller's limit.
    FrameTooLarge {
        /// Body size declared in the frame header.
        declared: u64,
        /// The limit it exceeds.
        max: u64,
    },
    /// A command frame has an empty body or a zero-length name.
    EmptyCommand,
    /// A command's name length runs past the end of the frame.
    TruncatedCommandName {
        /// Name length announced.
        declared: usize,
        /// Bytes actually left in the frame.
        available: usize,
    },
    /// A READY property (name or value) runs past the end of the frame, or has an empty
    /// name.
    MalformedProperty,
    /// READY carries no `Socket-Type` property.
    MissingSocketType,
    /// A socket type name that is not one of ZeroMQ's.
    UnknownSocketType {
        /// The name as received.
        name: Vec<u8>,
    },
    /// A PING body shorter than its 2-byte TTL.
    TruncatedPing,
    /// An ERROR body without its reason length, or with a reason longer than the frame.
    TruncatedError,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadSignature => {
                f.write_str("not a ZMTP 3 peer: bad greeting signature (byte 0 must be 0xFF, byte 9 must have its low bit set)")
            }
            WireError::UnsupportedVersion { major } => {
                write!(f, "peer speaks ZMTP {major}.x; only ZMTP 3.x is supported")
            }
            WireError::UnsupportedMechanism { mechanism } => write!(
                f,
                "peer asked for security mechanism {:?}; only NULL is supported",
                String::from_utf8_lossy(trim_zeros(mechanism))
            ),
            WireError::ReservedFlags { flags } => {
                write!(f, "frame flags {flags:#04x} set reserved bits")
            }
            WireError::CommandWithMore => f.write_str("command frame has the MORE flag set"),
            WireError::FrameTooLarge { declared, max } => {
                write!(f, "frame declares {declared} bytes, above the limit of {max}")
            }
            WireError::EmptyCommand => f.write_str("command frame without a command name"),
            WireError::TruncatedCommandName { declared, available } => write!(
                f,
                "command name of {declared} bytes but only {available} bytes in the frame"
            ),
            WireError::MalformedProperty => {
                f.write_str("malformed READY property (empty name or truncated)")
            }
            WireError::MissingSocketType => f.write_str("READY without a Socket-Type property"),
            WireError::UnknownSocketType { name } => {
                write!(f, "unknown socket type {:?}", String::from_utf8_lossy(name))
            }
            WireError::TruncatedPing => f.write_str("PING shorter than its 2-byte TTL"),
            WireError::TruncatedError => f.write_str("ERROR command with a truncated reason"),
        }
    }
}

impl std::error::Error for WireError {}

fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or(bytes)
}

// ---------------------------------------------------------------------------------------
// Greeting
// ---------------------------------------------------------------------------------------

/// The fixed 64-byte ZMTP 3.x greeting, restricted to the `NULL` mechanism.
///
/// Layout: `FF`, 8 padding bytes, `7F`, major, minor, 20-byte mechanism, as-server, 31
/// filler bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// Major version (3).
    pub major: u8,
    /// Minor version: 0 for ZMTP 3.0 (libzmq ≤ 4.3.2), 1 for ZMTP 3.1.
    pub minor: u8,
    /// The as-server flag. Meaningless for `NULL`; sent as 0, ignored on input.
    pub as_server: bool,
}

impl Greeting {
    /// A `NULL`-mechanism greeting for ZMTP 3.`minor`.
    pub fn null(minor: u8) -> Greeting {
        Greeting {
            major: MAJOR_VERSION,
            minor,
            as_server: false,
        }
    }

    /// The 64 greeting bytes, zero padding and filler.
    pub fn encode(&self) -> [u8; GREETING_LEN] {
        let mut out = [0u8; GREETING_LEN];
        out[0] = 0xFF;
        out[9] = 0x7F;
        out[10] = self.major;
        out[11] = self.minor;
        out[12..12 + NULL_MECHANISM.len()].copy_from_slice(NULL_MECHANISM);
        out[32] = u8::from(self.as_server);
        out
    }

    /// Decodes a greeting from the bytes received so far.
    ///
    /// Checks each field as soon as it has arrived, so a non-ZMTP peer is refused after
    /// its first byte and a ZMTP 2.0 peer after its 11th. Only byte 0 and the low bit of
    /// byte 9 form the signature; the padding in between is ignored because libzmq does
    /// not zero it.
    pub fn decode(input: &[u8]) -> Result<Decoded<Greeting>, WireError> {
        if input.first().is_some_and(|&b| b != 0xFF) {
            return Err(WireError::BadSignature);
        }
        if input.get(9).is_some_and(|&b| b & 0x01 == 0) {
            return Err(WireError::BadSignature);
        }
        if let Some(&major) = input.get(10) {
            if major < MAJOR_VERSION {
                return Err(WireError::UnsupportedVersion { major });
            }
        }
        let Some(greeting) = input.get(..GREETING_LEN) else {
            return Ok(Decoded::NeedMore(GREETING_LEN.saturating_sub(input.len())));
        };
        let mut mechanism = [0u8; MECHANISM_LEN];
        mechanism.copy_from_slice(&greeting[12..12 + MECHANISM_LEN]);
        if trim_zeros(&mechanism) != NULL_MECHANISM {
            return Err(WireError::UnsupportedMechanism { mechanism });
        }
        Ok(Decoded::Done(Greeting {
            major: greeting[10],
            minor: greeting[11],
            as_server: greeting[32] != 0,
        }))
    }
}

// ---------------------------------------------------------------------------------------
// Socket types
// ---------------------------------------------------------------------------------------

/// ZeroMQ socket types, as announced in the READY `Socket-Type` property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketType {
    /// `PAIR`
    Pair,
    /// `PUB`
    Pub,
    /// `SUB`
    Sub,
    /// `REQ`
    Req,
    /// `REP`
    Rep,
    /// `DEALER`
    Dealer,
    /// `ROUTER`
    Router,
    /// `PULL`
    Pull,
    /// `PUSH`
    Push,
    /// `XPUB`
    XPub,
    /// `XSUB`
    XSub,
}

impl SocketType {
    /// Every socket type, in declaration order.
    pub const ALL: [SocketType; 11] = [
        SocketType::Pair,
        SocketType::Pub,
        SocketType::Sub,
        SocketType::Req,
        SocketType::Rep,
        SocketType::Dealer,
        SocketType::Router,
        SocketType::Pull,
        SocketType::Push,
        SocketType::XPub,
        SocketType::XSub,
    ];

    /// The exact wire name (`"PUB"`, `"XSUB"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SocketType::Pair => "PAIR",
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
            SocketType::Req => "REQ",
            SocketType::Rep => "REP",
            SocketType::Dealer => "DEALER",
            SocketType::Router => "ROUTER",
            SocketType::Pull => "PULL",
            SocketType::Push => "PUSH",
            SocketType::XPub => "XPUB",
            SocketType::XSub => "XSUB",
        }
    }

    /// Parses a wire name, ignoring ASCII case (libzmq always sends upper case).
    pub fn from_name(name: &[u8]) -> Option<SocketType> {
        SocketType::ALL
            .into_iter()
            .find(|t| t.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// Whether a socket of this type may talk to a peer of type `peer` (libzmq's table).
    pub fn is_compatible(self, peer: SocketType) -> bool {
        use SocketType::*;
        matches!(
            (self, peer),
            (Pair, Pair)
                | (Pub | XPub, Sub | XSub)
                | (Sub | XSub, Pub | XPub)
                | (Push, Pull)
                | (Pull, Push)
                | (Req, Rep | Router)
                | (Rep, Req | Dealer)
                | (Dealer, Rep | Dealer | Router)
                | (Router, Req | Dealer | Router)
        )
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SocketType {
    type Err = WireError;

    fn from_str(s: &str) -> Result<SocketType, WireError> {
        SocketType::from_name(s.as_bytes()).ok_or_else(|| WireError::UnknownSocketType {
            name: s.as_bytes().to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// What a frame carries. Making "command with MORE" unrepresentable keeps encoders honest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A message frame; `more` is set on every frame of a message but the last.
    Message {
        /// More frames of this message follow.
        more: bool,
    },
    /// A command frame (never part of a multipart message).
    Command,
}

impl FrameKind {
    /// True for command frames.
    pub fn is_command(self) -> bool {
        matches!(self, FrameKind::Command)
    }

    /// True for message frames followed by more frames of the same message.
    pub fn more(self) -> bool {
        matches!(self, FrameKind::Message { more: true })
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Command or message frame.
    pub kind: FrameKind,
    /// Bytes taken by the flags and size fields (2 or 9).
    pub header_len: usize,
    /// Bytes of body following the header.
    pub body_len: usize,
}

impl FrameHeader {
    /// Header plus body length. Cannot overflow: [`decode_frame_header`] refuses frames
    /// whose total length does not fit in `usize`.
    pub fn frame_len(&self) -> usize {
        self.header_len.saturating_add(self.body_len)
    }
}

/// A complete frame borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's header.
    pub header: FrameHeader,
    /// The frame's body.
    pub body: &'a [u8],
}

/// Header length the encoder uses for a body of `body_len` bytes.
pub fn frame_header_len(body_len: usize) -> usize {
    if body_len <= usize::from(u8::MAX) {
        SHORT_HEADER_LEN
    } else {
        LONG_HEADER_LEN
    }
}

/// Writes a frame header, in the short form when the body fits in 255 bytes.
pub fn put_frame_header<B: BufMut>(dst: &mut B, kind: FrameKind, body_len: usize) {
    let mut flags = match kind {
        FrameKind::Message { more: true } => FLAG_MORE,
        FrameKind::Message { more: false } => 0,
        FrameKind::Command => FLAG_COMMAND,
    };
    match u8::try_from(body_len) {
        Ok(short) => {
            dst.put_u8(flags);
            dst.put_u8(short);
        }
        Err(_) => {
            flags |= FLAG_LONG;
            dst.put_u8(flags);
            // usize is at most 64 bits on every supported target.
            dst.put_u64(body_len as u64);
        }
    }
}

/// Writes a whole frame (header and body).
pub fn put_frame<B: BufMut>(dst: &mut B, kind: FrameKind, body: &[u8]) {
    put_frame_header(dst, kind, body.len());
    dst.put_slice(body);
}

/// Decodes a frame header from the bytes received so far.
///
/// A body larger than `max_frame_size` is refused from the header alone, before any of it
/// arrives, so the caller never has to buffer (or allocate) what the peer announced.
pub fn decode_frame_header(
    input: &[u8],
    max_frame_size: u64,
) -> Result<Decoded<FrameHeader>, WireError> {
    let Some(&flags) = input.first() else {
        return Ok(Decoded::NeedMore(SHORT_HEADER_LEN));
    };
    if flags & RESERVED_FLAGS != 0 {
        return Err(WireError::ReservedFlags { flags });
    }
    let kind = if flags & FLAG_COMMAND != 0 {
        if flags & FLAG_MORE != 0 {
            return Err(WireError::CommandWithMore);
        }
        FrameKind::Command
    } else {
        FrameKind::Message {
            more: flags & FLAG_MORE != 0,
        }
    };
    let (header_len, declared) = if flags & FLAG_LONG != 0 {
        let Some(size) = input.get(1..LONG_HEADER_LEN) else {
            return Ok(Decoded::NeedMore(
                LONG_HEADER_LEN.saturating_sub(input.len()),
            ));
        };
        let mut be = [0u8; 8];
        be.copy_from_slice(size);
        (LONG_HEADER_LEN, u64::from_be_bytes(be))
    } else {
        let Some(&size) = input.get(1) else {
            return Ok(Decoded::NeedMore(1));
        };
        (SHORT_HEADER_LEN, u64::from(size))
    };
    if declared > max_frame_size {
        return Err(WireError::FrameTooLarge {
            declared,
            max: max_frame_size,
        });
    }
    // Only reachable with a limit above the address space (e.g. u64::MAX on 32 bits).
    let body_len = usize::try_from(declared)
        .ok()
        .filter(|len| len.checked_add(header_len).is_some())
        .ok_or(WireError::FrameTooLarge {
            declared,
            max: usize::MAX.saturating_sub(header_len) as u64,
        })?;
    Ok(Decoded::Done(FrameHeader {
        kind,
        header_len,
        body_len,
    }))
}

/// Decodes a complete frame (header and body) from the bytes received so far.
pub fn decode_frame(input: &[u8], max_frame_size: u64) -> Result<Decoded<Frame<'_>>, WireError> {
    let header = match decode_frame_header(input, max_frame_size)? {
        Decoded::NeedMore(n) => return Ok(Decoded::NeedMore(n)),
        Decoded::Done(header) => header,
    };
    match input.get(header.header_len..header.frame_len()) {
        Some(body) => Ok(Decoded::Done(Frame { header, body })),
        None => Ok(Decoded::NeedMore(
            header.frame_len().saturating_sub(input.len()),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// The READY command of the `NULL` mechanism, reduced to the properties volley uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready<'a> {
    /// The sender's socket type (`Socket-Type` property).
    pub socket_type: SocketType,
    /// The sender's routing identity (`Identity` property), if it sent one.
    pub identity: Option<&'a [u8]>,
}

/// A ZMTP command, borrowing its data from the frame body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `READY`: end of the `NULL` handshake, with the sender's metadata.
    Ready(Ready<'a>),
    /// `SUBSCRIBE` (3.1): the body is the topic prefix.
    Subscribe(&'a [u8]),
    /// `CANCEL` (3.1): the body is the topic prefix.
    Cancel(&'a [u8]),
    /// `PING` (3.1): heartbeat request.
    Ping {
        /// How long the receiver may wait for traffic before closing, in deciseconds
        /// (0: no limit).
        ttl_deciseconds: u16,
        /// Opaque context to echo in the PONG (at most 16 bytes).
        context: &'a [u8],
    },
    /// `PONG` (3.1): heartbeat reply.
    Pong {
        /// The context of the PING it answers (at most 16 bytes).
        context: &'a [u8],
    },
    /// `ERROR`: the sender is about to close, with a human-readable reason.
    Error {
        /// Reason text (at most 255 bytes).
        reason: &'a [u8],
    },
    /// A command volley does not know; ignored for forward compatibility.
    Unknown {
        /// Command name.
        name: &'a [u8],
        /// Command data following the name.
        data: &'a [u8],
    },
}

fn clamp(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

fn name_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl<'a> Command<'a> {
    /// The command's name as sent on the wire.
    pub fn name(&self) -> &'a [u8] {
        match self {
            Command::Ready(_) => READY,
            Command::Subscribe(_) => SUBSCRIBE,
            Command::Cancel(_) => CANCEL,
            Command::Ping { .. } => PING,
            Command::Pong { .. } => PONG,
            Command::Error { .. } => ERROR,
            Command::Unknown { name, .. } => clamp(name, usize::from(u8::MAX)),
        }
    }

    /// Decodes a command from the body of a command frame.
    ///
    /// Command names are matched exactly (as libzmq does); unknown ones decode as
    /// [`Command::Unknown`].
    pub fn decode(body: &'a [u8]) -> Result<Command<'a>, WireError> {
        let Some((&name_len, rest)) = body.split_first() else {
            return Err(WireError::EmptyCommand);
        };
        let name_len = usize::from(name_len);
        if name_len == 0 {
            return Err(WireError::EmptyCommand);
        }
        let (Some(name), Some(data)) = (rest.get(..name_len), rest.get(name_len..)) else {
            return Err(WireError::TruncatedCommandName {
                declared: name_len,
                available: rest.len(),
            });
        };
        match name {
            READY => decode_ready(data).map(Command::Ready),
            SUBSCRIBE => Ok(Command::Subscribe(data)),
            CANCEL => Ok(Command::Cancel(data)),
            PING => match data {
                [hi, lo, context @ ..] => Ok(Command::Ping {
                    ttl_deciseconds: u16::from_be_bytes([*hi, *lo]),
                    context: clamp(context, MAX_PING_CONTEXT),
                }),
                _ => Err(WireError::TruncatedPing),
            },
            PONG => Ok(Command::Pong {
                context: clamp(data, MAX_PING_CONTEXT),
            }),
            ERROR => {
                let Some((&len, reason)) = data.split_first() else {
                    return Err(WireError::TruncatedError);
                };
                reason
                    .get(..usize::from(len))
                    .map(|reason| Command::Error { reason })
                    .ok_or(WireError::TruncatedError)
            }
            _ => Ok(Command::Unknown { name, data }),
        }
    }

    /// Length of the command frame's body (name length byte, name, data) as
    /// [`Command::encode`] writes it.
    pub fn body_len(&self) -> usize {
        let data_len = match self {
            Command::Ready(ready) => {
                property_len(PROPERTY_SOCKET_TYPE, ready.socket_type.name().len())
                    + ready
                        .identity
                        .map_or(0, |id| property_len(PROPERTY_IDENTITY, id.len()))
            }
            Command::Subscribe(prefix) | Command::Cancel(prefix) => prefix.len(),
            Command::Ping { context, .. } => 2 + clamp(context, MAX_PING_CONTEXT).len(),
            Command::Pong { context } => clamp(context, MAX_PING_CONTEXT).len(),
            Command::Error { reason } => 1 + clamp(reason, usize::from(u8::MAX)).len(),
            Command::Unknown { data, .. } => data.len(),
        };
        1 + self.name().len() + data_len
    }

    /// Writes the whole command frame (header and body).
    ///
    /// Fields that do not fit their length field are truncated rather than refused: PING
    /// and PONG contexts to 16 bytes, an ERROR reason and an unknown command's name to
    /// 255 bytes. Identity values are written whole (the 4-byte length field cannot
    /// overflow for any in-memory slice smaller than 4 GiB).
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        put_frame_header(dst, FrameKind::Command, self.body_len());
        let name = self.name();
        // `name()` is clamped to 255 bytes.
        dst.put_u8(name.len() as u8);
        dst.put_slice(name);
        match self {
            Command::Ready(ready) => {
                put_property(
                    dst,
                    PROPERTY_SOCKET_TYPE,
                    ready.socket_type.name().as_bytes(),
                );
                if let Some(identity) = ready.identity {
                    put_property(dst, PROPERTY_IDENTITY, identity);
                }
            }
            Command::Subscribe(prefix) | Command::Cancel(prefix) => dst.put_slice(prefix),
            Command::Ping {
                ttl_deciseconds,
                context,
            } => {
                dst.put_u16(*ttl_deciseconds);
                dst.put_slice(clamp(context, MAX_PING_CONTEXT));
            }
            Command::Pong { context } => dst.put_slice(clamp(context, MAX_PING_CONTEXT)),
            Command::Error { reason } => {
                let reason = clamp(reason, usize::from(u8::MAX));
                dst.put_u8(reason.len() as u8);
                dst.put_slice(reason);
            }
            Command::Unknown { data, .. } => dst.put_slice(data),
        }
    }
}

fn property_len(name: &[u8], value_len: usize) -> usize {
    1 + name.len() + 4 + value_len
}

fn put_property<B: BufMut>(dst: &mut B, name: &[u8], value: &[u8]) {
    // Property names are our own constants, all shorter than 256 bytes.
    dst.put_u8(name.len() as u8);
    dst.put_slice(name);
    dst.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
    dst.put_slice(clamp(value, u32::MAX as usize));
}

fn decode_ready(mut data: &[u8]) -> Result<Ready<'_>, WireError> {
    let mut socket_type = None;
    let mut identity = None;
    while let Some((&name_len, rest)) = data.split_first() {
        let name_len = usize::from(name_len);
        if name_len == 0 {
            return Err(WireError::MalformedProperty);
        }
        let name = rest.get(..name_len).ok_or(WireError::MalformedProperty)?;
        let rest = rest.get(name_len..).ok_or(WireError::MalformedProperty)?;
        let len_bytes = rest.get(..4).ok_or(WireError::MalformedProperty)?;
        let mut be = [0u8; 4];
        be.copy_from_slice(len_bytes);
        let value_len =
            usize::try_from(u32::from_be_bytes(be)).map_err(|_| WireError::MalformedProperty)?;
        let rest = rest.get(4..).ok_or(WireError::MalformedProperty)?;
        let value = rest.get(..value_len).ok_or(WireError::MalformedProperty)?;
        data = rest.get(value_len..).ok_or(WireError::MalformedProperty)?;

        // The first occurrence wins; later duplicates are ignored like unknown properties.
        if name_eq(name, PROPERTY_SOCKET_TYPE) {
            if socket_type.is_none() {
                socket_type = Some(SocketType::from_name(value).ok_or_else(|| {
                    WireError::UnknownSocketType {
                        name: value.to_vec(),
                    }
                })?);
            }
        } else if name_eq(name, PROPERTY_IDENTITY) && identity.is_none() {
            identity = Some(value);
        }
    }
    Ok(Ready {
        socket_type: socket_type.ok_or(WireError::MissingSocketType)?,
        identity,
    })
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

/// A subscription change, in either of its two wire forms.
///
/// ZMTP 3.1 sends `SUBSCRIBE`/`CANCEL` commands; ZMTP 3.0 (and libzmq 4.2) sends a
/// one-frame data message whose first byte is `0x01` (subscribe) or `0x00` (cancel),
/// followed by the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription<'a> {
    /// Add one reference to this prefix.
    Subscribe(&'a [u8]),
    /// Drop one reference to this prefix.
    Cancel(&'a [u8]),
}

impl<'a> Subscription<'a> {
    /// The topic prefix.
    pub fn prefix(&self) -> &'a [u8] {
        match self {
            Subscription::Subscribe(prefix) | Subscription::Cancel(prefix) => prefix,
        }
    }

    /// Interprets a data frame body in the 3.0 form; `None` if it is an ordinary message.
    pub fn from_message_body(body: &'a [u8]) -> Option<Subscription<'a>> {
        match body.split_first() {
            Some((1, prefix)) => Some(Subscription::Subscribe(prefix)),
            Some((0, prefix)) => Some(Subscription::Cancel(prefix)),
            _ => None,
        }
    }

    /// The equivalent 3.1 command.
    pub fn to_command(self) -> Command<'a> {
        match self {
            Subscription::Subscribe(prefix) => Command::Subscribe(prefix),
            Subscription::Cancel(prefix) => Command::Cancel(prefix),
        }
    }

    /// Writes the 3.1 form: a `SUBSCRIBE` or `CANCEL` command frame.
    pub fn encode_command<B: BufMut>(&self, dst: &mut B) {
        self.to_command().encode(dst);
    }

    /// Writes the 3.0 form: a single-frame data message `01|00` + prefix.
    pub fn encode_message<B: BufMut>(&self, dst: &mut B) {
        let prefix = self.prefix();
        put_frame_header(
            dst,
            FrameKind::Message { more: false },
            prefix.len().saturating_add(1),
        );
        dst.put_u8(u8::from(matches!(self, Subscription::Subscribe(_))));
        dst.put_slice(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(command: Command<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        command.encode(&mut out);
        assert_eq!(
            out.len(),
            frame_header_len(command.body_len()) + command.body_len(),
            "body_len must agree with encode"
        );
        out
    }

    fn command_body(frame: &[u8]) -> &[u8] {
        match decode_frame(frame, u64::MAX).unwrap() {
            Decoded::Done(f) => {
                assert!(f.header.kind.is_command());
                assert_eq!(f.header.frame_len(), frame.len());
                f.body
            }
            Decoded::NeedMore(n) => panic!("incomplete frame, need {n}"),
        }
    }

    #[test]
    fn greeting_exact_bytes() {
        let mut expected = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1];
        expected.extend_from_slice(b"NULL");
        expected.extend_from_slice(&[0; 16]);
        expected.push(0); // as-server
        expected.extend_from_slice(&[0; 31]);
        assert_eq!(expected.len(), 64);
        assert_eq!(Greeting::null(1).encode().as_slice(), expected.as_slice());

        let g30 = Greeting::null(0).encode();
        assert_eq!(g30[11], 0);
        assert_eq!(&g30[..11], &expected[..11]);
        assert_eq!(&g30[12..], &expected[12..]);
    }

    #[test]
    fn greeting_roundtrip_and_incremental() {
        for minor in [0, 1, 7] {
            let bytes = Greeting::null(minor).encode();
            for len in 0..GREETING_LEN {
                assert_eq!(
                    Greeting::decode(&bytes[..len]),
                    Ok(Decoded::NeedMore(GREETING_LEN - len)),
                    "prefix of {len} bytes"
                );
            }
            assert_eq!(
                Greeting::decode(&bytes),
                Ok(Decoded::Done(Greeting::null(minor)))
            );
            // Trailing bytes (the start of the handshake) are not the greeting's concern.
            let mut more = bytes.to_vec();
            more.extend_from_slice(&[4, 0]);
            assert_eq!(
                Greeting::decode(&more),
                Ok(Decoded::Done(Greeting::null(minor)))
            );
        }
    }

    #[test]
    fn greeting_accepts_libzmq_padding_and_signature_bits() {
        let mut bytes = Greeting::null(1).encode();
        // libzmq puts non-zero bytes in the padding and may set other bits of byte 9.
        bytes[1..9].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        bytes[9] = 0xFF;
        bytes[32] = 1;
        bytes[40] = 0xAB;
        assert_eq!(
            Greeting::decode(&bytes),
            Ok(Decoded::Done(Greeting {
                major: 3,
                minor: 1,
                as_server: true
            }))
        );
    }

    #[test]
    fn greeting_rejections_are_early_and_typed() {
        assert_eq!(Greeting::decode(&[0x00]), Err(WireError::BadSignature));
        let mut bytes = Greeting::null(1).encode();
        bytes[9] = 0x7E;
        assert_eq!(Greeting::decode(&bytes[..10]), Err(WireError::BadSignature));

        let mut v2 = Greeting::null(1).encode();
        v2[10] = 2;
        assert_eq!(
            Greeting::decode(&v2[..11]),
            Err(WireError::UnsupportedVersion { major: 2 })
        );
        // A higher major is not refused at the codec level.
        let mut v4 = Greeting::null(0).encode();
        v4[10] = 4;
        assert!(matches!(Greeting::decode(&v4), Ok(Decoded::Done(_))));

        let mut plain = Greeting::null(1).encode();
        plain[12..17].copy_from_slice(b"PLAIN");
        let err = Greeting::decode(&plain).unwrap_err();
        assert!(matches!(err, WireError::UnsupportedMechanism { .. }));
        assert!(err.to_string().contains("PLAIN"), "{err}");
        // Mechanism fields are not decided before they are complete.
        assert_eq!(Greeting::decode(&plain[..20]), Ok(Decoded::NeedMore(44)));

        let mut nullx = Greeting::null(1).encode();
        nullx[16] = b'X';
        assert!(matches!(
            Greeting::decode(&nullx),
            Err(WireError::UnsupportedMechanism { .. })
        ));
    }

    #[test]
    fn socket_type_names_roundtrip() {
        let names = [
            "PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
        ];
        for (t, name) in SocketType::ALL.into_iter().zip(names) {
            assert_eq!(t.name(), name);
            assert_eq!(t.to_string(), name);
            assert_eq!(SocketType::from_name(name.as_bytes()), Some(t));
            assert_eq!(
                SocketType::from_name(name.to_ascii_lowercase().as_bytes()),
                Some(t)
            );
            assert_eq!(name.parse::<SocketType>(), Ok(t));
        }
        assert_eq!(SocketType::from_name(b"PUBX"), None);
        assert_eq!(SocketType::from_name(b""), None);
        assert_eq!(
            "STREAM".parse::<SocketType>(),
            Err(WireError::UnknownSocketType {
                name: b"STREAM".to_vec()
            })
        );
    }

    #[test]
    fn socket_type_compatibility() {
        use SocketType::*;
        let legal = [
            (Pub, Sub),
            (Pub, XSub),
            (XPub, Sub),
            (XPub, XSub),
            (Push, Pull),
            (Req, Rep),
            (Req, Router),
            (Rep, Dealer),
            (Dealer, Dealer),
            (Dealer, Router),
            (Router, Router),
            (Pair, Pair),
        ];
        for a in SocketType::ALL {
            for b in SocketType::ALL {
                let expected = legal.contains(&(a, b)) || legal.contains(&(b, a));
                assert_eq!(a.is_compatible(b), expected, "{a} <-> {b}");
            }
        }
        assert!(!Pub.is_compatible(Pub));
        assert!(!Pub.is_compatible(Push));
        assert!(!Sub.is_compatible(Sub));
        assert!(!Push.is_compatible(Push));
    }

    #[test]
    fn frame_header_short_and_long_bytes() {
        let mut out = Vec::new();
        put_frame(&mut out, FrameKind::Message { more: false }, b"abc");
        assert_eq!(out, [0x00, 3, b'a', b'b', b'c']);

        out.clear();
        put_frame_header(&mut out, FrameKind::Message { more: true }, 255);
        assert_eq!(out, [0x01, 255]);

        out.clear();
        put_frame_header(&mut out, FrameKind::Message { more: true }, 256);
        assert_eq!(out, [0x03, 0, 0, 0, 0, 0, 0, 1, 0]);

        out.clear();
        put_frame_header(&mut out, FrameKind::Command, 0x0102_0304);
        assert_eq!(out, [0x06, 0, 0, 0, 0, 1, 2, 3, 4]);

        out.clear();
        put_frame_header(&mut out, FrameKind::Command, 5);
        assert_eq!(out, [0x04, 5]);

        assert_eq!(frame_header_len(0), 2);
        assert_eq!(frame_header_len(255), 2);
        assert_eq!(frame_header_len(256), 9);
    }

    #[test]
    fn frame_header_decode() {
        assert_eq!(decode_frame_header(&[], 10), Ok(Decoded::NeedMore(2)));
        assert_eq!(decode_frame_header(&[0x01], 10), Ok(Decoded::NeedMore(1)));
        assert_eq!(
            decode_frame_header(&[0x01, 7], 10),
            Ok(Decoded::Done(FrameHeader {
                kind: FrameKind::Message { more: true },
                header_len: 2,
                body_len: 7
            }))
        );
        let long = [0x06, 0, 0, 0, 0, 0, 0, 1, 0];
        for len in 1..long.len() {
            assert_eq!(
                decode_frame_header(&long[..len], 1000),
                Ok(Decoded::NeedMore(9 - len))
            );
        }
        assert_eq!(
            decode_frame_header(&long, 1000),
            Ok(Decoded::Done(FrameHeader {
                kind: FrameKind::Command,
                header_len: 9,
                body_len: 256
            }))
        );
        // The long form for a small body is legal.
        assert_eq!(
            decode_frame_header(&[0x02, 0, 0, 0, 0, 0, 0, 0, 3], 3),
            Ok(Decoded::Done(FrameHeader {
                kind: FrameKind::Message { more: false },
                header_len: 9,
                body_len: 3
            }))
        );
        // A short frame at the exact limit passes, one above fails.
        assert!(matches!(
            decode_frame_header(&[0x00, 10], 10),
            Ok(Decoded::Done(_))
        ));
        assert_eq!(
            decode_frame_header(&[0x00, 11], 10),
            Err(WireError::FrameTooLarge {
                declared: 11,
                max: 10
            })
        );
    }

    #[test]
    fn huge_declared_frame_is_refused_from_the_header() {
        // 2^62 bytes: any attempt to allocate it would abort the test process.
        let header = [0x02, 0x40, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_frame_header(&header, 1 << 20),
            Err(WireError::FrameTooLarge {
                declared: 1 << 62,
                max: 1 << 20
            })
        );
        assert_eq!(
            decode_frame(&header, 1 << 20),
            Err(WireError::FrameTooLarge {
                declared: 1 << 62,
                max: 1 << 20
            })
        );
        // Even with no limit, a size that cannot be addressed is refused, not allocated.
        let max = [0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            decode_frame_header(&max, u64::MAX),
            Err(WireError::FrameTooLarge { .. })
        ));
        // With no limit and a merely large size, the decoder just waits for the body.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            decode_frame(&header, u64::MAX),
            Ok(Decoded::NeedMore(1usize << 62))
        );
    }

    #[test]
    fn illegal_flag_bits_and_command_with_more() {
        for flags in [0x08u8, 0x10, 0x20, 0x40, 0x80, 0xF8, 0x09] {
            assert_eq!(
                decode_frame_header(&[flags, 0], 100),
                Err(WireError::ReservedFlags { flags })
            );
            // Decided from the flags byte alone.
            assert_eq!(
                decode_frame_header(&[flags], 100),
                Err(WireError::ReservedFlags { flags })
            );
        }
        assert_eq!(
            decode_frame_header(&[0x05, 0], 100),
            Err(WireError::CommandWithMore)
        );
        assert_eq!(
            decode_frame_header(&[0x07], 100),
            Err(WireError::CommandWithMore)
        );
    }

    #[test]
    fn decode_frame_waits_for_body() {
        let frame = [0x00, 3, b'x', b'y', b'z', 0xEE];
        for len in 0..5 {
            assert!(
                matches!(decode_frame(&frame[..len], 10), Ok(Decoded::NeedMore(n)) if n >= 1 && n <= 5 - len)
            );
        }
        assert_eq!(decode_frame(&frame[..4], 10), Ok(Decoded::NeedMore(1)));
        let Ok(Decoded::Done(f)) = decode_frame(&frame, 10) else {
            panic!()
        };
        assert_eq!(f.body, b"xyz");
        assert_eq!(f.header.frame_len(), 5);
    }

    #[test]
    fn ready_for_pub_exact_bytes() {
        let bytes = encoded(Command::Ready(Ready {
            socket_type: SocketType::Pub,
            identity: None,
        }));
        let mut expected = vec![0x04, 25, 5];
        expected.extend_from_slice(b"READY");
        expected.push(11);
        expected.extend_from_slice(b"Socket-Type");
        expected.extend_from_slice(&[0, 0, 0, 3]);
        expected.extend_from_slice(b"PUB");
        assert_eq!(bytes, expected);
        assert_eq!(
            Command::decode(command_body(&bytes)),
            Ok(Command::Ready(Ready {
                socket_type: SocketType::Pub,
                identity: None
            }))
        );
    }

    #[test]
    fn ready_with_identity_bytes() {
        let bytes = encoded(Command::Ready(Ready {
            socket_type: SocketType::Dealer,
            identity: Some(b"id1"),
        }));
        let mut expected = vec![0x04, 44, 5];
        expected.extend_from_slice(b"READY");
        expected.push(11);
        expected.extend_from_slice(b"Socket-Type");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"DEALER");
        expected.push(8);
        expected.extend_from_slice(b"Identity");
        expected.extend_from_slice(&[0, 0, 0, 3]);
        expected.extend_from_slice(b"id1");
        assert_eq!(bytes, expected);
        assert_eq!(
            Command::decode(command_body(&bytes)),
            Ok(Command::Ready(Ready {
                socket_type: SocketType::Dealer,
                identity: Some(b"id1")
            }))
        );
    }

    fn ready_body(props: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = vec![5];
        body.extend_from_slice(b"READY");
        for (name, value) in props {
            body.push(name.len() as u8);
            body.extend_from_slice(name);
            body.extend_from_slice(&(value.len() as u32).to_be_bytes());
            body.extend_from_slice(value);
        }
        body
    }

    #[test]
    fn ready_parsing_is_tolerant() {
        let body = ready_body(&[
            (b"Resource", b"/x"),
            (b"socket-type", b"sub"),
            (b"X-Custom", b""),
            (b"IDENTITY", b""),
            (b"Socket-Type", b"PUSH"),
        ]);
        assert_eq!(
            Command::decode(&body),
            Ok(Command::Ready(Ready {
                socket_type: SocketType::Sub,
                identity: Some(b"")
            }))
        );
    }

    #[test]
    fn ready_malformed() {
        assert_eq!(
            Command::decode(&ready_body(&[(b"Identity", b"x")])),
            Err(WireError::MissingSocketType)
        );
        assert_eq!(
            Command::decode(&ready_body(&[(b"Socket-Type", b"STREAM")])),
            Err(WireError::UnknownSocketType {
                name: b"STREAM".to_vec()
            })
        );
        let good = ready_body(&[(b"Socket-Type", b"PUB")]);
        // Every truncation inside the property is malformed, never a panic.
        for cut in 7..good.len() {
            assert_eq!(
                Command::decode(&good[..cut]),
                Err(WireError::MalformedProperty),
                "cut at {cut}"
            );
        }
        let mut empty_name = ready_body(&[]);
        empty_name.extend_from_slice(&[0, 0, 0, 0, 0]);
        assert_eq!(
            Command::decode(&empty_name),
            Err(WireError::MalformedProperty)
        );
        let mut huge_value = ready_body(&[]);
        huge_value.push(1);
        huge_value.push(b'a');
        huge_value.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            Command::decode(&huge_value),
            Err(WireError::MalformedProperty)
        );
    }

    #[test]
    fn command_name_errors() {
        assert_eq!(Command::decode(&[]), Err(WireError::EmptyCommand));
        assert_eq!(Command::decode(&[0]), Err(WireError::EmptyCommand));
        assert_eq!(
            Command::decode(&[5, b'R', b'E']),
            Err(WireError::TruncatedCommandName {
                declared: 5,
                available: 2
            })
        );
        assert_eq!(
            Command::decode(b"\x03FOOdata"),
            Ok(Command::Unknown {
                name: b"FOO",
                data: b"data"
            })
        );
        // Command names are case-sensitive, as in libzmq.
        assert!(matches!(
            Command::decode(b"\x04ping\x00\x00"),
            Ok(Command::Unknown { .. })
        ));
    }

    #[test]
    fn subscribe_and_cancel_bytes() {
        let sub = encoded(Command::Subscribe(b"topic"));
        let mut expected = vec![0x04, 15, 9];
        expected.extend_from_slice(b"SUBSCRIBE");
        expected.extend_from_slice(b"topic");
        assert_eq!(sub, expected);
        assert_eq!(
            Command::decode(command_body(&sub)),
            Ok(Command::Subscribe(b"topic"))
        );

        let cancel = encoded(Command::Cancel(b""));
        let mut expected = vec![0x04, 7, 6];
        expected.extend_from_slice(b"CANCEL");
        assert_eq!(cancel, expected);
        assert_eq!(
            Command::decode(command_body(&cancel)),
            Ok(Command::Cancel(b""))
        );

        let mut out = Vec::new();
        Subscription::Subscribe(b"ab").encode_command(&mut out);
        assert_eq!(out, encoded(Command::Subscribe(b"ab")));
    }

    #[test]
    fn legacy_subscription_form() {
        let mut out = Vec::new();
        Subscription::Subscribe(b"ab").encode_message(&mut out);
        assert_eq!(out, [0x00, 3, 1, b'a', b'b']);
        out.clear();
        Subscription::Cancel(b"").encode_message(&mut out);
        assert_eq!(out, [0x00, 1, 0]);

        assert_eq!(
            Subscription::from_message_body(b"\x01ab"),
            Some(Subscription::Subscribe(b"ab"))
        );
        assert_eq!(
            Subscription::from_message_body(b"\x00"),
            Some(Subscription::Cancel(b""))
        );
        assert_eq!(Subscription::from_message_body(b"\x02ab"), None);
        assert_eq!(Subscription::from_message_body(b""), None);
    }

    #[test]
    fn ping_pong_bytes() {
        let ping = encoded(Command::Ping {
            ttl_deciseconds: 0x0102,
            context: b"ctx",
        });
        let mut expected = vec![0x04, 10, 4];
        expected.extend_from_slice(b"PING");
        expected.extend_from_slice(&[1, 2]);
        expected.extend_from_slice(b"ctx");
        assert_eq!(ping, expected);
        assert_eq!(
            Command::decode(command_body(&ping)),
            Ok(Command::Ping {
                ttl_deciseconds: 0x0102,
                context: b"ctx"
            })
        );

        let pong = encoded(Command::Pong { context: b"ctx" });
        let mut expected = vec![0x04, 8, 4];
        expected.extend_from_slice(b"PONG");
        expected.extend_from_slice(b"ctx");
        assert_eq!(pong, expected);

        assert_eq!(
            Command::decode(b"\x04PING\x00"),
            Err(WireError::TruncatedPing)
        );
        assert_eq!(
            Command::decode(b"\x04PING\x00\x00"),
            Ok(Command::Ping {
                ttl_deciseconds: 0,
                context: b""
            })
        );
        // Over-long contexts are truncated to 16 bytes, both ways.
        let long = [7u8; 20];
        let mut body = b"\x04PING\x00\x01".to_vec();
        body.extend_from_slice(&long);
        assert_eq!(
            Command::decode(&body),
            Ok(Command::Ping {
                ttl_deciseconds: 1,
                context: &long[..16]
            })
        );
        let encoded_long = encoded(Command::Pong { context: &long });
        assert_eq!(encoded_long.len(), 2 + 1 + 4 + 16);
    }

    #[test]
    fn error_command() {
        let err = encoded(Command::Error { reason: b"nope" });
        let mut expected = vec![0x04, 11, 5];
        expected.extend_from_slice(b"ERROR");
        expected.push(4);
        expected.extend_from_slice(b"nope");
        assert_eq!(err, expected);
        assert_eq!(
            Command::decode(command_body(&err)),
            Ok(Command::Error { reason: b"nope" })
        );
        assert_eq!(
            Command::decode(b"\x05ERROR"),
            Err(WireError::TruncatedError)
        );
        assert_eq!(
            Command::decode(b"\x05ERROR\x05abc"),
            Err(WireError::TruncatedError)
        );
        let long = [b'x'; 300];
        let e = encoded(Command::Error { reason: &long });
        assert_eq!(
            Command::decode(command_body(&e)),
            Ok(Command::Error {
                reason: &long[..255]
            })
        );
    }

    #[test]
    fn errors_display_something_useful() {
        let all = [
            WireError::BadSignature,
            WireError::UnsupportedVersion { major: 2 },
            WireError::UnsupportedMechanism {
                mechanism: *b"CURVE\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            },
            WireError::ReservedFlags { flags: 0x80 },
            WireError::CommandWithMore,
            WireError::FrameTooLarge {
                declared: 9,
                max: 8,
            },
            WireError::EmptyCommand,
            WireError::TruncatedCommandName {
                declared: 4,
                available: 1,
            },
            WireError::MalformedProperty,
            WireError::MissingSocketType,
            WireError::UnknownSocketType {
                name: b"FOO".to_vec(),
            },
            WireError::TruncatedPing,
            WireError::TruncatedError,
        ];
        for e in all {
            let text = e.to_string();
            assert!(text.len() > 10, "{e:?} -> {text}");
        }
        assert!(WireError::UnsupportedMechanism {
            mechanism: *b"CURVE\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
        }
        .to_string()
        .contains("\"CURVE\""));
    }

    proptest::proptest! {
        #[test]
        fn frame_decoder_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64), max in 0u64..300) {
            let _ = decode_frame(&bytes, max);
            let _ = Greeting::decode(&bytes);
            let _ = Command::decode(&bytes);
        }

        #[test]
        fn frame_roundtrip(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), more: bool, command: bool) {
            let kind = if command { FrameKind::Command } else { FrameKind::Message { more } };
            let mut out = Vec::new();
            put_frame(&mut out, kind, &body);
            out.push(0xAA); // next frame's first byte must not be consumed
            let Ok(Decoded::Done(frame)) = decode_frame(&out, body.len() as u64) else { panic!() };
            proptest::prop_assert_eq!(frame.header.kind, kind);
            proptest::prop_assert_eq!(frame.body, body.as_slice());
            proptest::prop_assert_eq!(frame.header.frame_len(), out.len() - 1);
        }
    }
}
