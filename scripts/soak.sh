#!/usr/bin/env bash
# The soak (not in CI): two `elevate serve` replicas (release build) on a PostgreSQL cluster of
# their own, ~5 issuances/s and 50 reads/s for ELEVATE_SOAK_SECS (default 1800 = 30 minutes).
# Reports memory growth per replica, leaked roles and sessions, lateness and chain status.
# Needs what scripts/test.sh installs (PostgreSQL server binaries, the shared Postgres as target).
set -euo pipefail
cd "$(dirname "$0")/.."
export ELEVATE_SOAK_SECS="${ELEVATE_SOAK_SECS:-1800}"
echo "==> soak for ${ELEVATE_SOAK_SECS}s (release build)"
exec cargo test --release --test it -- --ignored soak_two_replicas --nocapture
