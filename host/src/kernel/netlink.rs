//! rtnetlink connections, one per namespace, on the current-thread tokio
//! runtime. A connection's socket is created in its namespace (see
//! `netns::Netns::run`) and then serves requests from the runtime thread.

use super::netns::Netns;
use netlink_sys::{Socket, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::Handle;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};

/// `RTMGRP_LINK`: link state change notifications.
pub const GROUP_LINK: u32 = 1;

/// A request/response connection to one namespace's rtnetlink.
#[derive(Clone)]
pub struct Netlink {
    pub(super) handle: Handle,
}

/// Notifications of `groups` from one namespace. Only a wake-up: under a
/// burst (thirty pods at once) the kernel drops notifications when the
/// socket's buffer fills, and would drop a reply sent to it too, so queries
/// go over an ordinary connection.
pub struct Subscription {
    _connection: Netlink,
    pub(super) events: futures::channel::mpsc::UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<netlink_packet_route::RouteNetlinkMessage>,
        SocketAddr,
    )>,
}

impl Netlink {
    /// Connect to `ns`; `None` is the namespace this process runs in.
    /// Must be called inside the tokio runtime.
    pub async fn connect(ns: Option<&Netns>) -> io::Result<Netlink> {
        Ok(Self::open(ns, 0).await?._connection)
    }

    /// Connect to `ns` and subscribe to the multicast `groups` bitmask.
    /// Subscribe first, then query, and no change is missed in between.
    pub async fn subscribe(ns: Option<&Netns>, groups: u32) -> io::Result<Subscription> {
        Self::open(ns, groups).await
    }

    async fn open(ns: Option<&Netns>, groups: u32) -> io::Result<Subscription> {
        let make = move || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_ROUTE)?;
            socket.bind(&SocketAddr::new(0, groups))?;
            // The kernel then honours a dump's filters (an address dump of
            // one link) instead of sending everything for us to filter: on
            // a node with hundreds of pods, the difference between reading
            // a few addresses and a few thousand.
            socket.set_netlink_get_strict_chk(true)?;
            if groups != 0 {
                socket.set_rx_buf_sz(1usize << 20)?;
            }
            Ok(socket)
        };
        // This namespace's socket is made here (a syscall or two); another
        // namespace's on a thread that enters it.
        let socket = match ns {
            None => make()?,
            Some(ns) => super::netns::run(Some(ns), make).await?,
        };
        // SAFETY: the fd was just created and is owned by nobody else.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, handle, events) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Subscription {
            _connection: Netlink { handle },
            events,
        })
    }
}

/// The longest any one netlink request may take. The kernel answers in
/// microseconds; a reply that never comes must fail the CNI call, not hang
/// the container runtime.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `request.within().await`: a netlink request bounded by
/// `REQUEST_TIMEOUT`, as an `io::Result` with the kernel's errno.
pub trait Bounded<T>: std::future::Future<Output = Result<T, rtnetlink::Error>> + Sized {
    fn within(self) -> impl std::future::Future<Output = io::Result<T>> {
        async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, self).await {
                Ok(r) => r.map_err(to_io),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the kernel (netlink request timed out)",
                )),
            }
        }
    }
}

impl<T, F: std::future::Future<Output = Result<T, rtnetlink::Error>>> Bounded<T> for F {}

/// A netlink failure as an `io::Error` carrying the kernel's errno, so
/// callers can tell ENODEV from EEXIST.
pub fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// The netlink messages in `buf` (what one `recv` returned), each its own
/// slice, by the length in its header; a header cut short ends the list.
/// Every exchange over a plain socket (nf_tables, ctnetlink) reads its
/// answers this way.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    const HEADER: usize = 16;
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if len < HEADER || len > rest.len() {
            return None;
        }
        let (msg, tail) = rest.split_at(len);
        // NLMSG_ALIGN: the next message starts on 4 bytes.
        rest = tail
            .get(len.next_multiple_of(4) - len..)
            .unwrap_or_default();
        Some(msg)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_split_by_their_aligned_lengths() {
        let mut buf = Vec::new();
        for len in [20u32, 18, 16] {
            let mut m = len.to_ne_bytes().to_vec();
            m.resize(len as usize, 0xab);
            m.resize(len.next_multiple_of(4) as usize, 0);
            buf.extend(m);
        }
        let lens: Vec<usize> = super::messages(&buf).map(<[u8]>::len).collect();
        assert_eq!(lens, [20, 18, 16]);
        // A header cut short, or one claiming more than there is, ends it.
        assert_eq!(super::messages(&buf[..30]).count(), 1);
        assert_eq!(super::messages(&[1, 0, 0, 0]).count(), 0);
    }
}
