//! Multicast datagram codec: the byte layout of volley's UDP multicast protocol.
//!
//! The protocol is written down in `docs/multicast-protocol.md`; this module is its byte
//! layer and nothing else. Every datagram starts with the 4-byte preamble `"VY"`,
//! version, kind, and is one of three frames:
//!
//! - [`Data`] (publisher → group): a run of whole messages packed together, or one
//!   fragment of a message too large for one datagram;
//! - [`Heartbeat`] (publisher → group): the publisher's window edges (lead and trail),
//!   sent when it is idle so receivers notice tail loss and unrecoverable data;
//! - [`Nak`] (receiver → group): a range of datagram sequence numbers to retransmit.
//!
//! All integers are little-endian (the byte order of every host volley targets, so the
//! header fields are read without a swap). The fixed headers are `zerocopy` structs
//! ([`DataHeader`], [`FragmentHeader`], [`HeartbeatHeader`], [`NakHeader`]); the decoded
//! values handed to the protocol layer are plain structs with native integers.
//!
//! # Message encoding inside DATA
//!
//! A message is a list of frames (multipart, as in ZMTP). Each frame is a 4-byte
//! little-endian word — bit 31 [`FRAME_MORE`] (another frame of the same message
//! follows), bits 0..31 the frame length — followed by the frame bytes. A packed DATA
//! datagram holds `count` such messages back to back and nothing else; a fragment DATA
//! datagram holds a slice of exactly one encoded message.
//!
//! # Decoding contract
//!
//! [`decode`] validates the whole datagram (header, flags, and for packed DATA every
//! frame of every message) before returning, so a datagram it accepts can be iterated
//! with [`PackedMessages`] / [`MessageFrames`] without further failure. It never
//! allocates and never panics, whatever the input.

use std::fmt;
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"VY";
/// Protocol version this codec speaks.
pub const VERSION: u8 = 1;

/// Frame kind: DATA.
pub const KIND_DATA: u8 = 1;
/// Frame kind: HEARTBEAT.
pub const KIND_HEARTBEAT: u8 = 2;
/// Frame kind: NAK.
pub const KIND_NAK: u8 = 3;

/// DATA flag: the datagram holds the first byte of its (first) message.
pub const FLAG_BEGIN: u8 = 0x80;
/// DATA flag: the datagram holds the last byte of its (last) message.
pub const FLAG_END: u8 = 0x40;
/// DATA flag: this is a retransmission answering a NAK.
pub const FLAG_RETRANSMIT: u8 = 0x20;
/// DATA and HEARTBEAT flag: the publisher keeps a retransmit buffer and answers NAKs.
pub const FLAG_RELIABLE: u8 = 0x10;
const DATA_FLAGS: u8 = FLAG_BEGIN | FLAG_END | FLAG_RETRANSMIT | FLAG_RELIABLE;
const HEARTBEAT_FLAGS: u8 = FLAG_RELIABLE;

/// Bit of a message frame's length word: another frame of the same message follows.
pub const FRAME_MORE: u32 = 0x8000_0000;
/// Largest frame length the 31-bit length field can carry.
pub const MAX_FRAME_LEN: usize = (FRAME_MORE - 1) as usize;
/// Bytes in front of every message frame.
pub const FRAME_HEADER_LEN: usize = 4;

/// Length of [`DataHeader`].
pub const DATA_HEADER_LEN: usize = size_of::<DataHeader>();
/// Length of [`FragmentHeader`].
pub const FRAGMENT_HEADER_LEN: usize = size_of::<FragmentHeader>();
/// Length of a whole HEARTBEAT datagram.
pub const HEARTBEAT_LEN: usize = size_of::<HeartbeatHeader>();
/// Length of a whole NAK datagram.
pub const NAK_LEN: usize = size_of::<NakHeader>();

