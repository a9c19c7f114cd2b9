//! A multicast UDP socket set up the way a cluster transport needs it, and batched
//! reads and writes.
//!
//! Setup (through socket2): `SO_REUSEADDR` so several members on one host share the
//! port; bound to the group address, and on Linux `IP_MULTICAST_ALL` off as well, so the
//! socket hears its own group only; joined on the endpoint's interface;
//! `IP_MULTICAST_IF`, `IP_MULTICAST_LOOP` and the TTL; a large `SO_RCVBUF`, read back
//! because the kernel silently caps it; `SO_RXQ_OVFL`, so that every datagram the kernel
//! dropped for want of buffer space is counted, exactly.
//!
//! Reads use `recvmmsg` (up to [`BATCH`] datagrams per system call) and writes `sendmmsg`:
//! at millions of small messages per second the system call, not the copy, is the cost.
//! A busy-polling reader that expects one datagram at a time uses a plain `recvfrom`
//! instead ([`McastSocket::recv_one`]): its empty polls are what it mostly does, and
//! `recvfrom` spares the kernel a message header to copy in on each.
//!
//! Where the kernel offers UDP GSO (`UDP_SEGMENT`, Linux 4.18 on), each run of
//! equal-sized datagrams in a write goes to the kernel as one buffer that it cuts into
//! those datagrams: the route lookup and the rest of the per-send path, which on this
//! kind of host cost several microseconds per multicast datagram, are paid once per run.
//! The datagrams on the wire are the same; receivers see no difference.
//!
//! A member may also ask for UDP GRO ([`McastSocket::enable_gro`]): the kernel then
//! queues a run of one sender's datagrams as one buffer and reports the datagram size
//! with it (`UDP_GRO` control message); [`RecvBatch::datagrams`] cuts it up again. Its
//! reads then always carry control messages: `recv_one` becomes a `recvmmsg`.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::socket::UdpEndpoint;

/// Datagrams per `recvmmsg` / `sendmmsg` call.
pub(crate) const BATCH: usize = 32;
/// Receive buffer per datagram: the largest UDP payload fits.
const DATAGRAM_BUFFER: usize = 65_536;
/// Most datagrams in one GSO buffer (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO buffer: a UDP payload's length limit over IPv4 is 65,507, and
/// IPv6's is larger.
const GSO_MAX_BYTES: usize = 65_507;

/// An open group membership.
pub(crate) struct McastSocket {
    socket: UdpSocket,
    group: SocketAddr,
    /// What the kernel granted for `SO_RCVBUF` (Linux reports twice the usable size).
    pub(crate) recv_buffer: usize,
    /// The kernel's cumulative drop count from the last `SO_RXQ_OVFL` message.
    last_overflow: Option<u32>,
    /// Datagrams the kernel dropped on this socket since it opened, as far as counted.
    kernel_drops: u64,
    /// A datagram was read by [`recv_one`](Self::recv_one), without the drop count the
    /// kernel stamps on it: [`kernel_drops`](Self::kernel_drops) asks the kernel.
    unstamped: bool,
    /// Writes may use UDP GSO: the kernel knows `UDP_SEGMENT`, and no GSO write has been
    /// refused yet (a device without checksum offload answers `EIO`, a path MTU below the
    /// datagram size `EINVAL`; the datagrams are then written one by one from then on).
    gso: AtomicBool,
    /// UDP GRO is on: one read may return several datagrams of one sender back to back,
    /// their size in a control message.
    gro: bool,
}

