#!/usr/bin/env bash
# Builds the QEMU boot image for the swarm boot agent: a Debian cloud kernel, a small
# first-stage initramfs, and a read-only root drive holding busybox, the virtio modules,
# the host's Node, the boot agent and an /init that runs the agent once and powers the VM off.
#
# Usage: scripts/vm/build-image.sh [--trust-root ROOT.pub] [OUT_DIR]   (default: .swarm/vm)
#
#   --trust-root ROOT.pub   the platform root's public key (SPKI PEM, Ed25519), baked in as
#                           /opt/swarm/trust/root.pub: the agent then runs only bundles
#                           signed under it (docs/signing.md). Only the image carries it:
#                           /init ignores a swarm.trust_root on the kernel command line.
#
# Output (all under OUT_DIR):
#   vmlinuz              the kernel (from linux-image-<ver>-cloud-amd64)
#   initramfs.cpio       the first stage (uncompressed newc): mounts root.ext4, switches to it
#   root.ext4            the root file system, attached read-only (busybox, node, the agent, /init)
#   image.inputs         fingerprint of everything the image was built from
#   boot-agent.cjs, snapshot.log  the start-up snapshot's script, and what building it printed
#   deb/, kernel-pkg/    the downloaded kernel package and its unpacked tree
#   rootfs/, mini-rootfs/  the staging trees (only while building)
#
# Idempotent and fast when nothing changed: packages are installed only when missing,
# the kernel package is downloaded only when the wanted version is not already in deb/,
# the boot agent is rebuilt only when its sources are newer than its dist file, and the
# image is rebuilt only when the fingerprint of its inputs changed or the last build could
# not make the agent's start-up snapshot (image.inputs then says so, and matches nothing:
# every build makes the image again, logging why, until the snapshot builds).
#
# Network: apt-get talks to the configured Debian mirror (package installs and the one
# kernel package download); nothing else is downloaded.
#
# The VM's /init (see the heredoc below) prints, on the serial console (ttyS0):
#   SWARM_INIT uptime=<s>     as soon as it runs
#   SWARM_AGENT_START         just before it runs /opt/swarm/boot.sh
# and on the exit channel, the second serial port (/dev/ttyS1, root's only, opened by
# /init alone once boot.sh has ended; the workload's output goes to the console and
# cannot forge it):
#   SWARM_EXIT=<code>         boot.sh's exit code (the workflow's, or the agent's own)
# and then powers off. The qemu driver reads these markers with the constants of
# packages/sdk/src/vm-console.ts; test/vm-console.test.ts fails when the two disagree.
# The agent runs as root and runs the workflow as the unprivileged user `swarm` (uid and
# gid 1000, home /home/swarm; see docs/boot-agent.md). Kernel command line settings /init
# understands:
#   swarm.probe=1             report exit code 0 and power off at once (acceleration probe)
#   swarm.net_addr=A/N        the guest address instead of 169.254.169.15/24
#   swarm.<name>=<value>      exported as SWARM_<NAME>=<value> to boot.sh and the agent
#                             (e.g. swarm.fetch_attempts=2); values cannot contain spaces;
#                             never agent_token, trust_root or boot_print (ignored, said so)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRUST_ROOT=
OUT=
while [ $# -gt 0 ]; do
  case $1 in
    --trust-root) [ $# -ge 2 ] || { echo "build-image: --trust-root needs a file" >&2; exit 2; }; TRUST_ROOT=$2; shift 2 ;;
    -*) echo "build-image: unknown option $1 (usage: build-image.sh [--trust-root ROOT.pub] [OUT_DIR])" >&2; exit 2 ;;
    *) OUT=$1; shift ;;
  esac
