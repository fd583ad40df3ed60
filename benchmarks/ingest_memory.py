"""Peak memory and time of reading one large landing CSV (`core/data/ingest.py::read_landing_file`), in a child process.

Two generated files of about --mb MB each (kept under benchmarks/.work/ingest, reused when present):

- ``wide``: many markets x 208 weeks, each row the market, the date, the target, 3 channels and --extra unmapped
  numeric columns (an export with many columns the mapping does not use);
- ``long``: many markets x 208 weeks, every column mapped (market, date, target, 3 channels): the most rows a file
  of that size can hold, and the most cells the reader must keep.

Each file is read by a fresh Python process (`read_landing_file` of one market, the file's market column set), which
reports its peak resident set before reading (after imports) and after; this parent prints a markdown table. Usage:
``.venv/bin/python benchmarks/ingest_memory.py [--mb 200] [--extra 40]``. Figures: docs/reliability.md (section 1).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "ingest"
WEEKS = 208
CHANNELS = {"adwords": "Google Ads", "facebook": "Facebook", "linkedin": "LinkedIn"}
COLUMNS = {"date": "Week Start", "target": "Revenue", "channels": CHANNELS}
MARKET = "Market"
#: Rows generated and written per to_csv call, so generating the file stays small in memory too.
CHUNK_MARKETS = 200

CHILD = """
import json, resource, sys, time
from pathlib import Path
from mmm_assets.core.config import FilesSource
from mmm_assets.core.data.ingest import LandingFile, read_landing_file

path, columns, market = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
files = FilesSource(landing_dir=path.parent, file=path.name, columns=columns, market_column="Market",
                    max_file_mb=10_000)  # the files are a little over the default limit
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
frame = read_landing_file(LandingFile(path, files), files.columns, market)
seconds = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"imported_mib": imported / 1024, "peak_mib": peak / 1024, "seconds": seconds, "rows": len(frame)}))
"""


def _week_frame(markets: range, extra: int, rng: np.random.Generator) -> pd.DataFrame:
    """208 weekly rows of each market in ``markets``; ``extra`` unmapped numeric columns."""
    n = len(markets) * WEEKS
    dates = pd.date_range("2019-01-07", periods=WEEKS, freq="7D").strftime("%Y-%m-%d")
    data = {MARKET: np.repeat([f"m{m:05d}" for m in markets], WEEKS), "Week Start": np.tile(dates, len(markets)),
            "Revenue": rng.uniform(50_000, 200_000, n).round(2)}
    data |= {source: rng.uniform(0, 50_000, n).round(2) for source in CHANNELS.values()}
    data |= {f"Extra {i}": rng.uniform(0, 10_000, n).round(2) for i in range(extra)}
    return pd.DataFrame(data)


def generate(path: Path, megabytes: float, extra: int) -> Path:
    """Write markets of 208 weeks until the file holds ``megabytes`` MB; an existing file is reused."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as out:
        start = 0
        while out.tell() < megabytes * 1e6:
            chunk = _week_frame(range(start, start + CHUNK_MARKETS), extra, rng)
            chunk.to_csv(out, index=False, header=start == 0)
            start += CHUNK_MARKETS
    partial.rename(path)
    return path


def measure(path: Path) -> dict:
    """Read ``path`` (market m00000) in a fresh process; its figures."""
    command = [sys.executable, "-c", CHILD, str(path), json.dumps(COLUMNS), "m00000"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of each generated file")
    parser.add_argument("--extra", type=int, default=40, help="unmapped columns of the wide file")
    args = parser.parse_args()
    files = {
        "wide": generate(WORK / f"wide-{args.mb:g}mb-{args.extra}.csv", args.mb, args.extra),
        "long": generate(WORK / f"long-{args.mb:g}mb.csv", args.mb, 0),
    }
    print("| file | size MB | rows read | after imports MiB | peak MiB | peak - imports MiB | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, path in files.items():
        m = measure(path)
        size = path.stat().st_size / 1e6
        print(f"| {name} | {size:.0f} | {m['rows']} | {m['imported_mib']:.0f} | {m['peak_mib']:.0f} | "
              f"{m['peak_mib'] - m['imported_mib']:.0f} | {m['seconds']:.1f} |")


if __name__ == "__main__":
    main()
