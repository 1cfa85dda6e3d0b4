#!/usr/bin/env bash
# Prerequisites for building wasm-cni and running its tests and example on
# Debian 12, installed only when missing (so a warm machine skips it all):
#   - Debian packages: a C toolchain (wasmtime builds a little C), curl,
#     iproute2 (ip netns), nftables (masquerade), iptables (what the reference
#     plugins leave, for the switching tests), iputils-ping, procps (sysctl);
#   - Rust: rustup and a stable toolchain when there is no cargo, and the
#     wasm32-wasip2 target the plugins are built for;
#   - with --interop: the real cnitool (libcni) and the reference plugins
#     in /usr/lib/cni, built offline from Debian packages.
# Needs root for apt-get (the tests need root anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

interop=no
[ "${1:-}" = "--interop" ] && interop=yes

say() { printf 'setup: %s\n' "$*" >&2; }

pkgs=(ca-certificates curl gcc libc6-dev iproute2 nftables iptables iputils-ping procps util-linux time)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { say "missing packages ${missing[*]}: run as root"; exit 1; }
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "no cargo: installing rustup and the stable toolchain (wasm-cni needs Rust 1.95 or later)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || {
    say "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2 >/dev/null
  }
fi

if [ "$interop" = yes ]; then
  if [ "$(id -u)" = 0 ]; then
    ./tests/interop/build-cnitool.sh target/cnitool >&2
  else
    say "not root: cnitool not built, the interop tests will skip"
  fi
fi
