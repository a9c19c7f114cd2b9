//! Endpoint strings: `tcp://host:port`, `tcp://*:port`, `tcp://[::1]:port`, `ipc:///path`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
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
            Endpoint::Ipc(_) => Err(Error::InvalidEndpoint(format!(
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
        } else {
            Err(bad(
                "unsupported transport (expected tcp://HOST:PORT or ipc://PATH)",
            ))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
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
