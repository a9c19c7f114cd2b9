//! Endpoint strings: `tcp://host:port`, `tcp://*:port`, `tcp://[::1]:port`, `ipc:///path`,
//! `udp://GROUP:PORT?iface=ADDR&ttl=N&loop=1`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use super::Error;

/// Where a socket binds or connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP address; `*` as host means every interface (for bind).
    Tcp {
        /// Host name or address as written (`*` for any).
        host: String,
        /// Port; 0 binds an ephemeral port (the bound endpoint reports the real one).
        port: u16,
    },
    /// A Unix stream socket path.
    Ipc(PathBuf),
    /// A UDP multicast group (volley's own datagram protocol, see
    /// `docs/multicast-protocol.md`).
    Udp(UdpEndpoint),
}

/// A multicast group and how to reach it: `udp://GROUP:PORT?iface=ADDR&ttl=N&loop=0|1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UdpEndpoint {
    /// The group address (IPv4 224.0.0.0/4, or IPv6 ff00::/8).
    pub group: IpAddr,
    /// The UDP port every member uses.
    pub port: u16,
    /// The interface address to send from and join on (IPv4); `None`: the kernel's choice
    /// by route. On loopback-only hosts use `iface=127.0.0.1`.
    pub iface: Option<IpAddr>,
    /// Hops a datagram may travel (default 1: the local segment only).
    pub ttl: u32,
    /// Whether this host's own members hear what it sends (default true).
    pub loopback: bool,
}

impl UdpEndpoint {
    /// The group and port as a socket address.
    pub fn group_addr(&self) -> SocketAddr {
        SocketAddr::new(self.group, self.port)
    }

    fn parse(s: &str, rest: &str) -> Result<UdpEndpoint, Error> {
        let bad = |why: String| Error::InvalidEndpoint(format!("{s:?}: {why}"));
        let (addr, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected udp://GROUP:PORT".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let group: IpAddr = host
            .parse()
            .map_err(|_| bad(format!("{host:?} is not an IP address")))?;
        if !group.is_multicast() {
            return Err(bad(format!("{group} is not a multicast group address")));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("port must be a number from 0 to 65535".into()))?;
        let mut endpoint = UdpEndpoint {
            group,
            port,
            iface: None,
            ttl: 1,
            loopback: true,
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{pair:?} is not KEY=VALUE")))?;
            match key {
                "iface" => {
                    let iface: IpAddr = value
                        .parse()
                        .map_err(|_| bad(format!("iface {value:?} is not an IP address")))?;
                    endpoint.iface = Some(iface);
                }
                "ttl" => {
                    endpoint.ttl = value
                        .parse::<u8>()
                        .map_err(|_| bad(format!("ttl {value:?} is not 0..=255")))?
                        as u32;
                }
                "loop" => {
                    endpoint.loopback = match value {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(bad(format!("loop {value:?} is not 0 or 1"))),
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option {key:?} (expected iface, ttl or loop)"
                    )))
                }
            }
        }
        if let (IpAddr::V4(_), Some(IpAddr::V6(_))) | (IpAddr::V6(_), Some(IpAddr::V4(_))) =
            (endpoint.group, endpoint.iface)
        {
            return Err(bad("group and iface must be the same IP version".into()));
        }
        Ok(endpoint)
    }

    /// The interface for IPv4 options: `iface` or any (0.0.0.0, the kernel's choice).
    pub(crate) fn iface_v4(&self) -> Ipv4Addr {
        match self.iface {
            Some(IpAddr::V4(a)) => a,
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }
}

impl fmt::Display for UdpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group {
            IpAddr::V4(g) => write!(f, "udp://{g}:{}", self.port)?,
            IpAddr::V6(g) => write!(f, "udp://[{g}]:{}", self.port)?,
        }
        let mut sep = '?';
        if let Some(iface) = self.iface {
            write!(f, "{sep}iface={iface}")?;
            sep = '&';
        }
        if self.ttl != 1 {
            write!(f, "{sep}ttl={}", self.ttl)?;
            sep = '&';
        }
        if !self.loopback {
            write!(f, "{sep}loop=0")?;
        }
        Ok(())
    }
}

