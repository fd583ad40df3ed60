"""What the optimiser benchmarks share: every market of a refreshed folder, in one process, planned in ABBA order.

A folder is one that `benchmarks/markets_parallel.py --keep` keeps (or goal_search.py refreshes): its scenario.yaml,
DuckDB file and models. `markets` yields each market's narrowed configuration, the features its champion was fitted
on and the champion's model; `abba` gives the order of two ways for the i-th market (alternating, so a drift of the
machine's speed falls on both ways); `forget_answers` clears the optimiser's remembered answers and keeps its
compiled function, so every planning pays the same compiling.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb


def markets(folder: Path) -> Iterator[tuple[int, str, object, object, object]]:
    """``(i, market, its configuration, its features, its champion's model)`` for every market of ``folder``."""
    from mmm_assets.core.config import load_config
    from mmm_assets.core.modelling.persistence import load_model

    cfg = load_config(folder / "scenario.yaml")
    with duckdb.connect(str(cfg.paths.duckdb), read_only=True) as con:
        for i, market in enumerate(cfg.market_names):
            features = con.execute("SELECT * EXCLUDE (scenario, market) FROM mmm_features WHERE market = ? "
                                   "ORDER BY date", [market]).df()
            model = load_model(sorted(cfg.paths.models_dir.glob(f"mmm_*_{market}_*.nc"))[-1])
            yield i, market, cfg.for_market(market), features, model


def abba(i: int, first: str, second: str) -> tuple[str, str, str, str]:
    """The order of the two ways for the ``i``-th market: ABBA, then BAAB."""
    return (first, second, second, first) if i % 2 == 0 else (second, first, first, second)


def forget_answers() -> None:
    """Clear every kept optimiser's answers (its compiled function stays)."""
    from mmm_assets.core.decisions import budget

    for kept in budget._OPTIMIZERS.values():
        kept[2].clear()