done
OUT=${OUT:-.swarm/vm}
if [ -n "$TRUST_ROOT" ]; then
  # Refused unless it is an Ed25519 public key: the agent would fail every boot on anything else.
  # A private key is refused too (node would derive the public key from it, and the root's
  # private key would be baked world-readable into the image).
  if grep -q 'PRIVATE KEY' "$TRUST_ROOT" 2>/dev/null; then
    echo "build-image: --trust-root $TRUST_ROOT is a PRIVATE key: give the root's public key (the .pub file), never the private one" >&2; exit 2
  fi
  node -e 'const t = require("node:fs").readFileSync(process.argv[1], "utf8");
    if (!/^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+\/=\r\n]+-----END PUBLIC KEY-----\s*$/.test(t.trimStart())) throw new Error("not a PUBLIC KEY PEM");
    const k = require("node:crypto").createPublicKey(t);
    if (k.asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 key");' "$TRUST_ROOT" 2>/dev/null ||
    { echo "build-image: --trust-root $TRUST_ROOT is not an Ed25519 public key (PUBLIC KEY PEM, SPKI; swarm keys generate writes one)" >&2; exit 2; }
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# One build at a time per output directory (bounded wait).
exec 9>"$OUT/.lock"
flock -w 900 9 || { echo "build-image: $OUT is locked by another build" >&2; exit 1; }
AGENT_PKG="$ROOT/packages/boot-agent"
AGENT_JS="$AGENT_PKG/dist/boot-agent.mjs"
BOOT_SH="$AGENT_PKG/boot.sh"
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk"
started=$(date +%s%N)

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- 1. host packages -------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
installed busybox-static || missing+=(busybox-static)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
  fi
fi
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing after installing busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then die "$BUSYBOX is not statically linked"; fi

# --- 2. kernel package --------------------------------------------------------------
mkdir -p "$OUT/deb"
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1 || true)
if [ -n "$kpkg" ]; then
  deb=$(ls "$OUT/deb/${kpkg}"_*_amd64.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$deb" ]; then
    log "downloading $kpkg"
    (cd "$OUT/deb" && apt-get download "$kpkg" >&2) || {
      apt-get update >&2
      (cd "$OUT/deb" && apt-get download "$kpkg" >&2)
    }
    deb=$(ls "$OUT/deb/${kpkg}"_*_amd64.deb | head -n 1)
  fi
else
  # No package lists (offline): use a kernel package downloaded earlier, if any.
  deb=$(ls -t "$OUT"/deb/linux-image-*-cloud-amd64_*_amd64.deb 2>/dev/null | head -n 1 || true)
  [ -n "$deb" ] || die "cannot resolve linux-image-cloud-amd64 with apt-cache (run apt-get update)"
fi
debname=$(basename "$deb")
if [ "$(cat "$OUT/kernel-pkg.deb" 2>/dev/null)" != "$debname" ] || [ ! -d "$OUT/kernel-pkg/boot" ]; then
  log "unpacking $debname"
  rm -rf "$OUT/kernel-pkg"
  dpkg -x "$deb" "$OUT/kernel-pkg"
  echo "$debname" > "$OUT/kernel-pkg.deb"
fi
vmlinuz_src=$(ls "$OUT"/kernel-pkg/boot/vmlinuz-* | head -n 1)
KVER=${vmlinuz_src##*/vmlinuz-}
MODDIR=
for d in "$OUT/kernel-pkg/lib/modules/$KVER" "$OUT/kernel-pkg/usr/lib/modules/$KVER"; do
  if [ -d "$d" ]; then MODDIR=$d; break; fi
done
[ -n "$MODDIR" ] || die "no modules directory for $KVER in $debname"

# --- 3. boot agent ------------------------------------------------------------------
agent_pnpm() {
  if command -v pnpm >/dev/null 2>&1; then
    (cd "$ROOT" && pnpm --filter @swarm/boot-agent run "$@" >&2)
  else
    (cd "$ROOT" && npx -y pnpm@12.4.2 --filter @swarm/boot-agent run "$@" >&2)
  fi
}
# The agent bundles packages/boot-agent/src and, from packages/sdk/src, the metadata
# schema (contract/metadata.ts, patterns.ts) and the bundle rules (see the imports of
# boot-agent/src/*.ts).
SDK="$ROOT/packages/sdk/src"
if [ ! -f "$AGENT_JS" ] || [ -n "$(find "$AGENT_PKG/src" "$AGENT_PKG/package.json" "$SDK/contract" "$SDK/bundle-rules" \
     -type f -newer "$AGENT_JS" -print -quit 2>/dev/null)" ]; then
  log "building the boot agent"
  agent_pnpm build
fi
[ -f "$AGENT_JS" ] || die "boot agent build produced no $AGENT_JS"

# --- 4. initramfs -------------------------------------------------------------------
NODE_BIN=$(readlink -f "$(command -v node)")
node_libs=$(ldd "$NODE_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
# this CPU's features as V8 sees them (the snapshot is built here, for them); a failure stops the build
snapshot_id=$(env -u SWARM_NODE_FLAGS SWARM_NODE="$NODE_BIN" SWARM_BOOT_PRINT=snapshot-id sh "$BOOT_SH")
fingerprint=$(
  {
    echo "kernel $debname"
    echo "busybox $(dpkg-query -W -f='${Version}' busybox-static)"
    echo "node $NODE_BIN $(stat -c '%s %Y' "$NODE_BIN")"
    for lib in $node_libs; do echo "lib $lib $(stat -L -c '%s %Y' "$lib")"; done
    echo "agent $(sha256sum < "$AGENT_JS")"
    echo "boot.sh $(sha256sum < "$BOOT_SH")"
    echo "snapshot $snapshot_id"
    echo "builder $(sha256sum < "${BASH_SOURCE[0]}")"
    if [ -n "$TRUST_ROOT" ]; then echo "trust-root $(sha256sum < "$TRUST_ROOT")"; fi
  }
)

sizes() {
  local k i r
  k=$(stat -c %s "$OUT/vmlinuz"); i=$(stat -c %s "$OUT/initramfs.cpio"); r=$(stat -c %s "$OUT/root.ext4")
  echo "image: $OUT/vmlinuz ($((k / 1024)) KiB) + $OUT/initramfs.cpio ($((i / 1024)) KiB) + $OUT/root.ext4 ($((r / 1024 / 1024)) MiB, read-only) (kernel $KVER)"
}

if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.cpio" ] && [ -f "$OUT/root.ext4" ] && [ "$(cat "$OUT/image.inputs" 2>/dev/null)" = "$fingerprint" ]; then
  log "up to date"
  sizes
  exit 0
fi

log "assembling the initramfs"
RFS="$OUT/rootfs"
rm -rf "$RFS"
mkdir -p "$RFS"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,root,etc,lib/modules,opt/swarm,var/cache/swarm,home}
chmod 1777 "$RFS/tmp"
# The root file system is read-only: the workflow directory lives under /var/cache/swarm
# (the cache drive, or a tmpfs without one); /opt/workflow points there for workloads that name it.
ln -s /var/cache/swarm/workflow "$RFS/opt/workflow"

# busybox and its applets (never overwriting a file already placed)
cp "$BUSYBOX" "$RFS/bin/busybox"
for applet in $("$BUSYBOX" --list-full); do
  [ -e "$RFS/$applet" ] || [ -L "$RFS/$applet" ] || ln -s /bin/busybox "$RFS/$applet"
done

# kernel modules, decompressed (busybox insmod cannot read .ko.xz/.ko.zst)
for m in $MODULES; do
  f=$(find "$MODDIR" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)
  if [ -z "$f" ]; then
    if grep -q "/$m.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then continue; fi
    die "module $m not found in $MODDIR"
  fi
  case $f in
    *.xz) xz -dc "$f" > "$RFS/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" > "$RFS/lib/modules/$m.ko" ;;
    *.gz) gzip -dc "$f" > "$RFS/lib/modules/$m.ko" ;;
    *) cp "$f" "$RFS/lib/modules/$m.ko" ;;
  esac