impl McastSocket {
    /// Opens a member of `endpoint`'s group. Returns a warning when the kernel granted a
    /// smaller receive buffer than `recv_buffer` asked for. With `join` false the socket
    /// only sends: it hears nothing, not even its own datagrams (a best-effort publisher,
    /// which has nothing to read, spares the kernel a copy of every datagram it sends).
    pub(crate) fn open(
        endpoint: &UdpEndpoint,
        recv_buffer: usize,
        join: bool,
    ) -> io::Result<(McastSocket, Option<String>)> {
        let group = endpoint.group_addr();
        let domain = match group {
            SocketAddr::V4(_) => Domain::IPV4,
            SocketAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.set_recv_buffer_size(recv_buffer)?;
        let granted = socket.recv_buffer_size()?;
        // Linux doubles the value it stores (bookkeeping overhead): compare what is usable.
        let warning = (granted / 2 < recv_buffer).then(|| {
            format!(
                "{endpoint}: asked for a {recv_buffer}-byte receive buffer, the kernel granted \
                 {} (raise net.core.rmem_max for bursts without kernel drops)",
                granted / 2
            )
        });
        match group {
            SocketAddr::V4(g) => {
                let iface = endpoint.iface_v4();
                socket.set_multicast_if_v4(&iface)?;
                socket.set_multicast_loop_v4(endpoint.loopback)?;
                socket.set_multicast_ttl_v4(endpoint.ttl)?;
                #[cfg(target_os = "linux")]
                socket.set_multicast_all_v4(false)?;
                // Binding the group address (not 0.0.0.0) keeps other groups' traffic on
                // this port out, on every OS.
                socket.bind(&SockAddr::from(SocketAddrV4::new(*g.ip(), g.port())))?;
                if join {
                    socket.join_multicast_v4(g.ip(), &iface)?;
                }
            }
            SocketAddr::V6(g) => {
                socket.set_only_v6(true)?;
                socket.set_multicast_loop_v6(endpoint.loopback)?;
                socket.set_multicast_hops_v6(endpoint.ttl)?;
                socket.bind(&SockAddr::from(SocketAddrV6::new(*g.ip(), g.port(), 0, 0)))?;
                if join {
                    socket.join_multicast_v6(g.ip(), 0)?;
                }
            }
        }
        enable_overflow_count(&socket)?;
        let gso = gso_supported(&socket);
        let socket: UdpSocket = socket.into();
        // Port 0 picks a port; every member must then be told the real one.
        let port = socket.local_addr()?.port();
        let group = SocketAddr::new(group.ip(), port);
        Ok((
            McastSocket {
                socket,
                group,
                recv_buffer: granted,
                last_overflow: None,
                kernel_drops: 0,
                unstamped: false,
                gso: AtomicBool::new(gso),
                gro: false,
            },
            warning,
        ))
    }

    /// The group and port this member uses (the real port if 0 was asked for).
    pub(crate) fn group(&self) -> SocketAddr {
        self.group
    }

    /// Asks the kernel for UDP GRO on this member (see
    /// [`MulticastOptions::gro`](crate::socket::MulticastOptions::gro) for what it costs).
    pub(crate) fn enable_gro(&mut self) -> io::Result<()> {
        set_int_option(&self.socket, libc::SOL_UDP, UDP_GRO, 1)?;
        self.gro = true;
        Ok(())
    }

    pub(crate) fn raw(&self) -> &UdpSocket {
        &self.socket
    }

    /// Makes the kernel drop every datagram but NAKs before it queues them (a classic
    /// BPF socket filter on the kind byte). A publisher's socket is joined to its group to
    /// hear NAKs, so it also hears its own data and everyone else's on loopback or a busy
    /// group: without the filter, each of those would wake the I/O thread for nothing.
    pub(crate) fn accept_only_naks(&self) -> io::Result<()> {
        // A UDP socket's filter sees the datagram from its UDP header (8 bytes) on; the
        // kind is byte 3 of our preamble. A shorter datagram fails the load: dropped.
        let kind_offset = 8 + 3;
        let nak = u32::from(crate::wire::mcast::KIND_NAK);
        let program = [
            bpf(
                libc::BPF_LD | libc::BPF_B | libc::BPF_ABS,
                0,
                0,
                kind_offset,
            ),
            bpf(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, nak),
            bpf(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
            bpf(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        ];
        let fprog = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: a valid descriptor; `fprog` points at `program`, both live across the
        // call, and the kernel copies the program before returning.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `datagrams` to the group with as few system calls as possible. Returns how
    /// many went out; stops early on `WouldBlock` (the socket's send buffer is full) or an
    /// error, which it returns if nothing was sent.
    pub(crate) fn send_batch(&self, datagrams: &[&[u8]]) -> io::Result<usize> {
        if let [datagram] = datagrams {
            // One datagram (a ping-pong, a NAK): a plain sendto, without building the
            // vector.
            return loop {
                match self.socket.send_to(datagram, self.group) {
                    Ok(_) => break Ok(1),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            };
        }
        let addr = SockAddr::from(self.group);
        let mut sent = 0;
        while sent < datagrams.len() {
            let chunk = &datagrams[sent..(sent + BATCH).min(datagrams.len())];
            let gso = self.gso.load(Ordering::Relaxed);
            match self.sendmmsg(chunk, &addr, gso) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if gso && gso_refused(&e) => {
                    // Nothing of this write went out: write it again without GSO.
                    self.gso.store(false, Ordering::Relaxed);
                }
                Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    if sent > 0 {
                        break;
                    }
                    return Err(e);
                }
            }
        }
        Ok(sent)
    }

    /// Whether writes currently use UDP GSO.
    #[cfg(test)]
    pub(crate) fn uses_gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Turns UDP GSO off for this socket's writes (tests of the plain path).
    #[cfg(test)]
    pub(crate) fn disable_gso(&self) {
        self.gso.store(false, Ordering::Relaxed);
    }

    /// One `sendmmsg` of up to [`BATCH`] datagrams; returns how many datagrams went out.
    /// With `gso`, each run of equal-sized datagrams (the last may be shorter, as the
    /// kernel's cutting allows) is one message of several iovecs with a `UDP_SEGMENT`
    /// control message giving the size.
    fn sendmmsg(&self, chunk: &[&[u8]], addr: &SockAddr, gso: bool) -> io::Result<usize> {
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::uninit(); BATCH];
        let mut controls = [GsoControl([0; GSO_CONTROL]); BATCH];
        // Datagrams per message, so that messages sent can be turned into datagrams.
        let mut runs = [0usize; BATCH];
        for (i, datagram) in chunk.iter().enumerate() {
            iovecs[i].write(libc::iovec {
                iov_base: datagram.as_ptr() as *mut libc::c_void,
                iov_len: datagram.len(),
            });
        }
        let mut messages = 0;
        let mut start = 0;
        while start < chunk.len() {
            let len = if gso { gso_run(&chunk[start..]) } else { 1 };
            // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
            let mut header: libc::msghdr = unsafe { mem::zeroed() };
            header.msg_name = addr.as_ptr() as *mut libc::c_void;
            header.msg_namelen = addr.len();
            header.msg_iov = iovecs[start].as_mut_ptr();
            header.msg_iovlen = len as _;
            if len > 1 {
                let control = &mut controls[messages];
                header.msg_control = control.0.as_mut_ptr().cast();
                header.msg_controllen = GSO_CONTROL as _;
                // SAFETY: the control buffer is GSO_CONTROL bytes, aligned for cmsghdr,
                // at least CMSG_SPACE of a u16: CMSG_FIRSTHDR returns its start, and the
                // header and the u16 written after it lie within it.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&header);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    let segment = chunk[start].len() as u16;
                    libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(segment);
                }
            }
            headers[messages].write(libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            });
            runs[messages] = len;
            messages += 1;
            start += len;
        }
        // SAFETY: the first `messages` headers were initialised above; each points at
        // iovecs describing live slices, at `addr` and at its control buffer (or none),
        // all of which outlive the call; the kernel only reads them (and writes
        // `msg_len`).
        let n = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr().cast(),
                messages as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(runs[..n as usize].iter().sum())
    }

