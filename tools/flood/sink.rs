//! The control of every measurement: a trivial UDP echo on loopback that answers each
//! datagram with a 44-byte one (the size of an Accept) and does nothing else. The `control`
//! attack floods it instead of the server, at the same rate and from the same sockets, so
//! the legitimate client's slowdown under it is what the flood costs the *machine* (the
//! flood's own sends and receives, loopback delivery, scheduling on shared cores), which no
//! server can avoid; a real attack's slowdown beyond it is the server's.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes of each echo: an Accept's size.
const ECHO_LEN: usize = 44;

/// How often the echo thread looks at its stop flag when nothing arrives.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// A running echo; stopped when dropped.
pub struct EchoSink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoSink {
    /// Starts an echo on 127.0.0.1 (a free port).
    ///
    /// # Errors
    /// If the socket cannot be bound or the thread started.
    pub fn start() -> io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(CHECK_EVERY))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("flood-echo".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let echo = [0u8; ECHO_LEN];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&echo, peer);
                    }
                }
            })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_echoes_44_bytes() {
        let sink = EchoSink::start().unwrap();
        let me = UdpSocket::bind("127.0.0.1:0").unwrap();
        me.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        me.send_to(b"hello", sink.addr()).unwrap();
        let mut buf = [0u8; 100];
        let (n, from) = me.recv_from(&mut buf).unwrap();
        assert_eq!((n, from), (ECHO_LEN, sink.addr()));
    }
}