done

# Node, its libraries and the dynamic loader, at the paths ldd names. Node stripped of its
# symbols and debug info when binutils' strip is there (Debian's node: 99 → 86 MB): the
# kernel copies every byte of the initramfs before /init runs.
cp "$NODE_BIN" "$RFS/usr/bin/node"
if command -v strip >/dev/null 2>&1; then strip --strip-all "$RFS/usr/bin/node" || log "strip failed; keeping node as it is"; fi
for lib in $node_libs; do
  mkdir -p "$RFS$(dirname "$lib")"
  cp -L "$lib" "$RFS$lib"
done

# the agent and its boot hook
cp "$AGENT_JS" "$RFS/opt/swarm/boot-agent.mjs"
# The agent's start-up snapshot (Node's --build-snapshot): built by the very node binary the
# image ships, with the V8 flags boot.sh runs it with, on this CPU (a blob made by another
# binary, under other flags or where V8 sees other CPU features makes node abort).
# boot-agent.blob.id names all three as boot.sh computes them (SWARM_BOOT_PRINT): boot.sh
# compares it with its own before using the blob, else runs boot-agent.mjs, saying why.
SNAP_FLAGS=$(env -u SWARM_NODE_FLAGS SWARM_BOOT_PRINT=flags sh "$BOOT_SH")
# boot.sh's CPU feature list is the one V8 11 (Node 20) keys a blob on; a later V8 keys on
# more (AVX-VNNI, F16C), and a blob would then abort where the list says it matches.
v8=$("$NODE_BIN" -p process.versions.v8)
case $v8 in 11.*) ;; *) log "warning: node's V8 is $v8: check boot.sh's CPU feature list (snapshot_id) against its CpuFeatures" ;; esac
# The snapshot's script in this output directory: image builds run side by side (the tests
# build several images), and one must not read another's half-written script.
agent_pnpm build:snapshot-script --outfile="$OUT/boot-agent.cjs"
snapshot_built=yes
if (cd "$RFS/opt/swarm" && "$RFS/usr/bin/node" $SNAP_FLAGS --snapshot-blob boot-agent.blob --build-snapshot "$OUT/boot-agent.cjs" 2>"$OUT/snapshot.log"); then
  env -u SWARM_NODE_FLAGS SWARM_NODE="$RFS/usr/bin/node" SWARM_BOOT_PRINT=snapshot-id sh "$BOOT_SH" >"$RFS/opt/swarm/boot-agent.blob.id"