    /// Reads up to [`BATCH`] datagrams into `batch` without waiting. Returns how many;
    /// `Ok(0)` means nothing is waiting. Datagrams larger than the buffer are counted in
    /// `batch.truncated` and skipped.
    pub(crate) fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let max = BATCH;
        batch.count = 0;
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::uninit(); BATCH];
        for i in 0..max {
            let buffer = &mut batch.buffers[i * DATAGRAM_BUFFER..(i + 1) * DATAGRAM_BUFFER];
            iovecs[i].write(libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: DATAGRAM_BUFFER,
            });
            // SAFETY: as in sendmmsg, an all-zero msghdr is valid.
            let mut header: libc::msghdr = unsafe { mem::zeroed() };
            header.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = iovecs[i].as_mut_ptr();
            header.msg_iovlen = 1;
            header.msg_control = batch.controls[i].0.as_mut_ptr().cast();
            header.msg_controllen = CONTROL_BUFFER as _;
            headers[i].write(libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            });
        }
        // SAFETY: the first `max` headers are initialised and point into `batch`'s
        // buffers, address slots and control buffers, which are at least as long as the
        // lengths given and outlive the call; the kernel reads no header beyond `max`;
        // MSG_DONTWAIT makes it non-blocking.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr().cast(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let Some(n) = received(n as isize)? else {
            return Ok(0);
        };
        for (i, header) in headers.iter().take(n).enumerate() {
            // SAFETY: initialised above; the kernel filled in the first `n`.
            let header = unsafe { header.assume_init_ref() };
            let truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            batch.lens[i] = if truncated {
                batch.truncated += 1;
                None
            } else {
                Some(header.msg_len as usize)
            };
            batch.froms[i] = sockaddr_to_std(&batch.addrs[i]);
            let control = read_control(&header.msg_hdr);
            if let Some(count) = control.overflow_count {
                self.account_overflow(count);
            }
            batch.segments[i] = control.gro_segment.unwrap_or(0);
        }
        batch.count = n;
        Ok(n)
    }

    /// Reads one datagram into `batch` without waiting, like a
    /// [`recv_batch`](Self::recv_batch) of one, but with a plain `recvfrom`:
    /// no message header for the kernel to copy in, which makes a busy-polling reader's
    /// empty poll a third cheaper (about 340 ns instead of 500 here). The datagram's
    /// drop stamp (`SO_RXQ_OVFL`) does not come with it, so the drop count is asked
    /// for instead when it is next read ([`kernel_drops`](Self::kernel_drops)). On a
    /// GRO member it reads like [`recv_batch`](Self::recv_batch).
    pub(crate) fn recv_one(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        if self.gro {
            // A buffer may hold several datagrams, whose size only a control message
            // gives: recvfrom would lose it.
            return self.recv_batch(batch);
        }
        batch.count = 0;
        let mut addr_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer is the first DATAGRAM_BUFFER bytes of `batch.buffers`, and the
        // address slot a sockaddr_storage with its size in `addr_len`: both live across
        // the call, which writes no more than those lengths. MSG_TRUNC makes it return the
        // datagram's real length, so a truncated one is recognised.
        let n = unsafe {
            libc::recvfrom(
                self.socket.as_raw_fd(),
                batch.buffers.as_mut_ptr().cast(),
                DATAGRAM_BUFFER,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut batch.addrs[0] as *mut libc::sockaddr_storage).cast(),
                &mut addr_len,
            )
        };
        let Some(n) = received(n as isize)? else {
            return Ok(0);
        };
        self.unstamped = true;
        batch.lens[0] = if n > DATAGRAM_BUFFER {
            batch.truncated += 1;
            None
        } else {
            Some(n)
        };
        batch.froms[0] = sockaddr_to_std(&batch.addrs[0]);
        batch.segments[0] = 0;
        batch.count = 1;
        Ok(1)
    }

    /// Datagrams the kernel dropped on this socket since it opened. Exact as of the last
    /// datagram read, or as of now if one was read without its stamp.
    pub(crate) fn kernel_drops(&mut self) -> u64 {
        if std::mem::take(&mut self.unstamped) {
            match drop_count(&self.socket) {
                Ok(count) => self.account_overflow(count),
                // Asked again next time: the stamps of later batches carry it, too.
                Err(_) => self.unstamped = true,
            }
        }
        self.kernel_drops
    }

    fn account_overflow(&mut self, count: u32) {
        // The count is cumulative per socket; the kernel stamps a datagram with it only
        // once it is not zero, so the first value seen is all drops so far. A datagram
        // queued before the count was last asked for (see `kernel_drops`) carries an
        // older value: counts never go back, so that is nothing new.
        let previous = self.last_overflow.unwrap_or(0);
        let new = count.wrapping_sub(previous);
        if new > 0 && new < 1 << 31 {
            self.kernel_drops += u64::from(new);
            self.last_overflow = Some(count);
        }
    }
}