/// Wire layout of a DATA header (40 bytes), followed by a [`FragmentHeader`] unless both
/// [`FLAG_BEGIN`] and [`FLAG_END`] are set, then the payload.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct DataHeader {
    /// [`MAGIC`].
    pub magic: [u8; 2],
    /// [`VERSION`].
    pub version: u8,
    /// [`KIND_DATA`].
    pub kind: u8,
    /// [`FLAG_BEGIN`], [`FLAG_END`], [`FLAG_RETRANSMIT`], [`FLAG_RELIABLE`].
    pub flags: u8,
    /// Zero.
    pub reserved: u8,
    /// Messages in a packed datagram; 1 in a fragment.
    pub count: U16,
    /// The publisher's session (random per publisher instance).
    pub session_id: U32,
    /// Application stream on the group.
    pub stream_id: U32,
    /// Datagram sequence number (per session, +1 per DATA datagram, kept on retransmit).
    pub seq: U64,
    /// Message number of the first message this datagram carries bytes of.
    pub msg_seq: U64,
    /// Oldest datagram sequence number the publisher can still retransmit.
    pub trail_seq: U64,
}

/// Wire layout of the fragment header of a DATA datagram that is not both BEGIN and END.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct FragmentHeader {
    /// Length of the whole encoded message.
    pub total_len: U32,
    /// Offset of this fragment's first byte within the encoded message.
    pub offset: U32,
}

/// Wire layout of a HEARTBEAT datagram (40 bytes, nothing follows).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct HeartbeatHeader {
    /// [`MAGIC`].
    pub magic: [u8; 2],
    /// [`VERSION`].
    pub version: u8,
    /// [`KIND_HEARTBEAT`].
    pub kind: u8,
    /// [`FLAG_RELIABLE`] or zero.
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// The publisher's session.
    pub session_id: U32,
    /// Application stream on the group.
    pub stream_id: U32,
    /// Sequence number the next new DATA datagram will carry.
    pub lead_seq: U64,
    /// Message number the next new message will carry.
    pub lead_msg: U64,
    /// Oldest datagram sequence number the publisher can still retransmit.
    pub trail_seq: U64,
}

/// Wire layout of a NAK datagram (32 bytes, nothing follows).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
pub struct NakHeader {
    /// [`MAGIC`].
    pub magic: [u8; 2],
    /// [`VERSION`].
    pub version: u8,
    /// [`KIND_NAK`].
    pub kind: u8,
    /// Zero.
    pub reserved: [u8; 4],
    /// Session of the publisher asked to retransmit.
    pub session_id: U32,
    /// Stream of that publisher.
    pub stream_id: U32,
    /// First missing datagram sequence number.
    pub start_seq: U64,
    /// Number of missing datagrams from `start_seq` on (at least 1).
    pub len: U32,
    /// Random id of the receiver that sent the NAK (so it can ignore its own echo).
    pub receiver_id: U32,
}

/// Where a fragment sits in its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Length of the whole encoded message (frames and their length words).
    pub total_len: u32,
    /// Offset of this fragment's first byte within the encoded message.
    pub offset: u32,
}

/// A decoded DATA header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data {
    /// The publisher's session.
    pub session_id: u32,
    /// Application stream.
    pub stream_id: u32,
    /// Datagram sequence number.
    pub seq: u64,
    /// Message number of the first message this datagram carries bytes of.
    pub msg_seq: u64,
    /// Oldest retransmittable datagram.
    pub trail_seq: u64,
    /// Messages in a packed datagram; 1 in a fragment.
    pub count: u16,
    /// Holds the first byte of its message ([`FLAG_BEGIN`]).
    pub begin: bool,
    /// Holds the last byte of its message ([`FLAG_END`]).
    pub end: bool,
    /// A retransmission ([`FLAG_RETRANSMIT`]).
    pub retransmit: bool,
    /// The publisher answers NAKs ([`FLAG_RELIABLE`]).
    pub reliable: bool,
    /// Present unless `begin && end`.
    pub fragment: Option<Fragment>,
}

impl Data {
    /// Whether the datagram holds whole messages (not a fragment).
    pub fn is_packed(&self) -> bool {
        self.begin && self.end
    }