else
  log "building the start-up snapshot failed (see $OUT/snapshot.log); the image boots the plain agent, and the next build tries again"
  rm -f "$RFS/opt/swarm/boot-agent.blob"
  snapshot_built=no
fi
cp "$BOOT_SH" "$RFS/opt/swarm/boot.sh"
chmod 755 "$RFS/opt/swarm/boot.sh"
# the platform root the agent checks bundle signatures under (SWARM_TRUST_ROOT's default path)
if [ -n "$TRUST_ROOT" ]; then
  mkdir -p "$RFS/opt/swarm/trust"
  install -m 0644 "$TRUST_ROOT" "$RFS/opt/swarm/trust/root.pub"
fi

# minimal /etc (so user and host lookups in the guest find something); `swarm` is the
# user the boot agent runs the workflow as (SWARM_RUNTIME_USER's default)
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'swarm:x:1000:1000:swarm workflow runtime:/home/swarm:/bin/sh' > "$RFS/etc/passwd"
printf '%s\n' 'root:x:0:' 'swarm:x:1000:' > "$RFS/etc/group"
mkdir -p "$RFS/home/swarm"
printf '127.0.0.1 localhost\n' > "$RFS/etc/hosts"

# the kernel opens /dev/console before /init runs: it must exist in the archive
if [ "$(id -u)" -eq 0 ]; then
  mknod -m 600 "$RFS/dev/console" c 5 1
  mknod -m 666 "$RFS/dev/null" c 1 3
fi

cat > "$RFS/init" <<'INIT'
#!/bin/sh
# /init of the swarm VM: bring up what the boot agent needs, run /opt/swarm/boot.sh once,
# report its exit code on the console and power off. Every wait here is bounded.
export PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /run /tmp
echo "SWARM_INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
# The exit channel: root's only (devtmpfs makes it 0600 already; this says so).
chmod 600 /dev/ttyS1
# The archive makes every file root's; the runtime user's home is its own.
chown swarm:swarm /home/swarm

finish() {
  sync
  grep -q ' /var/cache/swarm ' /proc/mounts && umount /var/cache/swarm
  echo "SWARM_EXIT=$1" >/dev/ttyS1
  poweroff -f
  sleep 5
  exit "$1" # PID 1 exiting panics the kernel; with panic=-1 and -no-reboot QEMU ends
}

probe=
net_addr=169.254.169.15/24
# The kernel command line (file $1) → swarm.probe, swarm.net_addr, SWARM_<NAME> exports.
# Names are compared upper-cased, so no spelling of a refused name gets through.
parse_cmdline() {
  set -f
  for arg in $(cat "$1"); do
    case $arg in
      swarm.probe=1) probe=1 ;;
      swarm.net_addr=*) net_addr=${arg#*=} ;;
      swarm.*=*)
        name=${arg%%=*}
        name=$(echo "${name#swarm.}" | tr a-z A-Z)
        case $name in
          '' | *[!A-Z0-9_]*) echo "init: ignoring $arg" ;;
          # /proc/cmdline is readable by every user, the workload's too: a credential never comes from here.
          AGENT_TOKEN) echo "init: ignoring swarm.agent_token (the kernel command line is readable by the workload; use the metadata service)" ;;
          # The trust root comes from the image alone, never from a command line someone else may write.
          TRUST_ROOT) echo "init: ignoring swarm.trust_root (the trust root is the image's /opt/swarm/trust/root.pub)" ;;
          # boot.sh would print it and exit 0 without running anything: a boot that looks like a success.
          BOOT_PRINT) echo "init: ignoring swarm.boot_print (boot.sh's print modes are for building images)" ;;
          *) export "SWARM_$name=${arg#*=}" ;;
        esac
        ;;
    esac
  done
  set +f
}
parse_cmdline /proc/cmdline
[ -n "$probe" ] && finish 0

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk; do
  [ -f "/lib/modules/$m.ko" ] || continue # built into this kernel
  [ -d "/sys/module/$m" ] && continue     # loaded by the first stage (the root drive's)
  insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add "$net_addr" dev eth0 || echo "init: cannot set $net_addr on eth0"
else
  echo "init: no eth0"
fi