/// The socket's cumulative drop count, the one `SO_RXQ_OVFL` stamps on datagrams
/// (`SK_MEMINFO_DROPS` of `SO_MEMINFO`).
fn drop_count(socket: &UdpSocket) -> io::Result<u32> {
    const DROPS: usize = libc::SK_MEMINFO_DROPS as usize;
    let mut info = [0u32; 16];
    let mut len = mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: a valid descriptor, and a buffer of `len` bytes that lives across the call;
    // the kernel writes at most `len` bytes and stores the length it wrote.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) <= DROPS * mem::size_of::<u32>() {
        return Err(io::Error::other("SO_MEMINFO without a drop count"));
    }
    Ok(info[DROPS])
}

/// How many of `datagrams`, from the first, one GSO buffer can carry: datagrams of the
/// first one's size, then at most one shorter, within the kernel's limits.
fn gso_run(datagrams: &[&[u8]]) -> usize {
    let segment = datagrams[0].len();
    if segment > usize::from(u16::MAX) {
        return 1;
    }
    let mut bytes = segment;
    let mut count = 1;
    for datagram in &datagrams[1..] {
        if count == GSO_MAX_SEGMENTS
            || datagram.len() > segment
            || datagram.is_empty()
            || bytes + datagram.len() > GSO_MAX_BYTES
        {
            break;
        }
        bytes += datagram.len();
        count += 1;
        if datagram.len() < segment {
            break;
        }
    }
    count
}

