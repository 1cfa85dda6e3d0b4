#!/usr/bin/env bash
# Vendored from the team tools (shared/tools/build-cnitool.sh) so a clean
# clone can build it; tests/run.sh calls it with target/cnitool.
# build-cnitool.sh OUT_DIR
#
# Builds the upstream `cnitool` (the command-line front end of libcni, the
# library that containerd, CRI-O and podman use to run CNI plugins) OFFLINE
# from Debian 12 packages, and installs the real reference plugins
# (containernetworking-plugins, in /usr/lib/cni) for side-by-side tests.
#
# Debian's golang-github-appc-cni-dev ships libcni under /usr/share/gocode
# but leaves cnitool/ out; the source package of the same version has it, so
# it is fetched with `apt-get source` using a private apt state directory
# (the system's apt configuration is not modified) and built in GOPATH mode.
#
# Idempotent: does nothing when OUT_DIR/cnitool exists for the installed
# libcni version. Needs root (apt-get).
#
# Usage as a test client (what libcni does for a runtime):
#   NETCONFPATH=DIR_WITH_CONFLISTS CNI_PATH=PLUGIN_DIRS cnitool add|check|del NETNAME /var/run/netns/NAME
set -euo pipefail

OUT=${1:?usage: build-cnitool.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

PKGS=(containernetworking-plugins golang-go golang-github-appc-cni-dev iproute2 nftables iputils-ping)
missing=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

src_pkg=$(dpkg-query -W -f='${source:Package}' golang-github-appc-cni-dev)
src_ver=$(dpkg-query -W -f='${source:Version}' golang-github-appc-cni-dev)
stamp="$OUT/.cnitool-source"
if [ -x "$OUT/cnitool" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$src_pkg $src_ver" ]; then
  exit 0
fi

work=$(mktemp -d /tmp/build-cnitool.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/parts" "$work/apt/lists/partial" "$work/dl" "$work/gopath/src/cnitool"

# deb-src entries derived from the machine's own Debian sources
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/apt/parts/debian.sources"
fi
if [ -f /etc/apt/sources.list ]; then
  sed -n -e 's/^[[:space:]]*deb[[:space:]]/deb-src /p' /etc/apt/sources.list > "$work/apt/parts/sources.list"
fi
aptopts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/apt/parts"
         -o "Dir::State::Lists=$work/apt/lists" -o "APT::Sandbox::User=root")
apt-get "${aptopts[@]}" -qq update || true
( cd "$work/dl" && apt-get "${aptopts[@]}" -qq source --download-only "$src_pkg=$src_ver" )

tar -xf "$(ls "$work"/dl/*.orig.tar.* | head -n1)" -C "$work/dl"
cp "$(find "$work/dl" -path '*/cnitool/cnitool.go' | head -n1)" "$work/gopath/src/cnitool/"
( cd "$work/gopath/src/cnitool"
  GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache" \
  GOFLAGS= CGO_ENABLED=0 go build -trimpath -o "$OUT/cnitool.new" . )
mv "$OUT/cnitool.new" "$OUT/cnitool"
echo "$src_pkg $src_ver" > "$stamp"
echo "build-cnitool: $OUT/cnitool (libcni $src_ver); reference plugins in /usr/lib/cni"