    /// Message number after the last message this datagram completes or continues:
    /// `msg_seq + count` for a packed datagram, `msg_seq + 1` for a last fragment, and
    /// `msg_seq` for a first or middle fragment (its message goes on in the next one).
    pub fn next_msg_seq(&self) -> u64 {
        if self.is_packed() {
            self.msg_seq.saturating_add(u64::from(self.count))
        } else if self.end {
            self.msg_seq.saturating_add(1)
        } else {
            self.msg_seq
        }
    }

    fn flags(&self) -> u8 {
        (if self.begin { FLAG_BEGIN } else { 0 })
            | (if self.end { FLAG_END } else { 0 })
            | (if self.retransmit { FLAG_RETRANSMIT } else { 0 })
            | (if self.reliable { FLAG_RELIABLE } else { 0 })
    }

    /// Length of the header this value encodes to (40, or 48 with a fragment header).
    pub fn header_len(&self) -> usize {
        if self.fragment.is_some() {
            DATA_HEADER_LEN + FRAGMENT_HEADER_LEN
        } else {
            DATA_HEADER_LEN
        }
    }

    /// Writes the header (and fragment header) to the front of `out`; returns its length.
    ///
    /// # Panics
    /// If `out` is shorter than [`Data::header_len`] (a caller bug, not input).
    pub fn encode_header(&self, out: &mut [u8]) -> usize {
        let header = DataHeader {
            magic: MAGIC,
            version: VERSION,
            kind: KIND_DATA,
            flags: self.flags(),
            reserved: 0,
            count: U16::new(self.count),
            session_id: U32::new(self.session_id),
            stream_id: U32::new(self.stream_id),
            seq: U64::new(self.seq),
            msg_seq: U64::new(self.msg_seq),
            trail_seq: U64::new(self.trail_seq),
        };
        out[..DATA_HEADER_LEN].copy_from_slice(header.as_bytes());
        if let Some(fragment) = self.fragment {
            let fragment = FragmentHeader {
                total_len: U32::new(fragment.total_len),
                offset: U32::new(fragment.offset),
            };
            out[DATA_HEADER_LEN..DATA_HEADER_LEN + FRAGMENT_HEADER_LEN]
                .copy_from_slice(fragment.as_bytes());
        }
        self.header_len()
    }
}

/// Byte offset of the flags in every DATA datagram (patched on retransmit).
pub const DATA_FLAGS_OFFSET: usize = 4;
/// Byte offset of `trail_seq` in every DATA datagram (patched on retransmit).
pub const DATA_TRAIL_OFFSET: usize = 32;

/// A decoded HEARTBEAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The publisher's session.
    pub session_id: u32,
    /// Application stream.
    pub stream_id: u32,
    /// Sequence number of the next new DATA datagram.
    pub lead_seq: u64,
    /// Message number of the next new message.
    pub lead_msg: u64,
    /// Oldest retransmittable datagram (`lead_seq` when nothing is).
    pub trail_seq: u64,
    /// The publisher answers NAKs.
    pub reliable: bool,
}

impl Heartbeat {
    /// Writes the datagram to the front of `out`; returns [`HEARTBEAT_LEN`].
    ///
    /// # Panics
    /// If `out` is shorter than [`HEARTBEAT_LEN`].
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let header = HeartbeatHeader {
            magic: MAGIC,
            version: VERSION,
            kind: KIND_HEARTBEAT,
            flags: if self.reliable { FLAG_RELIABLE } else { 0 },
            reserved: [0; 3],
            session_id: U32::new(self.session_id),
            stream_id: U32::new(self.stream_id),
            lead_seq: U64::new(self.lead_seq),
            lead_msg: U64::new(self.lead_msg),
            trail_seq: U64::new(self.trail_seq),
        };
        out[..HEARTBEAT_LEN].copy_from_slice(header.as_bytes());
        HEARTBEAT_LEN
    }
}

/// A decoded NAK: please retransmit datagrams `start_seq .. start_seq + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nak {
    /// Session of the publisher asked.
    pub session_id: u32,
    /// Stream of that publisher.
    pub stream_id: u32,
    /// First missing datagram.
    pub start_seq: u64,
    /// Number of missing datagrams (at least 1).
    pub len: u32,
    /// Random id of the receiver that sent it.
    pub receiver_id: u32,
}

