#!/usr/bin/env bash
# The host packages the tests use, installed with apt when missing (the first step of `npm test`).
# mmdebstrap builds the sandboxes' base image from Debian's packages (once per machine). The tests
# run python3 and pip on the host, and the CLI tests use `script` for a terminal. The disk-limit tests format sandbox disks
# with mkfs.ext4; the attack tests try `mount` inside. pasta gives sandboxes their network; nft
# puts their egress rules (`allowOut`/`denyOut`) in force; mkfs.btrfs makes the copy-on-write
# store's filesystem (issue 15). The image tests run a registry (docker-registry) and make the
# image they pull with umoci and push it with skopeo. The ports test opens a sandbox's page in a
# browser (chromium-headless-shell). CRIU (4.2 or newer; for memory
# snapshots, see docs/FULL-SNAPSHOTS.md) is built from Debian's source package by criu.sh when
# missing, into a cache outside the clone.
set -euo pipefail
missing=()
[ -x /usr/bin/mmdebstrap ] || missing+=(mmdebstrap)
[ -x /usr/bin/ps ] || missing+=(procps)
[ -x /usr/bin/python3 ] || missing+=(python3)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[ -x /usr/bin/script ] || missing+=(bsdutils)
[ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
[ -x /usr/bin/mount ] || [ -x /bin/mount ] || missing+=(mount)
[ -x /usr/bin/pasta ] || missing+=(passt)
[ -x /usr/sbin/nft ] || missing+=(nftables)
[ -x /usr/sbin/mkfs.btrfs ] || [ -x /sbin/mkfs.btrfs ] || missing+=(btrfs-progs)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
[ -x /usr/bin/umoci ] || missing+=(umoci)
[ -x /usr/bin/skopeo ] || missing+=(skopeo)
[ -x /usr/bin/chromium-headless-shell ] || missing+=(chromium-headless-shell)
criu() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    bash "$(dirname "$0")/criu.sh" >/dev/null ||
      echo "system-deps: no usable CRIU (see above): the tests that check it will fail" >&2
  fi
}
[ ${#missing[@]} -eq 0 ] && { criu; exit 0; }
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: missing packages: ${missing[*]} (install them as root; the tests that need them will fail)" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
criu
