//! Real traffic between a sandbox's namespaces, with no tool on the
//! machine (no nc, no socat): sockets made on a thread that entered the
//! namespace. A socket lives in the namespace it was made in, whichever
//! thread uses it later; the thread's move changes nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Run `f` on a thread inside the network namespace at `netns`.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns: PathBuf = netns.into();
    std::thread::spawn(move || {
        use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
        let ns = std::fs::File::open(&netns).unwrap();
        move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
            .expect("enter the namespace");
        f()
    })
    .join()
    .expect("the namespace's thread")
}

/// A TCP server in a namespace that answers every connection with
/// `greeting` and the peer's address (`greeting from <peer>`), until
/// dropped.
pub struct TcpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(netns: &Path, port: u16, greeting: &str) -> TcpServer {
        // IPv6's any address takes IPv4 too (bindv6only is 0 in a new
        // namespace).
        let listener = in_netns(netns, move || TcpListener::bind(("::", port)).unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, greeting) = (stop.clone(), greeting.to_string());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, peer)) => {
                        let _ = writeln!(c, "{greeting} from {}", peer.ip().to_canonical());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TcpServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connect from a namespace and read the server's line; `None` when the
/// connection fails (refused, or no answer within 3 s).
pub fn tcp_line(netns: &Path, to: SocketAddr) -> Option<String> {
    in_netns(netns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut line = String::new();
        s.read_to_string(&mut line).ok()?;
        Some(line.trim().to_string())
    })
}

/// A UDP socket bound in a namespace (to `port` on every address).
pub fn udp_socket(netns: &Path, port: u16) -> UdpSocket {
    udp_socket_at(netns, SocketAddr::from(([0, 0, 0, 0], port)))
}

/// A UDP socket bound in a namespace to `at`.
pub fn udp_socket_at(netns: &Path, at: SocketAddr) -> UdpSocket {
    let s = in_netns(netns, move || UdpSocket::bind(at).unwrap());
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// The next datagram `s` receives within its timeout, as text.
pub fn udp_receive(s: &UdpSocket) -> Option<String> {
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// Send one datagram; the send's own errors (an ICMP unreachable from
/// an earlier one) are ignored, as a client that retries would.
pub fn udp_send(s: &UdpSocket, to: SocketAddr, what: &str) {
    let _ = s.send_to(what.as_bytes(), to);
}
