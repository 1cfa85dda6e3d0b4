//! What a guest's store holds, per world. Each capability's context is its
//! own field, reached through its own `HasData` projection (see
//! `runtime::linker`); an IPAM store has no network state at all.

use super::engine::{MAX_INSTANCES, MAX_MEMORY};
use crate::caps::{
    firewall::FirewallCtx, ipam::IpamCtx, log::LogCtx, netns::NetCtx, store::StoreCtx,
};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::IoView;

/// WASI for a plugin: no files, no sockets, no environment, no arguments.
/// Its stdout and stderr go to the host's stderr, never to the stdout that
/// carries the CNI result.
fn wasi() -> WasiCtx {
    WasiCtx::builder()
        .stdout(wasmtime_wasi::cli::stderr())
        .stderr(wasmtime_wasi::cli::stderr())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

fn limits() -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(MAX_MEMORY)
        .instances(MAX_INSTANCES)
        .tables(MAX_INSTANCES)
        .memories(MAX_INSTANCES)
        .trap_on_grow_failure(true)
        .build()
}

/// The store of an interface plugin (`bridge`).
pub struct InterfaceState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub net: NetCtx,
    pub firewall: FirewallCtx,
    pub ipam: IpamCtx,
    pub log: LogCtx,
}

impl InterfaceState {
    pub fn new(net: NetCtx, firewall: FirewallCtx, ipam: IpamCtx, log: LogCtx) -> Self {
        InterfaceState {
            wasi: wasi(),
            table: ResourceTable::new(),
            limits: limits(),
            net,
            firewall,
            ipam,
            log,
        }
    }
}

/// The store of an IPAM plugin (`host-local`).
pub struct IpamState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub store: StoreCtx,
    pub log: LogCtx,
}

impl IpamState {
    pub fn new(store: StoreCtx, log: LogCtx) -> Self {
        IpamState {
            wasi: wasi(),
            table: ResourceTable::new(),
            limits: limits(),
            store,
            log,
        }
    }
}

macro_rules! wasi_views {
    ($($state:ty),*) => {$(
        impl WasiView for $state {
            fn ctx(&mut self) -> WasiCtxView<'_> {
                WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
            }
        }
        impl IoView for $state {
            fn table(&mut self) -> &mut ResourceTable {
                &mut self.table
            }
        }
    )*};
}

wasi_views!(InterfaceState, IpamState);
