#!/usr/bin/env bash
# Prints the path of a usable CRIU (4.2 or newer: older ones fail on this kernel, see issue 14),
# building it when there is none: $SANDBANK_CRIU if set, else the one built before in the cache,
# else `criu` on PATH if new enough and root holds CAP_SYS_RESOURCE, else CRIU 4.2.1 built from
# Debian's source package, with sandbank's patches (scripts/criu/*.patch), into the cache (outside
# the clone, once per machine: ~1 min). The build needs root and apt: it installs the build
# dependencies from this release's packages and fetches the source tarball through a temporary
# deb-src entry for unstable, removed afterwards.
#
# The patches: CRIU reads each process's resource limits with prlimit(), which a sandbox's processes
# (in a user namespace another uid owns) allow only to a root with CAP_SYS_RESOURCE; some hosts'
# root lacks it (this project's CI machines). The patched CRIU reads /proc/<pid>/limits instead.
# And --empty-ns net restores into a new network namespace even where the checkpoint left the
# origin's out as external; external mounts are bound by the host's root, as a restored user
# namespace's root cannot reach their sources; and a restored sandbox can be checkpointed again
# (see scripts/criu/*.patch).
#
#   SANDBANK_CACHE  where builds are kept (default /var/cache/sandbank)
#
# Exit 0 and the path on stdout, or exit 1 and why on stderr.
set -euo pipefail

VERSION=4.2.1
DEBIAN_VERSION=4.2.1-1
CACHE="${SANDBANK_CACHE:-/var/cache/sandbank}"
# The build's name changes with the patches it has.
BUILT="$CACHE/criu-$VERSION-sandbank6/criu"
PATCHES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/criu"

# "criu --version" says "Version: 4.2.1" (and maybe a GitID line).
new_enough() {
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -1)
  [ -n "$v" ] || return 1
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  [ "$major" -gt 4 ] || { [ "$major" -eq 4 ] && [ "${minor:-0}" -ge 2 ]; }
}

if [ -n "${SANDBANK_CRIU:-}" ]; then
  if new_enough "$SANDBANK_CRIU"; then echo "$SANDBANK_CRIU"; exit 0; fi
  echo "criu: SANDBANK_CRIU=$SANDBANK_CRIU is not CRIU $VERSION or newer" >&2
  exit 1
fi
if [ -x "$BUILT" ] && new_enough "$BUILT"; then echo "$BUILT"; exit 0; fi
# CAP_SYS_RESOURCE is capability 24.
has_sys_resource() {
  local eff
  eff=$(sed -n 's/^CapEff:\s*//p' /proc/self/status)
  (( (16#$eff >> 24) & 1 ))
}
if on_path=$(command -v criu 2>/dev/null) && new_enough "$on_path" && has_sys_resource; then
  echo "$on_path"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "criu: no CRIU $VERSION or newer, and building one needs root and apt (or set SANDBANK_CRIU)" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/sandbank-criu-build.XXXXXX)
src_list=/etc/apt/sources.list.d/sandbank-criu-src.sources
cleanup() {
  rm -rf "$work"
  if [ -e "$src_list" ]; then
    rm -f "$src_list"
    apt-get update -qq >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

echo "criu: building CRIU $VERSION into $BUILT (once per machine)" >&2
export DEBIAN_FRONTEND=noninteractive
deps=(gcc make patch pkg-config python3 protobuf-c-compiler libprotobuf-c-dev protobuf-compiler libprotobuf-dev
  libnl-3-dev libnl-route-3-dev libnet1-dev libcap-dev libaio-dev libbsd-dev libgnutls28-dev libnftables-dev
  uuid-dev libdrm-dev)
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${deps[@]}" >&2

# The source tarball of Debian's package (the upstream release), from unstable's sources.
cat >"$src_list" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt-get update -qq >&2
(cd "$work" && apt-get source --download-only --tar-only "criu=$DEBIAN_VERSION" >&2)
rm -f "$src_list"
apt-get update -qq >&2 || true

tarball=$(ls "$work"/criu_"$VERSION".orig.tar.* | head -1)
tar -xf "$tarball" -C "$work"
srcdir=$(find "$work" -maxdepth 1 -type d -name "criu-*" | head -1)
for p in "$PATCHES"/*.patch; do
  patch -d "$srcdir" -p1 --quiet <"$p" >&2
done
make -C "$srcdir" -j"$(nproc)" criu >"$work/build.log" 2>&1 || {
  tail -30 "$work/build.log" >&2
  echo "criu: the build failed (log above)" >&2
  exit 1
}
mkdir -p "$(dirname "$BUILT")"
install -m 0755 "$srcdir/criu/criu" "$BUILT.tmp"
mv "$BUILT.tmp" "$BUILT"
new_enough "$BUILT" || { echo "criu: the built $BUILT does not report version $VERSION" >&2; exit 1; }
echo "$BUILT"
