//! TCP and Unix stream sockets behind one type, so the reactor treats `tcp://` and
//! `ipc://` connections alike.

use std::io::{self, IoSlice, Read, Write};
use std::path::PathBuf;

use bytes::BytesMut;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::socket::Endpoint;

/// Bytes a connection's input buffer makes room for when it runs low.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Free space below which a read first makes room for [`READ_CHUNK`]: enough for a
/// burst of small messages, so that a read rarely stops at a full buffer.
const MIN_READ_ROOM: usize = 8 * 1024;
/// The largest read a busy-polling reader leaves in the kernel's receive queue until its
/// next poll (see [`Stream::read_input`]).
const DEFER_CONSUME_MAX: usize = 4 * 1024;

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Starts a non-blocking connect.
    pub(crate) fn connect(target: &ConnectTarget) -> io::Result<Stream> {
        match target {
            ConnectTarget::Tcp(addr) => {
                let s = TcpStream::connect(*addr)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            ConnectTarget::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
        }
    }

    /// The pending error of a non-blocking connect, or whether it completed.
    pub(crate) fn connect_result(&self) -> io::Result<bool> {
        match self {
            Stream::Tcp(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Stream::Unix(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                Ok(true)
            }
        }
    }

    /// Ends the connection in both directions now, whoever still holds the descriptor.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        }
    }

    /// Reads what the socket holds straight into the free space of `buf` (no copy
    /// through a scratch buffer), first making room for [`READ_CHUNK`] bytes when less
    /// than [`MIN_READ_ROOM`] is free. Returns the bytes read and the room offered: a
    /// read that fills less than the room emptied the socket. End of stream is `Ok((0,
    /// _))`.
    pub(crate) fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<(usize, usize)> {
        self.receive_into(buf, 0, usize::MAX)
    }

    /// `recv` with `flags` into at most `max` bytes of `buf`'s spare capacity (made
    /// [`READ_CHUNK`] first when less than [`MIN_READ_ROOM`] is free). `recv`, not
    /// `read`: on a socket it skips the file layer's checks, a saving on every empty
    /// poll of a busy-polling reader.
    #[inline]
    fn receive_into(
        &mut self,
        buf: &mut BytesMut,
        flags: libc::c_int,
        max: usize,
    ) -> io::Result<(usize, usize)> {
        if buf.capacity() - buf.len() < MIN_READ_ROOM {
            buf.reserve(READ_CHUNK);
        }
        let sock = self.sock();
        let spare = buf.spare_capacity_mut();
        let room = spare.len().min(max);
        let n = retry(|| sock.recv_with_flags(&mut spare[..room], flags))?;
        // SAFETY: `recv` initialized the first `n` (<= `room`) bytes of the spare
        // capacity, which follow the buffer's length.
        unsafe { buf.set_len(buf.len() + n) };
        Ok((n, room))
    }

    /// Reads what the socket holds into `input`. `deferral` carries, from one call to
    /// the next, the bytes the last call only peeked (dropped from the kernel first)
    /// and whether the reads run in bulk. With `defer` (a busy-polling user thread),
    /// a read that is not in bulk peeks at most [`DEFER_CONSUME_MAX`] + 1 bytes and
    /// leaves them in the kernel's receive queue until the next call.
    ///
    /// Why: Linux acknowledges a small segment on a one-way connection from inside the
    /// receive that empties the queue, and on loopback that also runs the sender's
    /// processing of the acknowledgement, all before the receive returns. A peek leaves
    /// the queue full, so the acknowledgement goes out with the next poll's drop, after
    /// the application has handled the message. Measured with a raw pair of one-way
    /// TCP connections in busy-poll ping-pong (73 B, p50 of RTT/2, six alternating
    /// rounds, peeking lower in each): 6.8-9.9 us plain, 4.2-7.3 us peeking, against
    /// 3.9-7.0 us for one connection whose replies carry the acknowledgements.
    ///
    /// A peek that fills its [`DEFER_CONSUME_MAX`] + 1 bytes is bulk data, acknowledged
    /// by its segment count anyway: it is dropped at once, and the reads that follow
    /// are plain `recv`s, one system call each, until one finds little or nothing.
    pub(crate) fn read_input(
        &mut self,
        input: &mut BytesMut,
        deferral: &mut Deferral,
        defer: bool,
    ) -> io::Result<(usize, usize)> {
        if deferral.peeked > 0 {
            let n = std::mem::take(&mut deferral.peeked);
            self.discard(n)?;
        }
        if !(defer && self.defers_consumption()) {
            return self.read_into(input);
        }
        if deferral.bulk {
            let read = self.read_into(input);
            deferral.bulk = matches!(read, Ok((n, _)) if n > DEFER_CONSUME_MAX);
            return read;
        }
        let (n, room) = self.receive_into(input, libc::MSG_PEEK, DEFER_CONSUME_MAX + 1)?;
        if n > DEFER_CONSUME_MAX {
            self.discard(n)?;
            deferral.bulk = true;
        } else {
            deferral.peeked = n;
        }
        Ok((n, room))
    }

    /// Whether [`read_input`](Self::read_input) may peek and drop in place of a read:
    /// TCP on Linux, where a receive with `MSG_TRUNC` drops bytes without copying them.
    /// (Unix sockets send no acknowledgements, so there is nothing to defer.)
    fn defers_consumption(&self) -> bool {
        cfg!(target_os = "linux") && matches!(self, Stream::Tcp(_))
    }

    /// Drops the first `n` (<= [`DEFER_CONSUME_MAX`] + 1) bytes of the receive queue,
    /// which a peek already copied. With `MSG_TRUNC` TCP copies nothing; the scratch
    /// buffer is only there so that a kernel that did copy would have room for them.
    fn discard(&mut self, mut n: usize) -> io::Result<()> {
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); DEFER_CONSUME_MAX + 1];
        let sock = self.sock();
        while n > 0 {
            let len = n.min(scratch.len());
            match retry(|| sock.recv_with_flags(&mut scratch[..len], libc::MSG_TRUNC)) {
                // The bytes were in the queue (peeked): none left means the peer's data
                // went away, which only a broken connection does.
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(got) => n -= got.min(n),
                // Never "try again later": the caller has already counted these bytes as
                // dropped, and a later read would see them twice.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::other("peeked bytes left the receive queue"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            Stream::Unix(s) => socket2::SockRef::from(s),
        }
    }

    pub(crate) fn peer_name(&self) -> String {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map(|a| Endpoint::from_addr(a).to_string())
                .unwrap_or_else(|_| "tcp://?".into()),
            Stream::Unix(_) => "ipc peer".into(),
        }
    }
}