# The workflow directory beside the cache (the root is read-only), on the cache drive's file
# system when one is mounted, so a warm boot can hard-link the cached unpacked tree into it
# (links cannot cross file systems). The agent replaces whatever an earlier VM left there.
export SWARM_WORKFLOW_DIR=/var/cache/swarm/workflow
# the bundle cache drive: ext4 on the virtio disk after the root drive (vdb), when attached
cache_dev=vda
[ "${SWARM_ROOT_DEV:-}" = vda ] && cache_dev=vdb
if [ -e "/sys/block/$cache_dev" ]; then
  i=0
  while [ ! -b "/dev/$cache_dev" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
  mkdir -p /var/cache/swarm
  if mount -t ext4 -o noatime "/dev/$cache_dev" /var/cache/swarm; then
    echo "init: cache drive mounted at /var/cache/swarm"
  else
    echo "init: cannot mount /dev/$cache_dev (ext4) on /var/cache/swarm; running without a cache drive"
  fi
fi

echo "SWARM_AGENT_START"
SWARM_LOG_TIMINGS=1 SWARM_NODE=/usr/bin/node SWARM_BOOT_AGENT=/opt/swarm/boot-agent.mjs /bin/sh /opt/swarm/boot.sh
finish $?
INIT
chmod 755 "$RFS/init"

# The root drive: the tree above as a read-only ext4 image (no journal), which the driver
# attaches `readonly=on` as the first virtio disk. The kernel reads only the blocks that are
# touched, where it had to copy a ~90 MiB initramfs before /init (bench/README.md).
root_mib=$(($(du -sm "$RFS" | cut -f1) + 24))
mkfs.ext4 -q -F -L swarm-root -O ^has_journal -m 0 -E root_owner=0:0 -d "$RFS" "$OUT/root.ext4.tmp" "${root_mib}M"
mv "$OUT/root.ext4.tmp" "$OUT/root.ext4"

# The initramfs: busybox, the virtio block modules and a first-stage /init that mounts the
# root drive read-only, puts tmpfs where the system writes (/run, /tmp, /home,
# /var/cache/swarm: the cache drive mounts over the last), and switch_roots to its /init.
MINI="$OUT/mini-rootfs"
rm -rf "$MINI"
mkdir -p "$MINI"/{bin,dev,proc,lib/modules,newroot}
cp "$BUSYBOX" "$MINI/bin/busybox"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
  [ -f "$RFS/lib/modules/$m.ko" ] && cp "$RFS/lib/modules/$m.ko" "$MINI/lib/modules/"
done
[ "$(id -u)" -eq 0 ] && mknod -m 600 "$MINI/dev/console" c 5 1
cat > "$MINI/init" <<'STAGE1'
#!/bin/busybox sh
# First stage of the swarm VM: mount the read-only root drive (/dev/vda) and switch to it.
B=/bin/busybox
$B mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
$B mount -t proc proc /proc
stop() { echo "SWARM_EXIT=$1" >/dev/ttyS1; $B poweroff -f; $B sleep 5; exit "$1"; }
# The acceleration probe boots without drives: answer it here.
if $B grep -q 'swarm.probe=1' /proc/cmdline; then
  echo "SWARM_INIT uptime=$($B cut -d' ' -f1 /proc/uptime)"
  stop 0
fi
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
  [ -f "/lib/modules/$m.ko" ] && { $B insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"; }
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do $B sleep 0.05; i=$((i + 1)); done
$B mount -t ext4 -o ro,noatime /dev/vda /newroot || { echo "init: cannot mount the root drive /dev/vda"; stop 70; }
for d in run tmp home var/cache/swarm; do $B mount -t tmpfs -o mode=0755 tmpfs "/newroot/$d" || stop 70; done
$B chmod 1777 /newroot/tmp
$B mkdir -p /newroot/home/swarm
$B umount /proc
$B mount --move /dev /newroot/dev
export SWARM_ROOT_DEV=vda
exec $B switch_root /newroot /init
STAGE1
chmod 755 "$MINI/init"
(cd "$MINI" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) > "$OUT/initramfs.cpio.tmp"
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
rm -rf "$RFS" "$MINI"
cp "$vmlinuz_src" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
# Without its snapshot the image is not what its inputs make: recorded so that it does not
# match them, and the next build (test/vm.test.ts, the bench, by hand) builds it again.
if [ "$snapshot_built" = yes ]; then
  printf '%s\n' "$fingerprint" > "$OUT/image.inputs"
else
  printf '%s\nsnapshot failed: see %s\n' "$fingerprint" "$OUT/snapshot.log" > "$OUT/image.inputs"
fi
log "built in $((($(date +%s%N) - started) / 1000000)) ms"
sizes