impl Nak {
    /// One past the last datagram asked for.
    pub fn end_seq(&self) -> u64 {
        self.start_seq.saturating_add(u64::from(self.len))
    }

    /// Writes the datagram to the front of `out`; returns [`NAK_LEN`].
    ///
    /// # Panics
    /// If `out` is shorter than [`NAK_LEN`].
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let header = NakHeader {
            magic: MAGIC,
            version: VERSION,
            kind: KIND_NAK,
            reserved: [0; 4],
            session_id: U32::new(self.session_id),
            stream_id: U32::new(self.stream_id),
            start_seq: U64::new(self.start_seq),
            len: U32::new(self.len),
            receiver_id: U32::new(self.receiver_id),
        };
        out[..NAK_LEN].copy_from_slice(header.as_bytes());
        NAK_LEN
    }
}

/// One decoded datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// DATA with its payload (packed messages, or one fragment's bytes).
    Data(Data, &'a [u8]),
    /// HEARTBEAT.
    Heartbeat(Heartbeat),
    /// NAK.
    Nak(Nak),
}

/// Why a datagram is not a valid frame of this protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header its kind needs (or than the 4-byte preamble).
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The first two bytes are not [`MAGIC`]: not our protocol.
    BadMagic,
    /// A version this codec does not speak.
    UnsupportedVersion(u8),
    /// A kind other than DATA, HEARTBEAT or NAK.
    UnknownKind(u8),
    /// Flag bits that are undefined for this kind, or a reserved byte not zero.
    ReservedBits,
    /// A HEARTBEAT or NAK with bytes after its fixed length.
    TrailingBytes,
    /// A packed DATA whose payload is not exactly `count` well-formed messages.
    BadPackedPayload,
    /// A fragment whose offset/length do not fit its message, or that is empty.
    BadFragment,
    /// A NAK naming no datagram.
    EmptyNak,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len, need } => {
                write!(f, "datagram of {len} bytes, header needs {need}")
            }
            DecodeError::BadMagic => f.write_str("not a volley multicast datagram (bad magic)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::ReservedBits => f.write_str("reserved flag bits or bytes set"),
            DecodeError::TrailingBytes => f.write_str("bytes after a fixed-size frame"),
            DecodeError::BadPackedPayload => {
                f.write_str("packed payload is not exactly `count` well-formed messages")
            }
            DecodeError::BadFragment => f.write_str("fragment does not fit its message"),
            DecodeError::EmptyNak => f.write_str("NAK of an empty range"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes and fully validates one datagram.
pub fn decode(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if datagram.len() < 4 {
        return Err(DecodeError::TooShort {
            len: datagram.len(),
            need: 4,
        });
    }
    if datagram[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if datagram[2] != VERSION {
        return Err(DecodeError::UnsupportedVersion(datagram[2]));
    }
    match datagram[3] {
        KIND_DATA => decode_data(datagram),
        KIND_HEARTBEAT => decode_heartbeat(datagram),
        KIND_NAK => decode_nak(datagram),
        kind => Err(DecodeError::UnknownKind(kind)),
    }
}

fn too_short(len: usize, need: usize) -> DecodeError {
    DecodeError::TooShort { len, need }
}

fn decode_data(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (header, rest) = DataHeader::read_from_prefix(datagram)
        .map_err(|_| too_short(datagram.len(), DATA_HEADER_LEN))?;
    if header.flags & !DATA_FLAGS != 0 || header.reserved != 0 {
        return Err(DecodeError::ReservedBits);
    }
    let begin = header.flags & FLAG_BEGIN != 0;
    let end = header.flags & FLAG_END != 0;
    let mut data = Data {
        session_id: header.session_id.get(),
        stream_id: header.stream_id.get(),
        seq: header.seq.get(),
        msg_seq: header.msg_seq.get(),
        trail_seq: header.trail_seq.get(),
        count: header.count.get(),
        begin,
        end,
        retransmit: header.flags & FLAG_RETRANSMIT != 0,
        reliable: header.flags & FLAG_RELIABLE != 0,
        fragment: None,
    };
    if begin && end {
        if data.count == 0 || count_messages(rest) != Some(usize::from(data.count)) {
            return Err(DecodeError::BadPackedPayload);
        }
        return Ok(Frame::Data(data, rest));
    }
    let (fragment, payload) = FragmentHeader::read_from_prefix(rest)
        .map_err(|_| too_short(datagram.len(), DATA_HEADER_LEN + FRAGMENT_HEADER_LEN))?;
    let fragment = Fragment {
        total_len: fragment.total_len.get(),
        offset: fragment.offset.get(),
    };
    let offset = u64::from(fragment.offset);
    let fragment_end = offset + payload.len() as u64;
    let total = u64::from(fragment.total_len);
    let fits = data.count == 1
        && !payload.is_empty()
        && fragment_end <= total
        && (!begin || offset == 0)
        && (!end || fragment_end == total)
        // A message that needs fragmenting is never completed by its first fragment.
        && !(begin && fragment_end == total)
        && total >= FRAME_HEADER_LEN as u64;
    if !fits {
        return Err(DecodeError::BadFragment);
    }
    data.fragment = Some(fragment);
    Ok(Frame::Data(data, payload))
}

fn decode_heartbeat(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (header, rest) = HeartbeatHeader::read_from_prefix(datagram)
        .map_err(|_| too_short(datagram.len(), HEARTBEAT_LEN))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    if header.flags & !HEARTBEAT_FLAGS != 0 || header.reserved != [0; 3] {
        return Err(DecodeError::ReservedBits);
    }
    Ok(Frame::Heartbeat(Heartbeat {
        session_id: header.session_id.get(),
        stream_id: header.stream_id.get(),
        lead_seq: header.lead_seq.get(),
        lead_msg: header.lead_msg.get(),
        trail_seq: header.trail_seq.get(),
        reliable: header.flags & FLAG_RELIABLE != 0,
    }))
}

fn decode_nak(datagram: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (header, rest) =
        NakHeader::read_from_prefix(datagram).map_err(|_| too_short(datagram.len(), NAK_LEN))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    if header.reserved != [0; 4] {
        return Err(DecodeError::ReservedBits);
    }
    if header.len.get() == 0 {
        return Err(DecodeError::EmptyNak);
    }
    Ok(Frame::Nak(Nak {
        session_id: header.session_id.get(),
        stream_id: header.stream_id.get(),
        start_seq: header.start_seq.get(),
        len: header.len.get(),
        receiver_id: header.receiver_id.get(),
    }))
}

/// Number of well-formed messages `payload` consists of exactly, or `None`.
fn count_messages(payload: &[u8]) -> Option<usize> {
    let mut messages = PackedMessages { rest: payload };
    let mut count = 0usize;
    loop {
        match messages.next_checked() {
            Ok(Some(_)) => count += 1,
            Ok(None) => return Some(count),
            Err(()) => return None,
        }
    }
}

/// Whether `encoded` is exactly one well-formed message (a reassembled fragment run).
pub fn is_single_message(encoded: &[u8]) -> bool {
    let mut messages = PackedMessages { rest: encoded };
    matches!(messages.next_checked(), Ok(Some(_))) && messages.rest.is_empty()
}

/// The messages of a packed DATA payload, each as its encoded bytes (iterate its frames
/// with [`MessageFrames`]). Stops at the first malformed byte, which [`decode`] has
/// already ruled out for payloads it accepted.
#[derive(Clone, Debug)]
pub struct PackedMessages<'a> {
    rest: &'a [u8],
}

impl<'a> PackedMessages<'a> {
    /// Iterates the messages of `payload`.
    pub fn new(payload: &'a [u8]) -> PackedMessages<'a> {
        PackedMessages { rest: payload }
    }

    fn next_checked(&mut self) -> Result<Option<&'a [u8]>, ()> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let mut at = 0usize;
        loop {
            let Some(word) = self.rest.get(at..at + FRAME_HEADER_LEN) else {
                return Err(());
            };
            let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            let len = (word & !FRAME_MORE) as usize;
            at += FRAME_HEADER_LEN;
            if self.rest.len() - at < len {
                return Err(());
            }
            at += len;
            if word & FRAME_MORE == 0 {
                let (message, rest) = self.rest.split_at(at);
                self.rest = rest;
                return Ok(Some(message));
            }
        }
    }
}

impl<'a> Iterator for PackedMessages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.next_checked().unwrap_or_else(|()| {
            self.rest = &[];
            None
        })
    }
}

