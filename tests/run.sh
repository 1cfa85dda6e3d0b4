#!/usr/bin/env bash
# Runs every test of wasm-cni: unit tests, protocol tests, the end-to-end
# tests in network namespaces (root), containment tests with hostile guests,
# and interop through the real libcni (cnitool). As root, nothing is
# skipped; every test makes its own namespaces and removes them.
#
#   sudo ./tests/run.sh            # all of it
#   sudo ./tests/run.sh sandboxing # cargo test filters pass through
set -euo pipefail
cd "$(dirname "$0")/.."

./tests/setup.sh --interop
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "== build: host (release) and guests (wasm32-wasip2)" >&2
cargo build --release --locked -p wasm-cni
cargo build --release --locked --target wasm32-wasip2 \
  -p bridge -p host-local -p static-ipam -p tuning -p portmap -p misbehave -p greedy -p hostile-ipam -p contract-0-1-0 -p loopback

echo "== test" >&2
export CNITOOL="$PWD/target/cnitool/cnitool"
# The test kit's compiled modules: in the target directory, not the home.
export WASM_CNI_TESTKIT_CACHE="$PWD/target/testkit-cache"
# State paths of the machine the tests must not touch (they use private
# ones): whatever of them appears during the run is a test's leftover.
watched=(/var/lib/wasm-cni /var/lib/cni /run/cni /etc/wasm-cni)
absent=()
for p in "${watched[@]}"; do [ -e "$p" ] || absent+=("$p"); done
status=0
cargo test --release --locked --workspace -- "$@" || status=$?
# The plugin template, from a copy outside the repository, and the
# benchmark for two rounds, so that it cannot rot (through `cargo test`, which
# reuses the release test build; not filtered).
if [ $# -eq 0 ]; then
  ./tests/template.sh || status=$?
  BENCH_ROUNDS=2 BENCH_PARALLEL=10 BENCH_ATTACHED=10 \
    cargo test --release --locked --workspace --bench latency || status=$?
fi
for p in "${absent[@]}"; do
  if [ -e "$p" ]; then
    echo "tests left $p behind" >&2
    rm -rf "$p"
    status=1
  fi
done

# A test that leaves something behind is a bug, even when it passed.
left=$(ip netns list 2>/dev/null | awk '$1 ~ /^wcni-/ {print $1}')
if [ -n "$left" ]; then
  echo "tests left network namespaces behind: $left" >&2
  for ns in $left; do ip netns del "$ns" || true; done
  status=1
fi
exit $status
