#!/usr/bin/env bash
# Install what scripts/s3/swift-s3.py needs: Debian's python3-swift (with its
# s3api middleware) and memcached. Idempotent: does nothing when
# /usr/bin/python3 can already import swift.
set -euo pipefail

PY=/usr/bin/python3
PKGS="python3-swift memcached"

if [ -x "$PY" ] && "$PY" -c 'import swift' >/dev/null 2>&1; then
    echo "swift-s3 install: python3-swift already present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "swift-s3 install: need root (or sudo) to run:" \
         "apt-get install -y --no-install-recommends $PKGS" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "swift-s3 install: apt-get not found; install $PKGS with your" \
         "package manager (needs Debian/Ubuntu's python3-swift)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Refresh the package lists only when apt does not know the package yet.
if ! apt-cache show python3-swift >/dev/null 2>&1; then
    $SUDO apt-get update
fi

# shellcheck disable=SC2086 # PKGS is a word list on purpose
$SUDO apt-get install -y --no-install-recommends $PKGS

if ! "$PY" -c 'import swift' >/dev/null 2>&1; then
    echo "swift-s3 install: installed $PKGS but $PY still cannot import" \
         "swift" >&2
    exit 1
fi
echo "swift-s3 install: done"
