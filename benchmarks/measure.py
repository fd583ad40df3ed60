"""Run one command and report its wall time and peak memory (its own resident set, children included)."""

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    started = time.monotonic()
    completed = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    wall = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall_seconds": wall, "peak_rss_mib": peak_kib / 1024, "returncode": completed.returncode,
                      "stdout": completed.stdout[-20000:], "stderr": completed.stderr[-4000:]}))


if __name__ == "__main__":
    main()
