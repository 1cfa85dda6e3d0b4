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
