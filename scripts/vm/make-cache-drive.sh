#!/usr/bin/env bash
# Creates an empty bundle cache drive for the qemu driver: an ext4 image (label
# swarm-cache) holding an empty bundles/ directory. The VM's /init mounts it at
# /var/cache/swarm, so the boot agent's cache (/var/cache/swarm/bundles) outlives the VM.
#
# Usage: scripts/vm/make-cache-drive.sh FILE [SIZE]   (SIZE as for mkfs.ext4; default 256M)
# Overwrites FILE. Needs mkfs.ext4 (e2fsprogs) with -d support (≥ 1.43).
set -euo pipefail
file=${1:?usage: make-cache-drive.sh FILE [SIZE]}
size=${2:-256M}
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/bundles"
: > "$file"
mkfs.ext4 -q -F -L swarm-cache -E root_owner=0:0 -d "$tree" "$file" "$size"
echo "cache drive: $file ($(du -h --apparent-size "$file" | cut -f1), $(du -h "$file" | cut -f1) on disk)"