/// What a peeking reader carries from one [`Stream::read_input`] to the next.
#[derive(Debug, Default)]
pub(crate) struct Deferral {
    /// Bytes at the front of the kernel's receive queue already copied into the input
    /// (peeked), which the next read drops first.
    peeked: usize,
    /// The last read found bulk data: read plainly until a read finds little.
    bulk: bool,
}

/// Runs a socket call again while a signal interrupts it.
fn retry(mut call: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

// `send` and `sendmsg` rather than `write` and `writev`: they skip the file layer, and
// `MSG_NOSIGNAL` turns a write to a connection the peer closed into `EPIPE` even in a
// process that has not ignored SIGPIPE (one whose `main` is not Rust's).
impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sock = self.sock();
        retry(|| sock.send_with_flags(buf, libc::MSG_NOSIGNAL))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let sock = self.sock();
        retry(|| sock.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

/// A resolved connect target.
#[derive(Debug, Clone)]
pub(crate) enum ConnectTarget {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    /// The path is removed again when the listener closes.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds, returning the listener and the endpoint as bound (the real port for 0).
    pub(crate) fn bind(endpoint: &Endpoint) -> Result<(Listener, Endpoint), crate::socket::Error> {
        match endpoint {
            Endpoint::Udp(_) => Err(crate::socket::Error::InvalidEndpoint(format!(
                "{endpoint}: a multicast group is joined, not listened on"
            ))),
            Endpoint::Tcp { .. } => {
                let mut last = None;
                for addr in endpoint.socket_addrs()? {
                    match TcpListener::bind(addr) {
                        Ok(l) => {
                            let bound = Endpoint::from_addr(l.local_addr()?);
                            return Ok((Listener::Tcp(l), bound));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last
                    .map(crate::socket::Error::from)
                    .unwrap_or_else(|| crate::socket::Error::InvalidEndpoint(endpoint.to_string())))
            }
            Endpoint::Ipc(path) => {
                // A stale socket file from an earlier run would make bind fail; a live one
                // answers a connect, and then we refuse rather than steal it.
                if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                let l = UnixListener::bind(path)?;
                Ok((Listener::Unix(l, path.clone()), endpoint.clone()))
            }
        }
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(r, t, i),
            Listener::Unix(l, _) => l.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(r, t, i),
            Listener::Unix(l, _) => l.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(r),
            Listener::Unix(l, _) => l.deregister(r),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};
    use std::os::fd::AsRawFd;

    /// A connected loopback pair: the writing end, and the reading end as a `Stream`.
    fn pair() -> (StdStream, Stream) {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let writer = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        writer.set_nodelay(true).unwrap();
        let (reader, _) = listener.accept().unwrap();
        reader.set_nonblocking(true).unwrap();
        (writer, Stream::Tcp(TcpStream::from_std(reader)))
    }

    /// Bytes waiting in the kernel's receive queue.
    fn queued(stream: &Stream) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one `c_int` through the pointer, which is valid.
        let rc = unsafe { libc::ioctl(stream.sock().as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "FIONREAD: {}", io::Error::last_os_error());
        n as usize
    }

    /// Waits until the kernel holds `n` bytes for `stream`, so that one read sees them all.
    fn wait_queued(stream: &Stream, n: usize) {
        let start = std::time::Instant::now();
        while queued(stream) < n {
            assert!(start.elapsed().as_secs() < 10, "the bytes did not arrive");
            std::thread::yield_now();
        }
    }

    /// Reads (spinning on WouldBlock) until `input` has grown by `n` bytes.
    fn read_exactly(
        stream: &mut Stream,
        input: &mut BytesMut,
        deferral: &mut Deferral,
        defer: bool,
        n: usize,
    ) {
        let target = input.len() + n;
        let start = std::time::Instant::now();
        while input.len() < target {
            match stream.read_input(input, deferral, defer) {
                Ok((0, _)) => panic!("end of stream"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => panic!("{e}"),
            }
            assert!(start.elapsed().as_secs() < 10, "the bytes did not arrive");
        }
        assert_eq!(input.len(), target, "read past what was sent");
    }

    #[test]
    fn deferred_reads_deliver_every_byte_exactly_once() {
        let (mut writer, mut stream) = pair();
        let (mut input, mut deferral) = (BytesMut::new(), Deferral::default());
        let mut sent = Vec::new();
        let mut received = Vec::new();
        // Small writes (peeked and dropped a poll later), writes above the deferral
        // limit (dropped at once), and reads without deferral (the I/O thread reading
        // in a busy-polling thread's place) in between.
        let sizes = [1usize, 73, 200, 10_000, 5, 4096, 4097, 64, 20_000, 3, 100];
        for (i, &size) in sizes.iter().cycle().take(60).enumerate() {
            let chunk: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
            writer.write_all(&chunk).unwrap();
            sent.extend_from_slice(&chunk);
            read_exactly(&mut stream, &mut input, &mut deferral, i % 7 != 3, size);
            // What the decoder takes leaves `input`; a drop must not touch the rest.
            if i % 2 == 0 {
                received.extend_from_slice(&input.split_to(input.len()));
            }
        }
        received.extend_from_slice(&input.split_to(input.len()));
        assert_eq!(received, sent);
        // Nothing more arrives, and the last peeked bytes leave the kernel without
        // showing up again.
        assert!(matches!(
            stream.read_input(&mut input, &mut deferral, true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
        assert!(input.is_empty());
        assert_eq!(deferral.peeked, 0);
        assert_eq!(queued(&stream), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_small_read_stays_queued_until_the_next_one_and_a_large_one_does_not() {
        let (mut writer, mut stream) = pair();
        let (mut input, mut deferral) = (BytesMut::new(), Deferral::default());
        writer.write_all(&[7u8; 100]).unwrap();
        read_exactly(&mut stream, &mut input, &mut deferral, true, 100);
        assert_eq!(deferral.peeked, 100);
        assert_eq!(
            queued(&stream),
            100,
            "peeked bytes stay in the receive queue"
        );
        assert!(matches!(
            stream.read_input(&mut input, &mut deferral, true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
        assert_eq!((deferral.peeked, queued(&stream), input.len()), (0, 0, 100));

        let big = DEFER_CONSUME_MAX * 3;
        writer.write_all(&vec![9u8; big]).unwrap();
        read_exactly(&mut stream, &mut input, &mut deferral, true, big);
        assert_eq!(input.len(), 100 + big);
        assert!(
            deferral.peeked <= DEFER_CONSUME_MAX,
            "a large read is dropped at once"
        );
        assert_eq!(queued(&stream), deferral.peeked);

        // Without deferral (the I/O thread), a read drops what is left first.
        writer.write_all(&[1u8; 10]).unwrap();
        read_exactly(&mut stream, &mut input, &mut deferral, false, 10);
        assert_eq!((deferral.peeked, queued(&stream)), (0, 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bulk_reads_do_not_peek_until_a_read_finds_little() {
        let (mut writer, mut stream) = pair();
        let (mut input, mut deferral) = (BytesMut::new(), Deferral::default());
        // A burst well above the limit: one capped peek, dropped at once, then plain
        // reads, which leave nothing in the kernel.
        let big = DEFER_CONSUME_MAX * 4;
        writer.write_all(&vec![3u8; big]).unwrap();
        wait_queued(&stream, big);
        read_exactly(&mut stream, &mut input, &mut deferral, true, big);
        assert!(deferral.bulk, "the burst's last read was large");
        assert_eq!((deferral.peeked, queued(&stream)), (0, 0));
        // The first small read after it is still a plain one and ends the bulk run ...
        writer.write_all(&[4u8; 50]).unwrap();
        wait_queued(&stream, 50);
        read_exactly(&mut stream, &mut input, &mut deferral, true, 50);
        assert!(!deferral.bulk);
        assert_eq!((deferral.peeked, queued(&stream)), (0, 0));
        // ... so the next one peeks again.
        writer.write_all(&[5u8; 50]).unwrap();
        wait_queued(&stream, 50);
        read_exactly(&mut stream, &mut input, &mut deferral, true, 50);
        assert_eq!((deferral.peeked, queued(&stream)), (50, 50));
        assert_eq!(input.len(), big + 100);
    }

    #[test]
    fn the_peer_closing_reads_as_end_of_stream_with_or_without_deferral() {
        for defer in [true, false] {
            let (mut writer, mut stream) = pair();
            let (mut input, mut deferral) = (BytesMut::new(), Deferral::default());
            writer.write_all(b"last words").unwrap();
            read_exactly(&mut stream, &mut input, &mut deferral, defer, 10);
            drop(writer);
            let start = std::time::Instant::now();
            loop {
                match stream.read_input(&mut input, &mut deferral, defer) {
                    Ok((0, _)) => break,
                    Ok((n, _)) => panic!("{n} bytes after the last write"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
                assert!(start.elapsed().as_secs() < 10, "no end of stream");
            }
            assert_eq!(&input[..], b"last words");
        }
    }
}