/// Whether the kernel knows `UDP_SEGMENT`. Setting it to 0 on the socket asks for nothing
/// (the size goes with each write instead) but fails on a kernel without GSO.
fn gso_supported(socket: &Socket) -> bool {
    set_int_option(socket, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok()
}

/// Whether a write failed because of GSO itself, so that it would succeed without.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Room for one `UDP_SEGMENT` control message: CMSG_SPACE of a u16 (24 bytes on 64-bit
/// Linux), rounded up.
const GSO_CONTROL: usize = 32;

#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct GsoControl([u8; GSO_CONTROL]);

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Room for an `SO_RXQ_OVFL` control message (a u32) and a `UDP_GRO` one (an int), each
/// 24 bytes with its header on 64-bit Linux, with margin.
const CONTROL_BUFFER: usize = 64;

#[repr(C, align(8))]
struct ControlBuffer([u8; CONTROL_BUFFER]);

/// Reused buffers for [`McastSocket::recv_batch`].
pub(crate) struct RecvBatch {
    buffers: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<ControlBuffer>,
    lens: [Option<usize>; BATCH],
    froms: [Option<SocketAddr>; BATCH],
    /// The size of the datagrams in each buffer when GRO coalesced several (the last may
    /// be shorter); 0 for a buffer of one datagram.
    segments: [usize; BATCH],
    count: usize,
    /// Datagrams too large for the buffer (dropped and counted).
    pub(crate) truncated: u64,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            buffers: vec![0; BATCH * DATAGRAM_BUFFER],
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid (AF_UNSPEC) value.
            addrs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            controls: (0..BATCH)
                .map(|_| ControlBuffer([0; CONTROL_BUFFER]))
                .collect(),
            lens: [None; BATCH],
            froms: [None; BATCH],
            segments: [0; BATCH],
            count: 0,
            truncated: 0,
        }
    }

    /// The datagrams of the last read, with their sources (truncated ones left out),
    /// coalesced buffers cut back into their datagrams.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        (0..self.count)
            .filter_map(move |i| {
                let len = self.lens[i]?;
                let from = self.froms[i]?;
                let buffer = &self.buffers[i * DATAGRAM_BUFFER..i * DATAGRAM_BUFFER + len];
                Some((buffer, self.segments[i], from))
            })
            .flat_map(|(buffer, segment, from)| {
                // Cut at every `step` bytes. Not `chunks`: it yields nothing for an empty
                // buffer, and an empty datagram arrived, so it is garbage to be counted.
                let len = buffer.len();
                let step = if segment == 0 { len.max(1) } else { segment };
                (0..len.max(1))
                    .step_by(step)
                    .map(move |at| (&buffer[at..(at + step).min(len)], from))
            })
    }
}

fn enable_overflow_count(socket: &Socket) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// Sets an int-valued socket option that neither std nor socket2 offers.
fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid descriptor (borrowed for the call), and a pointer to an int that
    // lives across the call, with its exact size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `UDP_GRO` (libc names it for some targets only): the socket option, and the control
/// message that carries a coalesced buffer's datagram size.
const UDP_GRO: libc::c_int = 104;

