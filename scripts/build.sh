#!/usr/bin/env bash
# Builds the elevate binary: the one way a release binary is made (deploy/Dockerfile runs this),
# and the way CI builds the binary that scripts/check-deploy.sh runs (`--debug`: the same command
# in the dev profile, which the tests have already built, instead of a long release build).
#   scripts/build.sh [--debug]    prints the path of the binary it built on its last line
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
    "") ;;
    --debug) profile=dev ;;
    *) echo "usage: scripts/build.sh [--debug]" >&2; exit 2 ;;
esac

# --locked: exactly the dependencies of Cargo.lock (the ones scripts/audit-deps.sh scanned).
cargo build --locked --profile "$profile" --bin elevate >&2

dir=release
[ "$profile" = dev ] && dir=debug
echo "${CARGO_TARGET_DIR:-target}/$dir/elevate"
