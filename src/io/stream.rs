//! TCP and Unix stream sockets behind one type, so the reactor treats `tcp://` and
//! `ipc://` connections alike.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
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
        if buf.capacity() - buf.len() < MIN_READ_ROOM {
            buf.reserve(READ_CHUNK);
        }
        let spare = buf.spare_capacity_mut();
        let (ptr, room) = (spare.as_mut_ptr(), spare.len());
        let fd = self.fd();
        loop {
            // `recv`, not `read`: on a socket it skips the file layer's checks, a
            // saving on every empty poll of a busy-polling reader.
            // SAFETY: `ptr` points to `room` bytes of `buf`'s spare capacity, which
            // nothing else borrows during the call; the kernel writes at most `room`
            // bytes there, and writing to uninitialized memory is what it is for.
            let n = unsafe { libc::recv(fd, ptr.cast(), room, 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let n = n as usize;
            // SAFETY: the kernel initialized the first `n` (<= `room`) bytes after the
            // buffer's length.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok((n, room));
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
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

/// A `send` family call's return value as a byte count or the error it set.
fn sent(n: libc::ssize_t) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
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
        let fd = self.fd();
        loop {
            // SAFETY: `buf` is a live slice of `buf.len()` bytes the kernel only reads.
            let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
            match sent(n) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.fd();
        // SAFETY: an all-zero `msghdr` is valid (no address, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it); the kernel
        // only reads through the pointer.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        loop {
            // SAFETY: `msg` points at `bufs`, live slices the kernel only reads, for the
            // duration of the call.
            let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
            match sent(n) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
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
