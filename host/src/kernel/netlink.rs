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

/// A connection that also receives the notifications of `groups`.
pub struct Subscription {
    pub(super) netlink: Netlink,
    pub(super) events: futures::channel::mpsc::UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<netlink_packet_route::RouteNetlinkMessage>,
        SocketAddr,
    )>,
}

impl Netlink {
    /// Connect to `ns`; `None` is the namespace this process runs in.
    /// Must be called inside the tokio runtime.
    pub fn connect(ns: Option<&Netns>) -> io::Result<Netlink> {
        Ok(Self::open(ns, 0)?.netlink)
    }

    /// Connect to `ns` and subscribe to the multicast `groups` bitmask.
    /// Subscribe first, then query, and no change is missed in between.
    pub fn subscribe(ns: Option<&Netns>, groups: u32) -> io::Result<Subscription> {
        Self::open(ns, groups)
    }

    fn open(ns: Option<&Netns>, groups: u32) -> io::Result<Subscription> {
        let make = move || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_ROUTE)?;
            socket.bind(&SocketAddr::new(0, groups))?;
            Ok(socket)
        };
        let socket = match ns {
            None => make()?,
            Some(ns) => ns.run(make)?,
        };
        // SAFETY: the fd was just created and is owned by nobody else.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, handle, events) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Subscription {
            netlink: Netlink { handle },
            events,
        })
    }
}

/// A netlink failure as an `io::Error` carrying the kernel's errno, so
/// callers can tell ENODEV from EEXIST.
pub fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}
