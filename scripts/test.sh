#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu machine: installs what the tests need
# (Swift with s3api from Debian for the S3 server, pnpm, the workspace's packages),
# type-checks (and checks for import circles), lints and checks formatting (Biome),
# then runs every test against real PostgreSQL and S3 servers it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/s3/install.sh
# test/deploy.test.ts runs docs/deploy.md's commands, which use psql and curl.
if ! command -v psql >/dev/null || ! command -v curl >/dev/null; then
  apt-get install -y --no-install-recommends postgresql-client curl || { apt-get update && apt-get install -y --no-install-recommends postgresql-client curl; }
fi

PNPM_VERSION=12.4.2 # newer pnpm releases need platform builds not served here
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  npm install -g "pnpm@$PNPM_VERSION" --no-audit --no-fund --loglevel=error
fi
pnpm install --frozen-lockfile
pnpm typecheck
pnpm lint

report=$(mktemp -d)/vitest.json
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
if [ -s "$report" ]; then
  node -e '
    const r = require(process.argv[1]);
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
  ' "$report"
fi
exit "$status"
