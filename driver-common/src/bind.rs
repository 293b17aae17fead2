//! Binding one UDP socket and one TCP listener on the same port, and choosing the address to
//! advertise. Shared by every driver; sockets come back non-blocking, ready to be handed to a
//! runtime.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use crate::error::StartError;
use crate::options::Options;

/// How many times a port-0 bind retries when the port the OS gave the TCP listener is taken
/// for UDP.
const PORT_ATTEMPTS: usize = 32;

/// Bind a TCP listener and a UDP socket on `addr`, both on the same port. With port 0 the OS
/// picks a port that is free for both. Both sockets are non-blocking.
pub fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), StartError> {
    let bind_err = |source: io::Error| StartError::Bind { addr, source };
    let (udp, tcp) = if addr.port() != 0 {
        let tcp = TcpListener::bind(addr).map_err(bind_err)?;
        let udp = UdpSocket::bind(addr).map_err(bind_err)?;
        (udp, tcp)
    } else {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tcp = TcpListener::bind(addr).map_err(bind_err)?;
            let mut at = addr;
            at.set_port(tcp.local_addr().map_err(bind_err)?.port());
            match UdpSocket::bind(at) {
                Ok(udp) => break (udp, tcp),
                Err(e) if attempt >= PORT_ATTEMPTS => return Err(bind_err(e)),
                Err(_) => continue,
            }
        }
    };
    udp.set_nonblocking(true).map_err(StartError::Io)?;
    tcp.set_nonblocking(true).map_err(StartError::Io)?;
    Ok((udp, tcp))
}

/// The address other members reach a node bound at `bound`: the bound address itself, or the
/// advertised IP with the bound port when bound on an unspecified address.
pub fn advertised_addr(bound: SocketAddr, options: &Options) -> Result<SocketAddr, StartError> {
    match options.advertise {
        Some(ip) => Ok(SocketAddr::new(ip, bound.port())),
        None if bound.ip().is_unspecified() => Err(StartError::NoAdvertiseAddress { bound }),
        None => Ok(bound),
    }
}

/// The node's RNG seed: the one in `options`, or one drawn from OS entropy.
pub fn node_seed(options: &Options) -> u64 {
    options.seed.unwrap_or_else(|| {
        getrandom::u64().unwrap_or_else(|_| {
            // OS entropy unavailable (practically never): fall back on std's randomly keyed
            // hasher, itself seeded by the OS when it can be.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default()
                    .as_nanos(),
            );
            h.finish()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_binds_udp_and_tcp_on_one_port() {
        let (udp, tcp) = bind_pair("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = udp.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(tcp.local_addr().unwrap().port(), port);
        // The same fixed port cannot be bound twice.
        let again = bind_pair(udp.local_addr().unwrap());
        assert!(matches!(again, Err(StartError::Bind { .. })));
    }

    #[test]
    fn unspecified_needs_an_advertised_ip() {
        let bound: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        assert!(matches!(
            advertised_addr(bound, &Options::default()),
            Err(StartError::NoAdvertiseAddress { .. })
        ));
        let opts = Options::default().with_advertise("127.0.0.2".parse().unwrap());
        assert_eq!(
            advertised_addr(bound, &opts).unwrap(),
            "127.0.0.2:7946".parse().unwrap()
        );
        let local: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        assert_eq!(advertised_addr(local, &Options::default()).unwrap(), local);
    }

    #[test]
    fn seed_is_taken_from_options_or_drawn() {
        assert_eq!(node_seed(&Options::default().with_seed(42)), 42);
        let a = node_seed(&Options::default());
        let b = node_seed(&Options::default());
        assert_ne!(a, b, "two OS-entropy seeds differ");
    }
}
