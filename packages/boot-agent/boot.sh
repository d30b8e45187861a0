#!/bin/sh
# /opt/swarm/boot.sh: the VM's boot hook. Brings up what the boot agent needs (kernel
# file systems, its directories, the link-local address through which the metadata
# service is reached) and then becomes the agent, so the VM's exit status is the
# workflow's. POSIX sh: runs under busybox ash and dash.
#
# Settings (environment): SWARM_NODE (default: node on PATH), SWARM_BOOT_AGENT
# (default /opt/swarm/boot-agent.mjs), SWARM_BOOT_SNAPSHOT (default: the agent's .blob
# beside it; "off" to skip), SWARM_NET_DEV and SWARM_NET_ADDR (e.g. eth0 and
# 169.254.169.15/24: configured only when given), SWARM_NODE_FLAGS (default below),
# SWARM_BOOT_PRINT (flags or snapshot-id: print that and exit; for image builds).
# Arguments are passed to the agent.
set -eu

agent=${SWARM_BOOT_AGENT:-/opt/swarm/boot-agent.mjs}
node=${SWARM_NODE:-node}

# Node's V8 flags (SWARM_NODE_FLAGS overrides them):
# - --max-semi-space-size=1: a 1 MiB young generation instead of up to 16 MiB per
#   semi-space keeps the agent's peak RSS ~15 MiB lower (it allocates short-lived chunks only);
# - --no-lazy: every function compiled with its script, not at its first call. The
#   snapshot then holds the agent's bytecode, and the builtins it loads after the restore
#   (http, child_process) compile in one pass each. Under TCG this took ~0.4 s off the agent's
#   start-up to the workflow's start (bench/README.md, #7).
flags=${SWARM_NODE_FLAGS---max-semi-space-size=1 --no-lazy}

# What a start-up snapshot must have been built for to be used here: this node binary (by
# size), these flags, and the CPU features V8 sees. Node refuses a blob made under other
# ones, exiting 14 before the agent runs (the blob carries V8's CachedDataVersionTag, which
# hashes V8's version, its flags and the features it detected). The features are those
# V8 11 (Node 20) probes on x86-64, by their /proc/cpuinfo names (SSE3 is "pni", SAHF
# "lahf_lm", LZCNT "abm"), and F16C, which later V8s add; elsewhere the list is empty on
# both sides. Not AVX-VNNI, which later V8s also add: this host has it and its TCG guests
# do not, and V8 11's blob restores there. Shell builtins only: this runs on every boot.
snapshot_id() {
  cpu_line=
  if [ -r /proc/cpuinfo ]; then
    while IFS= read -r line; do
      case $line in flags*) cpu_line=" ${line#*:} " && break ;; esac
    done </proc/cpuinfo
  fi
  cpu=
  for f in pni ssse3 sse4_1 sse4_2 lahf_lm avx avx2 fma bmi1 bmi2 abm popcnt f16c; do
    case $cpu_line in *" $f "*) cpu="$cpu${cpu:+,}$f" ;; esac
  done
  node_path=$(command -v "$node" || true)
  id="size=$(stat -c %s "$node_path" 2>/dev/null || echo unknown) flags=$flags cpu=$cpu"
}

# SWARM_BOOT_PRINT=flags or =snapshot-id: print that and exit, changing nothing
# (scripts/vm/build-image.sh builds the image's snapshot with these).
if [ -n "${SWARM_BOOT_PRINT:-}" ]; then
  case $SWARM_BOOT_PRINT in
    flags) printf '%s\n' "$flags" ;;
    snapshot-id)
      snapshot_id
      case $id in *size=unknown*)
        echo "boot.sh: no node at ${node} (SWARM_NODE)" >&2
        exit 69
        ;;
      esac
      printf '%s\n' "$id"
      ;;
    *)
      echo "boot.sh: SWARM_BOOT_PRINT is flags or snapshot-id, not \"$SWARM_BOOT_PRINT\"" >&2
      exit 64
      ;;
  esac
  exit 0
fi

mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
if [ "$(id -u)" = 0 ]; then
  [ -r /proc/mounts ] || mount -t proc proc /proc
  mounted /sys || mount -t sysfs sysfs /sys 2>/dev/null || true
  mounted /dev || mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
  mkdir -p /run/swarm /var/cache/swarm/bundles /opt /tmp
fi

if [ -n "${SWARM_NET_ADDR:-}" ]; then
  dev=${SWARM_NET_DEV:-eth0}
  ip link set "$dev" up
  ip addr add "$SWARM_NET_ADDR" dev "$dev"
fi

if [ ! -r "$agent" ]; then
  echo "boot.sh: boot agent not found at $agent" >&2
  exit 70
fi

# The start-up snapshot (SWARM_BOOT_SNAPSHOT, default: boot-agent.blob beside the agent,
# "off" to skip): only when its .id file names this node, these flags and this CPU
# (snapshot_id above), since node aborts on any other. Otherwise the plain agent runs,
# saying why.
snapshot=${SWARM_BOOT_SNAPSHOT:-${agent%.mjs}.blob}
if [ "$snapshot" != off ] && [ -r "$snapshot" ]; then
  want=
  [ -r "$snapshot.id" ] && read -r want <"$snapshot.id" || true
  snapshot_id
  have=$id
  if [ -n "$want" ] && [ "$want" = "$have" ]; then
    # shellcheck disable=SC2086 # flags are words
    exec "$node" $flags --snapshot-blob "$snapshot" -- "$@"
  fi
  echo "boot.sh: not using the start-up snapshot $snapshot (built for ${want:-an unknown node}, this is $have); running $agent" >&2
fi
# shellcheck disable=SC2086 # flags are words
exec "$node" $flags "$agent" "$@"
