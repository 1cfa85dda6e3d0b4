#!/usr/bin/env bash
# The example network end to end: the classic `mynet` config, verbatim
# (examples/mynet.conf), run by wasm-cni's wasm bridge and host-local
# plugins for two containers, which then ping the gateway and each other;
# then DEL, and nothing is left.
#
#   sudo ./examples/run.sh
#
# It changes nothing on this machine: a network namespace plays the node
# ("host"), two more are the containers, and the plugin sees a private
# /var/lib (a temporary directory), so its default state and cache paths
# are used without touching the real ones. All of it goes away at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the example creates network namespaces" >&2; exit 1; }

./tests/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "== build" >&2
cargo build --release --locked -p wasm-cni
cargo build --release --locked --target wasm32-wasip2 -p bridge -p host-local
root="$PWD/target/example"
rm -rf "$root"
./examples/install.sh "$root"

host=wcni-example-host a=wcni-example-a b=wcni-example-b
varlib=$(mktemp -d /tmp/wasm-cni-example.XXXXXX)
# The cache install.sh precompiled: no call compiles.
cp -a "$root/var/lib/wasm-cni" "$varlib/"
cleanup() {
  for ns in $a $b $host; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$varlib"
}
trap cleanup EXIT
for ns in $host $a $b; do ip netns add "$ns"; done
ip -n $host link set lo up

# cni COMMAND CONTAINER_ID NETNS: what a container runtime does, exec the
# plugin named by "type" with CNI_* set and the config on stdin.
cni() {
  unshare --mount --propagation private -- sh -c 'mount --bind "$1" /var/lib && shift && exec "$@"' sh "$varlib" \
    ip netns exec $host env \
      CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="/var/run/netns/$3" CNI_IFNAME=eth0 \
      CNI_PATH="$root/opt/cni/bin" WASM_CNI_MODULE_PATH="$root/opt/cni/wasm" \
      "$root/opt/cni/bin/bridge" < examples/mynet.conf
}
step() { printf '\n== %s\n' "$*"; }

step "the config, unchanged"; cat examples/mynet.conf
step "ADD container a"; cni ADD ctr-a $a
step "ADD container b"; cni ADD ctr-b $b
step "container a"; ip -n $a -br addr show dev eth0; ip -n $a route
step "the node: bridge, veths, masquerade"
ip -n $host -br addr show type bridge; ip -n $host -br link show type veth
ip netns exec $host nft list table inet wasm-cni
step "ping a -> gateway, a -> b, b -> a"
ip netns exec $a ping -c 2 -W 2 10.244.0.1
ip netns exec $a ping -c 2 -W 2 10.244.0.3
ip netns exec $b ping -c 2 -W 2 10.244.0.2
step "DEL both (twice: DEL is idempotent)"
for id in a b; do cni DEL ctr-$id wcni-example-$id; cni DEL ctr-$id wcni-example-$id; done
veths=$(ip -n $host -o link show type veth | wc -l)
rules=$(ip netns exec $host nft list table inet wasm-cni | grep -c masquerade || true)
held=$(find "$varlib/cni/networks/mynet" -name '10.*' | wc -l)
echo "left after DEL: $veths veth(s), $rules masquerade rule(s), $held address reservation(s)"
[ "$veths$rules$held" = 000 ] || { echo "example FAILED: something was left" >&2; exit 1; }
step "example OK"
