#!/usr/bin/env bash
# Scans Cargo.lock against the offline RustSec advisory database snapshot (no network here).
# Fails on any vulnerability not ignored, with a reason, in .cargo/audit.toml.
#   ELEVATE_ADVISORY_DB  the snapshot folder (default: ../shared/advisory-db beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

db="${ELEVATE_ADVISORY_DB:-}"
if [ -z "$db" ]; then
    for candidate in ../shared/advisory-db /work/shared/advisory-db; do
        [ -d "$candidate/crates" ] && { db="$candidate"; break; }
    done
fi
if [ -z "$db" ] || [ ! -d "$db/crates" ]; then
    echo "No RustSec advisory snapshot found (set ELEVATE_ADVISORY_DB to a folder with crates/ and rust/)" >&2
    exit 1
fi

if ! command -v cargo-audit >/dev/null; then
    echo "==> installing cargo-audit (cargo install --locked cargo-audit)"
    cargo install --locked --quiet cargo-audit
fi

# cargo-audit wants a git checkout of the database; make one on the fly, fetching disabled.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$db/." "$work/db"
git -C "$work/db" init -q
git -C "$work/db" -c user.name=ci -c user.email=ci@localhost add -A
git -C "$work/db" -c user.name=ci -c user.email=ci@localhost commit -qm snapshot

snapshot=$(grep -o 'commit [0-9a-f]* ([0-9-]*)' "$db/SNAPSHOT.md" 2>/dev/null | head -1 || true)
echo "==> RustSec advisory snapshot: ${snapshot:-date unknown (see $db/SNAPSHOT.md)}"
# The scanner must see a known vulnerability before its silence about ours means anything.
if cargo audit --db "$work/db" --no-fetch --stale --file scripts/fixtures/vulnerable.Cargo.lock >"$work/self-test.log" 2>&1; then
    cat "$work/self-test.log" >&2
    echo "cargo audit found nothing in scripts/fixtures/vulnerable.Cargo.lock (smallvec 1.6.0): the scan cannot be trusted" >&2
    exit 1
fi
grep -q RUSTSEC-2021-0003 "$work/self-test.log" || { cat "$work/self-test.log" >&2; echo "self-test: RUSTSEC-2021-0003 not reported" >&2; exit 1; }
echo "==> self-test: the known-vulnerable fixture is refused (RUSTSEC-2021-0003)"
cargo audit --db "$work/db" --no-fetch --stale
