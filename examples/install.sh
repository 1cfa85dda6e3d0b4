#!/usr/bin/env bash
# Install wasm-cni as a node's single CNI entry, from a built tree:
#
#   /opt/cni/bin/wasm-cni              the host binary
#   /opt/cni/bin/<module> -> wasm-cni  one link per module, so configs that
#                                      say "type": "bridge" run the module
#   /opt/cni/wasm/<module>.wasm        the plugins (bridge, host-local, ...)
#
#   ./examples/install.sh [DESTDIR] [MODULE...]
#
# DESTDIR (default /) prefixes every path, for packaging or for a private
# test root. The modules are then precompiled into the cache
# (DESTDIR/var/lib/wasm-cni/cache) for both engines. MODULE defaults to
# bridge and host-local; list others (static, tuning, portmap, loopback) to install
# them too. Build first:
#   cargo build --release -p wasm-cni
#   cargo build --release --target wasm32-wasip2 -p bridge -p host-local
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-/}
shift || true
modules=("$@")
[ "${#modules[@]}" -gt 0 ] || modules=(bridge host-local)

bin="$dest/opt/cni/bin"
wasm="$dest/opt/cni/wasm"
install -d -m 0755 "$bin" "$wasm"
install -m 0755 target/release/wasm-cni "$bin/wasm-cni"
for m in "${modules[@]}"; do
  # A package is named like its module, but `static` (a Rust keyword).
  crate=${m//-/_}
  [ "$m" = static ] && crate=static_ipam
  src="target/wasm32-wasip2/release/$crate.wasm"
  [ -f "$src" ] || { echo "install: $src is not built" >&2; exit 1; }
  install -m 0644 "$src" "$wasm/$m.wasm"
  # A reference plugin of the same name is replaced by the link.
  ln -sfn wasm-cni "$bin/$m"
done
# Precompile for both engines, so no CNI call compiles (into the node's
# cache; for a DESTDIR, into DESTDIR/var/lib/wasm-cni/cache).
WASM_CNI_MODULE_PATH="$wasm" WASM_CNI_CACHE_DIR="$dest/var/lib/wasm-cni/cache" \
  "$bin/wasm-cni" compile "${modules[@]}" >&2
echo "installed wasm-cni and ${modules[*]} under $dest/opt/cni" >&2
