//! One linker per world, and which world a module is.
//!
//! A linker holds exactly what its world grants (plus the WASI a Rust std
//! guest needs: cli, io, clocks, random, with no files and no sockets), so
//! a module that imports more fails to instantiate.

use super::state::{InterfaceState, IpamState};
use crate::caps::{
    firewall::FirewallCtx, ipam::IpamCtx, log::LogCtx, netns::NetCtx, store::StoreCtx,
};
use crate::contract::wasm_cni::plugin::{
    address, firewall, ipam, link, log, netns, route, store, sysctl, types,
};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi_io::IoView;

/// The role a module plays, from the world it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Interface,
    Ipam,
}

/// The interfaces only the interface-plugin world grants.
const INTERFACE_ONLY: [&str; 7] = [
    "netns", "link", "address", "route", "sysctl", "firewall", "ipam",
];

/// A module's role, from its imports: `store` makes it an IPAM plugin, any
/// network capability an interface plugin, both is an error. A module that
/// needs neither gets the IPAM world, the smaller grant.
pub fn role_of(engine: &Engine, component: &Component) -> Result<Role, String> {
    let mut network = Vec::new();
    let mut uses_store = false;
    for (name, _) in component.component_type().imports(engine) {
        let Some(rest) = name.strip_prefix("wasm-cni:plugin/") else {
            continue;
        };
        let iface = rest.split('@').next().unwrap_or(rest);
        if iface == "store" {
            uses_store = true;
        } else if INTERFACE_ONLY.contains(&iface) {
            network.push(iface.to_string());
        }
    }
    match (uses_store, network.is_empty()) {
        (true, false) => Err(format!(
            "the module imports both wasm-cni:plugin/store and {}: a plugin targets either the interface-plugin or the ipam-plugin world",
            network.join(", ")
        )),
        (false, false) => Ok(Role::Interface),
        (_, true) => Ok(Role::Ipam),
    }
}

fn add_wasi<T: WasiView + IoView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi_io::add_to_linker_async(l)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    Ok(())
}

/// The interface-plugin world: netns, link, address, route, sysctl,
/// firewall, ipam, log.
pub fn interface_linker(engine: &Engine) -> wasmtime::Result<Linker<InterfaceState>> {
    let mut l = Linker::<InterfaceState>::new(engine);
    add_wasi(&mut l)?;
    types::add_to_linker::<_, HasSelf<LogCtx>>(&mut l, |s| &mut s.log)?;
    netns::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
    link::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
    address::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
    route::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
    sysctl::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
    firewall::add_to_linker::<_, HasSelf<FirewallCtx>>(&mut l, |s| &mut s.firewall)?;
    ipam::add_to_linker::<_, HasSelf<IpamCtx>>(&mut l, |s| &mut s.ipam)?;
    log::add_to_linker::<_, HasSelf<LogCtx>>(&mut l, |s| &mut s.log)?;
    Ok(l)
}

/// The ipam-plugin world: store and log only.
pub fn ipam_linker(engine: &Engine) -> wasmtime::Result<Linker<IpamState>> {
    let mut l = Linker::<IpamState>::new(engine);
    add_wasi(&mut l)?;
    types::add_to_linker::<_, HasSelf<LogCtx>>(&mut l, |s| &mut s.log)?;
    store::add_to_linker::<_, HasSelf<StoreCtx>>(&mut l, |s| &mut s.store)?;
    log::add_to_linker::<_, HasSelf<LogCtx>>(&mut l, |s| &mut s.log)?;
    Ok(l)
}
