//! The kernel backends the capabilities call: rtnetlink, namespaces,
//! `/proc/sys/net` and nftables. Nothing here knows about wasm.

pub mod addr;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod route;
pub mod sysctl;
