"""Container healthcheck for the edgewatch image (no curl or procps in a slim image).

`healthcheck.py http URL`: 2xx from URL. `healthcheck.py proc WORD`: PID 1's command line
holds WORD (the service is up and has not exited into a restart loop).
"""

import sys
import urllib.request
from pathlib import Path


def main() -> int:
    kind, arg = sys.argv[1], sys.argv[2]
    if kind == "http":
        with urllib.request.urlopen(arg, timeout=5) as resp:  # noqa: S310 - fixed local URL
            return 0 if 200 <= resp.status < 300 else 1
    if kind == "proc":
        argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
        return 0 if arg.encode() in argv else 1
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # any failure means "unhealthy"
        print(exc, file=sys.stderr)
        sys.exit(1)
