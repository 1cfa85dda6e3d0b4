//! What a guest's store holds, per world. Each capability's context is its
//! own field, reached through its own `HasData` projection (see
//! `runtime::linker`); an IPAM store has no network state at all.

use crate::caps::{
    attachment_state::AttachmentStateCtx, firewall::FirewallCtx, ipam::IpamCtx, log::LogCtx,
    netns::NetCtx, resolv_conf::ResolvConfCtx, store::StoreCtx,
};
use crate::limits::StoreLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::IoView;

/// What a guest prints is kept (up to this much) and sent to the log after
/// the call; past it, writes fail in the guest.
const OUTPUT_CAPACITY: usize = 1 << 20;

/// The most random bytes a guest may ask for at once (wasmtime-wasi's
/// default is 64 MiB, allocated by the host before the guest sees it).
const MAX_RANDOM: u64 = 64 << 10;

/// WASI for a plugin: no files, no sockets, no environment, no arguments.
/// Its stdout and stderr are captured, never the stdout that carries the
/// CNI result.
fn wasi(output: &MemoryOutputPipe) -> WasiCtx {
    WasiCtx::builder()
        .stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM)
        .build()
}

/// A guest's stdout and stderr, interleaved as written.
pub trait GuestOutput {
    fn output(&self) -> &MemoryOutputPipe;
}

/// The store of an interface plugin (`bridge`).
pub struct InterfaceState {
    pub output: MemoryOutputPipe,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimiter,
    pub net: NetCtx,
    pub firewall: FirewallCtx,
    pub ipam: IpamCtx,
    pub log: LogCtx,
    pub attachment_state: AttachmentStateCtx,
}

impl InterfaceState {
    pub fn new(
        net: NetCtx,
        firewall: FirewallCtx,
        ipam: IpamCtx,
        log: LogCtx,
        attachment_state: AttachmentStateCtx,
        limits: StoreLimiter,
    ) -> Self {
        let output = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        InterfaceState {
            wasi: wasi(&output),
            output,
            table: ResourceTable::new(),
            limits,
            net,
            firewall,
            ipam,
            log,
            attachment_state,
        }
    }
}

/// The store of an IPAM plugin (`host-local`).
pub struct IpamState {
    pub output: MemoryOutputPipe,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimiter,
    pub store: StoreCtx,
    pub resolv_conf: ResolvConfCtx,
    pub log: LogCtx,
}

impl IpamState {
    pub fn new(
        store: StoreCtx,
        resolv_conf: ResolvConfCtx,
        log: LogCtx,
        limits: StoreLimiter,
    ) -> Self {
        let output = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        IpamState {
            wasi: wasi(&output),
            output,
            table: ResourceTable::new(),
            limits,
            store,
            resolv_conf,
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
        impl GuestOutput for $state {
            fn output(&self) -> &MemoryOutputPipe {
                &self.output
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
