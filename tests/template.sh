#!/usr/bin/env bash
# The plugin template (examples/plugin-template) builds from a copy
# outside the repository, and its test-kit tests pass, as root and as
# `nobody`. Run by tests/run.sh after the workspace's tests.
#
# The copy's Cargo.toml is pointed at this checkout's SDK and test kit,
# and given this workspace's Cargo.lock (the versions tested here; no
# network). It shares the workspace's target directory, so what the
# workspace compiled (wasmtime, for the test kit) is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d /tmp/wcni-template.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r examples/plugin-template "$work/my-plugin"
cd "$work/my-plugin"
sed -i \
  -e "s|path = \"../../guest-plugins/sdk\"|path = \"$repo/guest-plugins/sdk\"|" \
  -e "s|path = \"../../host/testkit\"|path = \"$repo/host/testkit\"|" \
  Cargo.toml
cp "$repo/Cargo.lock" .
export CARGO_TARGET_DIR="$repo/target"

echo "== template: build the module (wasm32-wasip2) from $work" >&2
cargo build --offline --release --target wasm32-wasip2
echo "== template: its tests" >&2
cargo test --offline --release

# The test binary, run again as nobody: no privilege needed.
exe=$(cargo test --offline --release --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/plugin-[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$exe" ] || { echo "template: no test binary found" >&2; exit 1; }
echo "== template: its tests as nobody" >&2
cd /
# nobody's compiled-module cache, removed with the copy.
mkdir "$work/nobody-cache" && chown nobody "$work/nobody-cache"
chmod 755 "$work"
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
  env WASM_CNI_KIT_AS_NOBODY=1 CARGO_TARGET_DIR="$CARGO_TARGET_DIR" TMPDIR=/tmp \
  WASM_CNI_TESTKIT_CACHE="$work/nobody-cache" "$exe" 2>&1) || {
  echo "$out" >&2
  exit 1
}
echo "$out" | grep -q "test result: ok. [1-9]" || { echo "$out" >&2; exit 1; }
echo "$out" | tail -2 >&2
