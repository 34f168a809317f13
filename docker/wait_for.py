"""Wait until a TCP port accepts connections or an HTTP URL answers 2xx (compose start order).

    python docker/wait_for.py tcp postgres 5432 [--timeout 300]
    python docker/wait_for.py http http://server:4200/api/health [--timeout 300]

`depends_on: condition: ...` is honoured by `docker compose` but not by every compose
implementation (podman-compose 1.0.3 only orders the starts), so each service of
docker/compose.yaml waits for what it needs itself. Exit 0 when ready, 1 on timeout.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.request


def ready(kind: str, target: list[str]) -> bool:
    try:
        if kind == "tcp":
            with socket.create_connection((target[0], int(target[1])), timeout=3):
                return True
        with urllib.request.urlopen(target[0], timeout=5) as r:  # noqa: S310 - a URL we were given
            return 200 <= r.status < 300
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["tcp", "http"])
    ap.add_argument("target", nargs="+", help="HOST PORT (tcp) or URL (http)")
    ap.add_argument("--timeout", type=float, default=300.0)
    a = ap.parse_args()
    if (a.kind == "tcp") != (len(a.target) == 2):
        ap.error("tcp takes HOST PORT, http one URL")
    t0 = time.monotonic()
    while not ready(a.kind, a.target):
        if time.monotonic() - t0 > a.timeout:
            print(f"wait_for: {' '.join(a.target)} not ready after {a.timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(1.0)
    print(f"wait_for: {' '.join(a.target)} ready after {time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
