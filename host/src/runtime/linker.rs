//! One linker per world and contract version, and which world and version
//! a module is.
//!
//! A linker holds exactly what its world grants in its version (plus the
//! WASI a Rust std guest needs: cli, io, clocks, random, with no files and
//! no sockets), so a module that imports more fails to instantiate. A 0.2.0
//! world imports the 0.1.0 capability interfaces unchanged, so the same
//! host implementations serve both; 0.2.0's linker adds what is new.

use super::state::{InterfaceState, IpamState};
use crate::caps::resolv_conf::ResolvConfCtx;
use crate::caps::{
    attachment_state::AttachmentStateCtx, firewall::FirewallCtx, ipam::IpamCtx, log::LogCtx,
    netns::NetCtx, store::StoreCtx,
};
use crate::contract::wasm_cni::plugin::{
    address, firewall, ipam, link, log, netns, route, store, sysctl, types,
};
use crate::contract::wasm_cni::plugin_v2::{
    attachment_state, attachments, bridge_port, ipam_lifecycle, link_tuning, port_mapping,
    reference_cleanup, resolv_conf, spoof_check,
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

/// The contract version a module was built against, from the `plugin`
/// interface it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contract {
    /// `wasm-cni:plugin@0.1.0`: ADD, DEL, CHECK.
    V0_1_0,
    /// `wasm-cni:plugin@0.2.0`: also GC and STATUS, and new capabilities.
    V0_2_0,
}

impl Contract {
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1_0 => "0.1.0",
            Contract::V0_2_0 => "0.2.0",
        }
    }
}

/// The interfaces only the interface-plugin world grants.
const INTERFACE_ONLY: [&str; 15] = [
    "port-mapping",
    "link-tuning",
    "attachment-state",
    "netns",
    "link",
    "address",
    "route",
    "sysctl",
    "firewall",
    "ipam",
    "ipam-lifecycle",
    "attachments",
    "bridge-port",
    "spoof-check",
    "reference-cleanup",
];

/// The interfaces only the ipam-plugin world grants.
const IPAM_ONLY: [&str; 2] = ["store", "resolv-conf"];

/// A module's role, from its imports: `store` makes it an IPAM plugin, any
/// network capability an interface plugin, both is an error. A module that
/// needs neither gets the IPAM world, the smaller grant. Its contract
/// version, from its `plugin` export.
pub fn classify(engine: &Engine, component: &Component) -> Result<Classified, String> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let (role, contract) = classify_names(&imports, &exports)?;
    Ok(Classified {
        role,
        contract,
        uses_attachment_state: imports
            .iter()
            .any(|n| n.starts_with("wasm-cni:plugin/attachment-state@")),
        forwards_ports: imports
            .iter()
            .any(|n| n.starts_with("wasm-cni:plugin/port-mapping@")),
    })
}

/// What a module's imports and exports say of it.
pub struct Classified {
    pub role: Role,
    pub contract: Contract,
    /// It keeps an attachment state (the call needs the network's
    /// directory of them).
    pub uses_attachment_state: bool,
    /// It forwards host ports (an ADD needs a conntrack socket).
    pub forwards_ports: bool,
}

/// [`classify`], from the names a component imports and exports (what
/// `wasm-cni inspect` reads without compiling it).
pub fn classify_names(imports: &[String], exports: &[String]) -> Result<(Role, Contract), String> {
    let mut network = Vec::new();
    let mut ipam = Vec::new();
    for name in imports {
        let Some(rest) = name.strip_prefix("wasm-cni:plugin/") else {
            continue;
        };
        let iface = rest.split('@').next().unwrap_or(rest);
        if IPAM_ONLY.contains(&iface) {
            ipam.push(iface.to_string());
        } else if INTERFACE_ONLY.contains(&iface) {
            network.push(iface.to_string());
        }
    }
    let role = match (ipam.is_empty(), network.is_empty()) {
        (false, false) => {
            return Err(format!(
                "the module imports both {} and {}: a plugin targets either the interface-plugin or the ipam-plugin world",
                ipam.join(", "),
                network.join(", ")
            ));
        }
        (true, false) => Role::Interface,
        (_, true) => Role::Ipam,
    };
    let contract = if exports.iter().any(|n| n == "wasm-cni:plugin/plugin@0.2.0") {
        Contract::V0_2_0
    } else if exports.iter().any(|n| n == "wasm-cni:plugin/plugin@0.1.0") {
        Contract::V0_1_0
    } else {
        return Err(format!(
            "the module exports no wasm-cni:plugin/plugin interface of a version this host knows (0.1.0, 0.2.0); it exports [{}]",
            exports.join(", ")
        ));
    };
    Ok((role, contract))
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
/// firewall, ipam, log; from 0.2.0 also ipam-lifecycle, attachments,
/// reference-cleanup, spoof-check, bridge-port, link-tuning,
/// attachment-state and port-mapping.
pub fn interface_linker(
    engine: &Engine,
    contract: Contract,
) -> wasmtime::Result<Linker<InterfaceState>> {
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
    if contract >= Contract::V0_2_0 {
        ipam_lifecycle::add_to_linker::<_, HasSelf<IpamCtx>>(&mut l, |s| &mut s.ipam)?;
        attachments::add_to_linker::<_, HasSelf<FirewallCtx>>(&mut l, |s| &mut s.firewall)?;
        reference_cleanup::add_to_linker::<_, HasSelf<FirewallCtx>>(&mut l, |s| &mut s.firewall)?;
        spoof_check::add_to_linker::<_, HasSelf<FirewallCtx>>(&mut l, |s| &mut s.firewall)?;
        port_mapping::add_to_linker::<_, HasSelf<FirewallCtx>>(&mut l, |s| &mut s.firewall)?;
        bridge_port::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
        link_tuning::add_to_linker::<_, HasSelf<NetCtx>>(&mut l, |s| &mut s.net)?;
        attachment_state::add_to_linker::<_, HasSelf<AttachmentStateCtx>>(&mut l, |s| {
            &mut s.attachment_state
        })?;
    }
    Ok(l)
}

/// The ipam-plugin world: store and log only; from 0.2.0 also resolv-conf.
pub fn ipam_linker(engine: &Engine, contract: Contract) -> wasmtime::Result<Linker<IpamState>> {
    let mut l = Linker::<IpamState>::new(engine);
    add_wasi(&mut l)?;
    types::add_to_linker::<_, HasSelf<LogCtx>>(&mut l, |s| &mut s.log)?;
    store::add_to_linker::<_, HasSelf<StoreCtx>>(&mut l, |s| &mut s.store)?;
    log::add_to_linker::<_, HasSelf<LogCtx>>(&mut l, |s| &mut s.log)?;
    if contract >= Contract::V0_2_0 {
        resolv_conf::add_to_linker::<_, HasSelf<ResolvConfCtx>>(&mut l, |s| &mut s.resolv_conf)?;
    }
    Ok(l)
}
