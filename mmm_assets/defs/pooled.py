"""A pooled scenario's shared files: the pooled model and its holdout forecasts, each built once per version of the
data and settings by whichever market's run gets there first (the others wait for it, or leave it to it), from every
market's features. `mmm_posterior` takes its market's view of the model, `pooled_holdout` and `mmm_validation` its
holdout forecasts.
"""

from pathlib import Path

import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, MARKET_COLUMN, TARGET_COLUMN
from mmm_assets.core.errors import InputError
from mmm_assets.core.stores.duckdb_store import MODELS_ROLE, exclusive, no_room_is_disk_space_error
from mmm_assets.defs.features import TABLE as FEATURES_TABLE
from mmm_assets.defs.resources import ScenarioResource


def _market_frames(scenario: ScenarioResource, cfg) -> dict[str, pd.DataFrame]:
    """Every market's feature rows, in the model's columns: what the pooled model is fitted to."""
    stored = scenario.read_every_market(FEATURES_TABLE)
    markets = cfg.market_names or sorted(stored[MARKET_COLUMN].unique())
    missing = sorted(set(markets) - set(stored[MARKET_COLUMN]))
    if missing:
        raise InputError(
            f"the pooled model of scenario {cfg.scenario} needs every market's features, but {cfg.paths.duckdb} has "
            f"none for market(s) {', '.join(missing)}: materialise mmm_features for them first (e.g. `make run`, "
            "which refreshes every market, or a backfill of the ingest and features assets)"
        )
    columns = [DATE_COLUMN, TARGET_COLUMN, *cfg.channels, *cfg.controls]
    return {m: stored.loc[stored[MARKET_COLUMN] == m, columns].sort_values(DATE_COLUMN).reset_index(drop=True)
            for m in markets}


def _build_once(path: Path, report, build, wait: bool = True) -> None:
    """``build(path)`` unless another market's run on the same data already did: the pooled model (and its holdout
    forecasts) are computed once for all markets. Without ``wait``, a build under way in another run is left to it."""
    waiting = "waiting for" if wait else "leaving it to"
    with exclusive(path.with_name(path.name + ".lock"), lambda pid: report(f"{waiting} pid {pid} building {path}"),
                   wait) as held:
        if not held:
            return
        if path.exists():
            report(f"reusing {path}, computed by another market's run on the same data")
        else:
            build(path)


def pooled_view(scenario: ScenarioResource, cfg, report):
    """The market's slice of the pooled model over every market's current features (fitted once per version of the
    data and settings, pooling.pooled_version)."""
    from mmm_assets.core.evaluation.measurement import PRIOR_DRAWS
    from mmm_assets.core.inference.sampling import FitResult, diagnose
    from mmm_assets.core.modelling.build import free_parameters
    from mmm_assets.core.modelling.persistence import load_model, save_model
    from mmm_assets.core.modelling.pooling import fit_pooled, keep_prior_totals, market_view, pooled_version

    frames = _market_frames(scenario, cfg)
    path = cfg.paths.models_dir / "pooled" / f"pooled_{cfg.scenario}_{pooled_version(cfg, frames)}.nc"
    fitted: list[FitResult] = []

    def build(target: Path) -> None:
        fitted.append(fit_pooled(cfg, frames, report))
        keep_prior_totals(fitted[0].mmm, PRIOR_DRAWS)  # what each market's view's channels_measured check reads
        save_model(fitted[0].mmm, target, cfg.operations.min_free_disk_mb)

    _build_once(path, report, build)
    view = market_view(load_model(path), cfg.market)
    wall = fitted[0].wall_seconds if fitted else 0.0
    sampler = fitted[0].sampler if fitted else cfg.sampler.cold
    draws = int(view.idata.posterior.sizes["draw"])
    tune = fitted[0].tune if fitted else cfg.sampler.tune
    return FitResult(view, sampler, wall, diagnose(view.idata, free_parameters(view)), draws, tune), path


def market_holdout(scenario: ScenarioResource, cfg, weeks: int, report) -> pd.DataFrame:
    """The market's holdout forecast from one pooled refit without every market's last ``weeks`` weeks."""
    stored = pd.read_parquet(pooled_holdout_file(scenario, cfg, weeks, report))
    return stored[stored[MARKET_COLUMN] == cfg.market].drop(columns=MARKET_COLUMN).reset_index(drop=True)


def pooled_holdout_file(scenario: ScenarioResource, cfg, weeks: int, report, wait: bool = True) -> Path:
    """Every market's holdout forecasts (a parquet file) from one pooled refit without their last ``weeks`` weeks,
    built once per version of the data and settings; without ``wait`` a build under way in another run is left to
    it (the file may not exist yet)."""
    from mmm_assets.core.modelling.persistence import write_atomically
    from mmm_assets.core.modelling.pooling import holdout_forecast_pooled, pooled_version

    frames = _market_frames(scenario, cfg)
    name = f"pooled_{cfg.scenario}_{pooled_version(cfg, frames)}_holdout{weeks}.parquet"

    def build(target: Path) -> None:
        forecasts, _ = holdout_forecast_pooled(cfg, frames, weeks, report)
        table = pd.concat(forecasts, names=[MARKET_COLUMN]).reset_index(level=0)
        # whole or not at all, as the model files: a full disk leaves no partial file, and says which disk
        with no_room_is_disk_space_error(MODELS_ROLE, target.parent, cfg.operations.min_free_disk_mb):
            write_atomically(target, table.to_parquet(index=False))

    path = cfg.paths.models_dir / "pooled" / name
    _build_once(path, report, build, wait)
    return path
