//! ICMP errors on an unconnected UDP socket, for the TFTP client.
//!
//! A TFTP client cannot connect its socket to the server: the server answers from a new
//! port, its transfer ID (RFC 1350 §4), which a connected socket would never receive. But
//! Linux reports ICMP errors (a port unreachable: nothing listens there) only on connected
//! sockets, unless `IP_RECVERR` is set. Then every error is queued with the address the
//! failed datagram was sent to, and the next call on the socket fails once with it
//! (`ECONNREFUSED` for a port unreachable). [`report_errors`] sets the option and
//! [`drain`] reads the queue, so the client can tell "nothing listens at the server's port"
//! (fail at once, as the udpft client does) from an error about some other address (a
//! stray's port, answered with ERROR 5), which changes nothing. The queue must be read:
//! while it holds anything, `poll` reports the socket ready.

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// The most queued errors read at once (the kernel bounds the queue by the receive buffer;
/// this bounds one call).
const MAX_DRAINED: usize = 64;

/// Asks the kernel to report ICMP errors on `socket` although it is not connected.
///
/// # Errors
/// If the option cannot be set.
pub(crate) fn report_errors(socket: &UdpSocket) -> io::Result<()> {
    match socket.local_addr()? {
        SocketAddr::V4(_) => setsockopt(socket, sockopt::Ipv4RecvErr, &true),
        SocketAddr::V6(_) => setsockopt(socket, sockopt::Ipv6RecvErr, &true),
    }
    .map_err(io::Error::from)
}

/// What the error queue held.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// Errors read.
    pub(crate) errors: usize,
    /// The addresses whose host said that nothing listens on their port.
    pub(crate) refused: Vec<SocketAddr>,
}

/// Reads every error queued on `socket` (it never blocks).
pub(crate) fn drain(socket: &UdpSocket) -> Queued {
    let mut queued = Queued::default();
    for _ in 0..MAX_DRAINED {
        // The queued datagram's first bytes come back too; they are not needed.
        let mut payload = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut payload)];
        let mut control = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let Ok(message) = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_ERRQUEUE,
        ) else {
            // EAGAIN: the queue is empty.
            break;
        };
        queued.errors += 1;
        let errno = message.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|cmsg| match cmsg {
                ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _) => {
                    Some(e.ee_errno)
                }
                _ => None,
            })
        });
        // The message's address is where the failed datagram was going.
        let to = message.address.as_ref().and_then(socket_addr);
        if let (Some(errno), Some(to)) = (errno, to) {
            if errno == libc::ECONNREFUSED as u32 {
                queued.refused.push(to);
            }
        }
    }
    queued
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    address
        .as_sockaddr_in()
        .map(|v4| SocketAddr::from(*v4))
        .or_else(|| address.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_closed_port_is_reported_with_its_address_on_an_unconnected_socket() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        report_errors(&socket).unwrap();
        socket.send_to(b"x", closed_addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let error = socket.recv_from(&mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert!(started.elapsed() < Duration::from_secs(1));
        let queued = drain(&socket);
        assert_eq!(queued.errors, 1);
        assert_eq!(queued.refused, [closed_addr]);
        // Read, the queue is empty: nothing more to report.
        assert_eq!(drain(&socket).errors, 0);
    }
}