/// The frames of one encoded message, as `(offset, len)` within it (so that a caller
/// holding the message in a `Bytes` can slice frames without copying).
#[derive(Clone, Debug)]
pub struct MessageFrames<'a> {
    message: &'a [u8],
    at: usize,
}

impl<'a> MessageFrames<'a> {
    /// Iterates the frames of `message` (one message's encoded bytes).
    pub fn new(message: &'a [u8]) -> MessageFrames<'a> {
        MessageFrames { message, at: 0 }
    }
}

impl Iterator for MessageFrames<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let word = self.message.get(self.at..self.at + FRAME_HEADER_LEN)?;
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let len = (word & !FRAME_MORE) as usize;
        let start = self.at + FRAME_HEADER_LEN;
        if self.message.len() - start < len {
            self.at = self.message.len();
            return None;
        }
        self.at = if word & FRAME_MORE == 0 {
            // Last frame: whatever follows belongs to another message.
            self.message.len()
        } else {
            start + len
        };
        Some((start, len))
    }
}

/// Encoded length of a message made of `parts`: each part plus its 4-byte length word.
pub fn encoded_message_len<B: AsRef<[u8]>>(parts: &[B]) -> usize {
    parts
        .iter()
        .map(|part| FRAME_HEADER_LEN + part.as_ref().len())
        .sum()
}