/// What the control messages of a received message say.
#[derive(Default)]
struct Control {
    /// The `SO_RXQ_OVFL` drop count.
    overflow_count: Option<u32>,
    /// The datagram size of a GRO-coalesced buffer.
    gro_segment: Option<usize>,
}

fn read_control(header: &libc::msghdr) -> Control {
    let mut control = Control::default();
    // SAFETY: `header` came back from recvmmsg, so its control pointer and length describe
    // the control buffer the kernel filled; the CMSG macros stay within msg_controllen,
    // and each value read lies within its cmsg's data.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    control.overflow_count = Some(data.cast::<u32>().read_unaligned());
                }
                (libc::SOL_UDP, UDP_GRO) => {
                    let size = data.cast::<libc::c_int>().read_unaligned();
                    control.gro_segment = usize::try_from(size).ok().filter(|&s| s > 0);
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    control
}

fn sockaddr_to_std(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // and aligned enough for.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A non-blocking receive call's return value: `Some(n)` for `n` datagrams or bytes,
/// `None` when nothing was waiting, or the error.
fn received(n: isize) -> io::Result<Option<usize>> {
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(None)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(port: u16, recv_buffer: usize) -> McastSocket {
        let endpoint = UdpEndpoint {
            group: "239.255.77.1".parse().unwrap(),
            port,
            iface: Some("127.0.0.1".parse().unwrap()),
            ttl: 1,
            loopback: true,
        };
        McastSocket::open(&endpoint, recv_buffer, true)
            .expect("join")
            .0
    }

    /// Datagrams of `sizes`, each filled with its index, so that one arriving out of
    /// order, cut at the wrong place or merged with another shows.
    fn numbered(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![i as u8; len])
            .collect()
    }

    /// Sends `datagrams` in one `send_batch` and checks they arrive one by one, whole and
    /// in order. Returns how many receive buffers they came in.
    fn assert_batch_arrives_as_sent(gso: bool, gro: bool, sizes: &[usize]) -> usize {
        let mut rx = member(0, 8 << 20);
        if gro {
            rx.enable_gro().expect("UDP GRO");
        }
        let tx = member(rx.group().port(), 1 << 20);
        if !gso {
            tx.disable_gso();
        }
        let datagrams = numbered(sizes);
        let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        let mut sent = 0;
        while sent < slices.len() {
            sent += tx.send_batch(&slices[sent..]).unwrap();
        }
        let mut batch = RecvBatch::new();
        let mut received: Vec<Vec<u8>> = Vec::new();
        let mut buffers = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while received.len() < datagrams.len() && std::time::Instant::now() < deadline {
            buffers += rx.recv_batch(&mut batch).unwrap();
            received.extend(batch.datagrams().map(|(d, _)| d.to_vec()));
        }
        assert_eq!(
            received.len(),
            datagrams.len(),
            "gso {gso}, sizes {sizes:?}"
        );
        for (i, (got, want)) in received.iter().zip(&datagrams).enumerate() {
            assert!(
                got == want,
                "datagram {i}: {} bytes of {:?}, sent {} of {i}",
                got.len(),
                got.first(),
                want.len()
            );
        }
        assert_eq!(
            tx.uses_gso(),
            gso && gso_supported_here(),
            "no write was refused"
        );
        buffers
    }

    fn gso_supported_here() -> bool {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        gso_supported(&socket)
    }

    #[test]
    fn a_refused_gso_write_goes_out_without_gso() {
        // The kernel refuses GSO on a socket that sends without UDP checksums (EINVAL),
        // as it does on a path whose MTU is below the datagram size: the write must go
        // out datagram by datagram, and later writes must not try GSO again.
        let mut rx = member(0, 8 << 20);
        let tx = member(rx.group().port(), 1 << 20);
        // SO_NO_CHECK is 11 on Linux; libc names it for few targets.
        set_int_option(tx.raw(), libc::SOL_SOCKET, 11, 1).expect("SO_NO_CHECK");
        let datagrams = numbered(&[1200; 10]);
        let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        for round in 0..2 {
            assert_eq!(tx.send_batch(&slices).unwrap(), 10, "round {round}");
            assert!(!tx.uses_gso(), "GSO given up after the refusal");
            let mut batch = RecvBatch::new();
            let mut received: Vec<Vec<u8>> = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while received.len() < 10 && std::time::Instant::now() < deadline {
                rx.recv_batch(&mut batch).unwrap();
                received.extend(batch.datagrams().map(|(d, _)| d.to_vec()));
            }
            assert_eq!(received, datagrams, "round {round}");
        }
    }

    #[test]
    fn a_batch_arrives_as_the_datagrams_it_was_made_of() {
        // Runs of equal sizes (one GSO buffer each), a shorter datagram ending a run,
        // singletons between, a run longer than one system call's batch, and sizes that
        // put a run over the GSO byte limit.
        let mut sizes = vec![1400; 5];
        sizes.extend([700, 1400, 1400, 90, 90, 90, 64, 1400]);
        sizes.extend(vec![1200; 40]);
        sizes.extend(vec![8192; 10]);
        sizes.extend([8192, 100, 65_000, 65_000, 3, 0, 0, 7]);
        for gso in [true, false] {
            let buffers = assert_batch_arrives_as_sent(gso, false, &sizes);
            assert_eq!(buffers, sizes.len(), "without GRO, one datagram per buffer");
        }
        if !gso_supported_here() {
            eprintln!("UDP GSO not offered by this kernel: only the plain path was tested");
        }
    }

    #[test]
    fn gro_buffers_are_cut_back_into_the_datagrams() {
        // GSO writes arrive coalesced (on loopback the kernel keeps the write whole for a
        // GRO socket) and must come out as the datagrams sent; a plain write's datagrams
        // come one per buffer.
        let mut sizes = vec![1400; 20];
        sizes.push(300);
        sizes.extend([500, 64, 64, 64, 1400]);
        sizes.extend(vec![8192; 9]);
        sizes.extend([0, 12]); // an empty datagram is one too
        let buffers = assert_batch_arrives_as_sent(true, true, &sizes);
        if gso_supported_here() {
            assert!(
                buffers < sizes.len() / 2,
                "{buffers} buffers for {} datagrams: nothing coalesced",
                sizes.len()
            );
        }
        let buffers = assert_batch_arrives_as_sent(false, true, &sizes);
        assert_eq!(buffers, sizes.len());
    }

    #[test]
    fn with_gro_kernel_drops_are_a_lower_bound() {
        // A dropped coalesced buffer counts once: documented as a lower bound, and never
        // more than what was really lost.
        let mut rx = member(0, 1);
        rx.enable_gro().expect("UDP GRO");
        let tx = member(rx.group().port(), 1 << 20);
        let datagrams = numbered(&[1000; 10]);
        let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        let rounds = 200;
        for _ in 0..rounds {
            assert_eq!(tx.send_batch(&slices).unwrap(), slices.len());
        }
        let mut batch = RecvBatch::new();
        let mut received = 0;
        while rx.recv_batch(&mut batch).unwrap() > 0 {
            received += batch.datagrams().count() as u64;
        }
        // The drops of the burst come stamped on the next datagram queued.
        tx.send_batch(&[&[9u8; 100]]).unwrap();
        while rx.recv_batch(&mut batch).unwrap() > 0 {
            received += batch.datagrams().count() as u64;
        }
        let sent = rounds as u64 * 10 + 1;
        let drops = rx.kernel_drops();
        assert!(drops > 0, "nothing dropped: the test proves nothing");
        assert!(
            received + drops <= sent,
            "received {received}, drops {drops}"
        );
        if gso_supported_here() {
            assert!(received + drops < sent, "whole buffers counted once each");
        }
    }

    #[test]
    fn gso_runs_stop_where_the_kernel_would_cut_wrong() {
        let run = |sizes: &[usize]| {
            let datagrams = numbered(sizes);
            let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
            gso_run(&slices)
        };
        assert_eq!(run(&[100]), 1);
        assert_eq!(run(&[100, 100, 100]), 3);
        assert_eq!(run(&[100, 100, 50, 100]), 3, "a shorter one ends the run");
        assert_eq!(run(&[100, 200]), 1, "a longer one starts the next");
        assert_eq!(run(&[1000; 100]), 64, "the segment limit");
        assert_eq!(run(&[8192; 9]), 7, "the byte limit: 7 x 8192 = 57,344");
        assert_eq!(run(&[65_000, 65_000]), 1);
    }

    #[test]
    fn kernel_drops_are_counted_exactly() {
        // A tiny receive buffer and nobody reading: the kernel must drop most of a burst,
        // and SO_RXQ_OVFL must account for every datagram it dropped.
        let mut rx = member(0, 1);
        let group = rx.group();
        let tx = member(group.port(), 1 << 20);
        let datagram = [7u8; 512];
        let sent = 2_000;
        for _ in 0..sent {
            // Loopback delivery happens inside the send call: no pacing needed.
            assert_eq!(tx.send_batch(&[&datagram]).unwrap(), 1);
        }
        let mut batch = RecvBatch::new();
        let mut received = 0u64;
        loop {
            let n = rx.recv_batch(&mut batch).unwrap();
            if n == 0 {
                break;
            }
            received += batch.datagrams().count() as u64;
        }
        // The kernel stamps each queued datagram with the drop count at that moment, so
        // the drops of the burst arrive with the next datagram that fits.
        tx.send_batch(&[&datagram]).unwrap();
        while rx.recv_batch(&mut batch).unwrap() > 0 {
            received += batch.datagrams().count() as u64;
        }
        let drops = rx.kernel_drops();
        assert!(
            drops > 0,
            "nothing dropped: the test proves nothing (received {received}, buffer {})",
            rx.recv_buffer
        );
        assert_eq!(received + drops, sent + 1, "received {received}");
    }

    #[test]
    fn drops_are_exact_when_datagrams_are_read_one_by_one() {
        // recv_one reads without the kernel's drop stamps: the count must come from the
        // kernel at once (no later datagram needed), and a stamp read afterwards must not
        // count the same drops again.
        let mut rx = member(0, 1);
        let tx = member(rx.group().port(), 1 << 20);
        let datagram = [7u8; 512];
        let sent = 2_000;
        for _ in 0..sent {
            assert_eq!(tx.send_batch(&[&datagram]).unwrap(), 1);
        }
        let mut batch = RecvBatch::new();
        let mut received = 0u64;
        while rx.recv_one(&mut batch).unwrap() == 1 {
            let (d, from) = batch.datagrams().next().expect("one datagram");
            assert_eq!(
                (d.len(), from.ip()),
                (512, "127.0.0.1".parse::<IpAddr>().unwrap())
            );
            received += 1;
        }
        let drops = rx.kernel_drops();
        assert!(drops > 0, "nothing dropped: the test proves nothing");
        assert_eq!(received + drops, sent, "received {received}");
        tx.send_batch(&[&datagram]).unwrap();
        while rx.recv_batch(&mut batch).unwrap() > 0 {
            received += batch.datagrams().count() as u64;
        }
        assert_eq!(
            received + rx.kernel_drops(),
            sent + 1,
            "received {received}"
        );
    }

    #[test]
    fn a_nak_filter_lets_naks_through_and_nothing_else() {
        let mut rx = member(0, 1 << 20);
        rx.accept_only_naks().unwrap();
        let tx = member(rx.group().port(), 1 << 20);
        let mut nak = *b"VY\x01\x03 and the rest of a NAK";
        let mut data = nak;
        data[3] = crate::wire::mcast::KIND_DATA;
        nak[4] = b'!';
        let sent = tx.send_batch(&[&data, b"VY", &nak, b"", &data]).unwrap();
        assert_eq!(sent, 5);
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while std::time::Instant::now() < deadline {
            rx.recv_batch(&mut batch).unwrap();
            got.extend(batch.datagrams().map(|(d, _)| d.to_vec()));
        }
        assert_eq!(got, [nak.to_vec()]);
    }

    #[test]
    fn a_member_hears_its_group_and_reports_the_source() {
        let mut rx = member(0, 1 << 20);
        let tx = member(rx.group().port(), 1 << 20);
        let sent = tx.send_batch(&[b"one", b"two", b"three"]).unwrap();
        assert_eq!(sent, 3);
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < 3 && std::time::Instant::now() < deadline {
            rx.recv_batch(&mut batch).unwrap();
            for (d, from) in batch.datagrams() {
                assert_eq!(from.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
                got.push(d.to_vec());
            }
        }
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    }
}
