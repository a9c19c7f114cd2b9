//! A hand-written ZMTP 3.1 peer for the TCP tests (`#[path]`-included): it shakes hands
//! and then reads or writes raw bytes, so a test controls exactly what the socket sees.

use std::io::Write;
use std::net::TcpStream;

/// Connects to `addr` (`tcp://` optional) and sends a greeting (NULL mechanism) and READY
/// with the given socket type.
pub fn raw_peer(addr: &str, socket_type: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr.trim_start_matches("tcp://")).unwrap();
    let mut greeting = [0u8; 64];
    greeting[0] = 0xFF;
    greeting[9] = 0x7F;
    greeting[10] = 3;
    greeting[11] = 1;
    greeting[12..16].copy_from_slice(b"NULL");
    s.write_all(&greeting).unwrap();
    let mut ready = vec![0x04, 0, 5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    ready.extend_from_slice(socket_type.as_bytes());
    ready[1] = (ready.len() - 2) as u8;
    s.write_all(&ready).unwrap();
    s
}

/// The first frame of each complete message in a ZMTP byte stream after its 64-byte
/// greeting (commands skipped).
pub fn first_frames(stream: &[u8]) -> Vec<&[u8]> {
    use volley::wire::zmtp::{decode_frame, Decoded};
    let mut rest = stream.get(64..).unwrap_or_default();
    let mut firsts = Vec::new();
    let mut first = None;
    while let Ok(Decoded::Done(frame)) = decode_frame(rest, u64::MAX) {
        if !frame.header.kind.is_command() {
            let body = *first.get_or_insert(frame.body);
            if !frame.header.kind.more() {
                firsts.push(body);
                first = None;
            }
        }
        rest = &rest[frame.header.frame_len()..];
    }
    firsts
}

/// Counts the complete messages in a ZMTP byte stream after its 64-byte greeting.
pub fn count_messages(stream: &[u8]) -> usize {
    first_frames(stream).len()
}
