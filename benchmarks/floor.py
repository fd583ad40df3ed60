"""`make bench-floor`: what any weekly refresh pays before it does any work, measured on this machine.

A refresh is one Dagster run in a fresh process (`python -m mmm_assets run`, or the run worker Dagster starts for a
scheduled or UI-launched run). Whatever its assets compute, that process pays for:

1. imports - starting Python and importing the modules a refresh uses (our definitions, so Dagster, dagster-mlflow
   and MLflow; PyMC-Marketing, PyMC, JAX and numpyro, DuckDB, matplotlib), then exiting: a whole process,
   measured from outside (`python -c pass` alone is reported too);
2. bookkeeping - Dagster running a job of the refresh's shape (as many assets and asset checks as `weekly_refresh`,
   the in-process executor, the filesystem IO manager, the SQLite instance of the project's dagster.yaml) whose steps
   do nothing: creating the run, every step's events in the event log, the IO manager's files. Timed inside a
   process that has already imported (1)'s modules, around `execute_in_process` only, so nothing is counted twice;
   first on a fresh instance, then again on the same instance (as a weekly refresh finds it).

The floor of a warm refresh is imports + bookkeeping (again) + the fit alone (`make bench`'s warm fit_seconds).
Each part is measured --repeats times (median, min, max). Prints a markdown table and writes
benchmarks/results/floor-<UTC stamp>.{json,md}.
"""

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import _measure, cache_env

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PY = sys.executable

IMPORTS = """
import mmm_assets.definitions, mmm_assets.core.modelling.fitting, mmm_assets.core.decisions.budget
import mmm_assets.core.presentation.plots
import mmm_assets.core.decisions.roas, mmm_assets.core.presentation.report, mmm_assets.core.stores.tracking
import numpyro, jax, pymc.sampling.jax, matplotlib.pyplot, duckdb
"""

#: After IMPORTS: a job shaped like weekly_refresh whose steps do nothing, run twice on one instance; prints the two
#: times of ``execute_in_process`` as JSON.
BOOKKEEPING = IMPORTS + """
import json, os, time
from dagster import (AssetCheckResult, AssetKey, DagsterInstance, Definitions, FilesystemIOManager, asset,
                     asset_check, define_asset_job, in_process_executor)
n_assets, n_checks = int(os.environ["FLOOR_ASSETS"]), int(os.environ["FLOOR_CHECKS"])

def make_asset(i):
    @asset(name=f"a{i}", deps=[AssetKey(f"a{i - 1}")] if i else [])
    def step() -> int:
        return i
    return step

def make_check(i):
    @asset_check(asset=f"a{i % n_assets}", name=f"c{i}", blocking=True)
    def check() -> AssetCheckResult:
        return AssetCheckResult(passed=True)
    return check

defs = Definitions(assets=[make_asset(i) for i in range(n_assets)],
                   asset_checks=[make_check(i) for i in range(n_checks)],
                   jobs=[define_asset_job("floor", executor_def=in_process_executor)],
                   resources={"io_manager": FilesystemIOManager(base_dir=os.environ["FLOOR_IO"])})
job, times = defs.resolve_job_def("floor"), []
for _ in range(2):
    started = time.monotonic()
    assert job.execute_in_process(instance=DagsterInstance.get()).success
    times.append(time.monotonic() - started)
print(json.dumps(times), flush=True)
os._exit(0)
"""


def _graph_size() -> tuple[int, int]:
    """The number of assets and of asset checks (each check spec counts) of ``weekly_refresh``."""
    from mmm_assets.definitions import ASSETS, CHECKS

    checks = sum(len(list(c.check_specs)) for c in CHECKS)
    return len(ASSETS), checks


def _spread(walls: list[float]) -> dict:
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls), "runs": walls}


def _wall(code: str, env: dict[str, str]) -> dict:
    """A whole ``python -c code`` process, measured from outside."""
    measured = _measure([PY, "-c", code], env)
    if measured["returncode"] != 0:
        raise RuntimeError(measured["stderr"])
    return measured


def _bookkeeping(env: dict[str, str]) -> list[float]:
    """The no-op job's two run times on a fresh instance of the project's dagster.yaml."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        measured = _wall(BOOKKEEPING, {**env, "DAGSTER_HOME": str(home), "FLOOR_IO": str(Path(tmp) / "io")})
        return json.loads(measured["stdout"].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = HERE / ".work" / "floor-cache"
    env = cache_env(work / "pytensor", work / "jax")
    n_assets, n_checks = _graph_size()
    env.update(FLOOR_ASSETS=str(n_assets), FLOOR_CHECKS=str(n_checks))
    interpreter = [_wall("pass", env)["wall_seconds"] for _ in range(args.repeats)]
    imports = [_wall(IMPORTS + "\nimport os\nos._exit(0)\n", env)["wall_seconds"] for _ in range(args.repeats)]
    runs = [_bookkeeping(env) for _ in range(args.repeats)]
    rows = {
        "interpreter": _spread(interpreter),
        "imports": _spread(imports),
        "bookkeeping_fresh": _spread([first for first, _ in runs]),
        "bookkeeping": _spread([again for _, again in runs]),
    }
    names = {
        "interpreter": "python -c pass (process)",
        "imports": "python importing the refresh's modules (process)",
        "bookkeeping_fresh": f"no-op Dagster run, {n_assets} assets + {n_checks} checks, fresh SQLite instance",
        "bookkeeping": "the same run again on that instance",
    }
    lines = ["| what | median, s | min-max, s |", "|---|---|---|"]
    for key, r in rows.items():
        lines.append(f"| {names[key]} | {r['median']:.2f} | {r['min']:.2f}-{r['max']:.2f} |")
    floor = rows["imports"]["median"] + rows["bookkeeping"]["median"]
    lines += ["", f"floor of a refresh before any work (imports + bookkeeping again): {floor:.2f} s"]
    table = "\n".join(lines)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"floor-{stamp}.json").write_text(json.dumps({"stamp": stamp, "rows": rows, "floor_seconds": floor,
                                                              "assets": n_assets, "checks": n_checks}, indent=1))
    (args.out / f"floor-{stamp}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