/// Appends the encoding of a message made of `parts` to `out`.
///
/// # Panics
/// If a part is longer than [`MAX_FRAME_LEN`] (callers check the message size first).
pub fn encode_message<B: AsRef<[u8]>>(parts: &[B], out: &mut Vec<u8>) {
    for (i, part) in parts.iter().enumerate() {
        let part = part.as_ref();
        assert!(
            part.len() <= MAX_FRAME_LEN,
            "frame longer than 2^31-1 bytes"
        );
        let more = if i + 1 < parts.len() { FRAME_MORE } else { 0 };
        out.extend_from_slice(&(part.len() as u32 | more).to_le_bytes());
        out.extend_from_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(begin: bool, end: bool, fragment: Option<Fragment>) -> Data {
        Data {
            session_id: 0xDEAD_BEEF,
            stream_id: 7,
            seq: 1 << 40,
            msg_seq: 99,
            trail_seq: 12,
            count: 1,
            begin,
            end,
            retransmit: true,
            reliable: true,
            fragment,
        }
    }

    #[test]
    fn header_sizes_are_the_documented_ones() {
        assert_eq!(DATA_HEADER_LEN, 40);
        assert_eq!(FRAGMENT_HEADER_LEN, 8);
        assert_eq!(HEARTBEAT_LEN, 40);
        assert_eq!(NAK_LEN, 32);
    }

    #[test]
    fn packed_data_round_trips() {
        let mut payload = Vec::new();
        encode_message(&[&b"topic"[..], b"body"], &mut payload);
        encode_message(&[&b""[..]], &mut payload);
        let mut d = data(true, true, None);
        d.count = 2;
        let mut buf = vec![0u8; 64];
        let n = d.encode_header(&mut buf);
        buf.truncate(n);
        buf.extend_from_slice(&payload);
        let Ok(Frame::Data(back, body)) = decode(&buf) else {
            panic!("{:?}", decode(&buf))
        };
        assert_eq!(back, d);
        let messages: Vec<&[u8]> = PackedMessages::new(body).collect();
        assert_eq!(messages.len(), 2);
        let frames: Vec<&[u8]> = MessageFrames::new(messages[0])
            .map(|(at, len)| &messages[0][at..at + len])
            .collect();
        assert_eq!(frames, [&b"topic"[..], b"body"]);
        let frames: Vec<(usize, usize)> = MessageFrames::new(messages[1]).collect();
        assert_eq!(frames, [(4, 0)]);
        assert_eq!(back.next_msg_seq(), 101);
    }

    #[test]
    fn packed_count_must_match() {
        let mut buf = vec![0u8; DATA_HEADER_LEN];
        let mut d = data(true, true, None);
        d.count = 3;
        d.encode_header(&mut buf);
        encode_message(&[b"x"], &mut buf);
        encode_message(&[b"y"], &mut buf);
        assert_eq!(decode(&buf), Err(DecodeError::BadPackedPayload));
        // A truncated frame is refused too.
        d.count = 2;
        d.encode_header(&mut buf);
        buf.pop();
        assert_eq!(decode(&buf), Err(DecodeError::BadPackedPayload));
    }

    #[test]
    fn fragments_round_trip_and_are_checked() {
        let frag = Fragment {
            total_len: 100,
            offset: 0,
        };
        let mut buf = vec![0u8; 48];
        let d = data(true, false, Some(frag));
        d.encode_header(&mut buf);
        buf.extend_from_slice(&[1u8; 60]);
        assert_eq!(decode(&buf), Ok(Frame::Data(d, &[1u8; 60][..])));
        assert_eq!(d.next_msg_seq(), 99);

        let last = data(
            false,
            true,
            Some(Fragment {
                total_len: 100,
                offset: 60,
            }),
        );
        last.encode_header(&mut buf);
        assert_eq!(decode(&buf), Err(DecodeError::BadFragment), "60+60 > 100");
        buf.truncate(48 + 40);
        assert!(decode(&buf).is_ok());
        assert_eq!(last.next_msg_seq(), 100);
        // BEGIN at a non-zero offset.
        let bad = data(
            true,
            false,
            Some(Fragment {
                total_len: 100,
                offset: 4,
            }),
        );
        bad.encode_header(&mut buf);
        assert_eq!(decode(&buf), Err(DecodeError::BadFragment));
        // Empty fragment.
        buf.truncate(48);
        data(false, false, Some(frag)).encode_header(&mut buf);
        assert_eq!(decode(&buf), Err(DecodeError::BadFragment));
    }

    #[test]
    fn heartbeat_and_nak_round_trip() {
        let hb = Heartbeat {
            session_id: 1,
            stream_id: 2,
            lead_seq: 3,
            lead_msg: 4,
            trail_seq: 5,
            reliable: true,
        };
        let mut buf = [0u8; 64];
        let n = hb.encode(&mut buf);
        assert_eq!(decode(&buf[..n]), Ok(Frame::Heartbeat(hb)));
        assert_eq!(decode(&buf[..n + 1]), Err(DecodeError::TrailingBytes));
        let nak = Nak {
            session_id: 1,
            stream_id: 2,
            start_seq: u64::MAX - 1,
            len: 9,
            receiver_id: 77,
        };
        let n = nak.encode(&mut buf);
        assert_eq!(decode(&buf[..n]), Ok(Frame::Nak(nak)));
        assert_eq!(nak.end_seq(), u64::MAX);
        Nak { len: 0, ..nak }.encode(&mut buf);
        assert_eq!(decode(&buf[..n]), Err(DecodeError::EmptyNak));
    }

    #[test]
    fn garbage_is_typed() {
        assert_eq!(
            decode(b"VY"),
            Err(DecodeError::TooShort { len: 2, need: 4 })
        );
        assert_eq!(decode(b"XY\x01\x01"), Err(DecodeError::BadMagic));
        assert_eq!(
            decode(b"VY\x02\x01"),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(decode(b"VY\x01\x09"), Err(DecodeError::UnknownKind(9)));
        assert_eq!(
            decode(b"VY\x01\x01rest"),
            Err(DecodeError::TooShort { len: 8, need: 40 })
        );
        let mut buf = [0u8; 64];
        let n = Heartbeat {
            session_id: 1,
            stream_id: 2,
            lead_seq: 3,
            lead_msg: 4,
            trail_seq: 5,
            reliable: false,
        }
        .encode(&mut buf);
        buf[4] = 0x01;
        assert_eq!(decode(&buf[..n]), Err(DecodeError::ReservedBits));
    }
}