impl Endpoint {
    /// The addresses this endpoint names (resolving host names); `*` is 0.0.0.0.
    pub fn socket_addrs(&self) -> Result<Vec<SocketAddr>, Error> {
        match self {
            Endpoint::Tcp { host, port } => {
                let host = if host == "*" {
                    "0.0.0.0"
                } else {
                    host.as_str()
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let addrs: Vec<SocketAddr> = (host, *port)
                    .to_socket_addrs()
                    .map_err(|e| Error::InvalidEndpoint(format!("{self}: {e}")))?
                    .collect();
                if addrs.is_empty() {
                    return Err(Error::InvalidEndpoint(format!("{self}: no address")));
                }
                Ok(addrs)
            }
            Endpoint::Ipc(_) | Endpoint::Udp(_) => Err(Error::InvalidEndpoint(format!(
                "{self}: not a TCP endpoint"
            ))),
        }
    }

    pub(crate) fn from_addr(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp {
            host: match addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            },
            port: addr.port(),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::InvalidEndpoint(format!("{s:?}: {why}"));
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| bad("expected tcp://HOST:PORT"))?;
            if host.is_empty() {
                return Err(bad("empty host (use * for every interface)"));
            }
            if host.starts_with('[') != host.ends_with(']') {
                return Err(bad("unbalanced brackets around an IPv6 address"));
            }
            let port = port
                .parse::<u16>()
                .map_err(|_| bad("port must be a number from 0 to 65535"))?;
            Ok(Endpoint::Tcp {
                host: host.to_string(),
                port,
            })
        } else if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(bad("empty ipc path"));
            }
            Ok(Endpoint::Ipc(PathBuf::from(path)))
        } else if let Some(rest) = s.strip_prefix("udp://") {
            Ok(Endpoint::Udp(UdpEndpoint::parse(s, rest)?))
        } else {
            Err(bad(
                "unsupported transport (expected tcp://HOST:PORT, ipc://PATH or udp://GROUP:PORT)",
            ))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
            Endpoint::Udp(u) => u.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_zeromq_users_write() {
        let e: Endpoint = "tcp://127.0.0.1:5555".parse().unwrap();
        assert_eq!(
            e,
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 5555
            }
        );
        assert_eq!(e.to_string(), "tcp://127.0.0.1:5555");
        let any: Endpoint = "tcp://*:0".parse().unwrap();
        assert_eq!(any.socket_addrs().unwrap()[0].to_string(), "0.0.0.0:0");
        let v6: Endpoint = "tcp://[::1]:7".parse().unwrap();
        assert_eq!(v6.socket_addrs().unwrap()[0].to_string(), "[::1]:7");
        let ipc: Endpoint = "ipc:///tmp/x.sock".parse().unwrap();
        assert_eq!(ipc, Endpoint::Ipc("/tmp/x.sock".into()));
        assert_eq!(ipc.to_string(), "ipc:///tmp/x.sock");
    }

    #[test]
    fn parses_multicast_groups_with_options() {
        let e: Endpoint = "udp://239.1.2.3:5000?iface=127.0.0.1&ttl=4"
            .parse()
            .unwrap();
        let Endpoint::Udp(u) = &e else {
            panic!("not udp: {e:?}")
        };
        assert_eq!(u.group_addr().to_string(), "239.1.2.3:5000");
        assert_eq!(u.iface, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((u.ttl, u.loopback), (4, true));
        assert_eq!(e.to_string(), "udp://239.1.2.3:5000?iface=127.0.0.1&ttl=4");
        let plain: Endpoint = "udp://239.0.0.1:7?loop=0".parse().unwrap();
        assert_eq!(plain.to_string(), "udp://239.0.0.1:7?loop=0");
        let v6: Endpoint = "udp://[ff02::1234]:9000".parse().unwrap();
        assert_eq!(v6.to_string(), "udp://[ff02::1234]:9000");
    }

    #[test]
    fn refuses_bad_udp_endpoints_with_a_reason() {
        for bad in [
            "udp://10.0.0.1:5000",
            "udp://239.1.2.3",
            "udp://239.1.2.3:70000",
            "udp://nothost:5",
            "udp://239.1.2.3:5?ttl=300",
            "udp://239.1.2.3:5?iface=x",
            "udp://239.1.2.3:5?color=red",
            "udp://239.1.2.3:5?loop=2",
            "udp://239.1.2.3:5?iface=::1",
            "udp://239.1.2.3:5?ttl",
        ] {
            let err = bad.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::InvalidEndpoint(_)), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_endpoints_with_a_reason() {
        for bad in [
            "",
            "tcp://",
            "tcp://host",
            "tcp://:5",
            "tcp://h:99999",
            "tcp://h:x",
            "tcp://[::1:5",
            "udp2://x:1",
            "ipc://",
            "5555",
        ] {
            let err = bad.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::InvalidEndpoint(_)), "{bad}");
            assert!(err.to_string().contains("endpoint"), "{err}");
        }
    }
}
