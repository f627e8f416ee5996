#!/usr/bin/env python3
"""Cold start of `elevate serve` on SQLite: from process start to the first `/readyz` 200, five
times on a fresh store and five times on the same store again (median of each). Usage:

    cargo build --release && python3 scripts/bench-cold-start.py target/release/elevate

Spawning the process and the 2 ms poll are included in the figures (issue 16)."""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def once(binary: str, dbdir: str, port: int) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--insecure-http", "--listen", f"127.0.0.1:{port}",
         "--public-url", f"http://127.0.0.1:{port}", "--database", f"sqlite:{dbdir}/e.db"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except Exception:
                pass
            time.sleep(0.002)
        raise SystemExit("not ready within 30 s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/elevate"
    port = 18000 + os.getpid() % 1000
    fresh, again = [], []
    for _ in range(5):
        with tempfile.TemporaryDirectory() as d:
            fresh.append(once(binary, d, port))
            again.append(once(binary, d, port))
    for name, xs in (("fresh store", fresh), ("existing store", again)):
        print(f"{name}: median {statistics.median(xs) * 1000:.1f} ms "
              f"(min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})")


if __name__ == "__main__":
    main()
