"""The one path from a scenario's input to its validated weekly features, shared by the ingest and feature assets
and the landing-folder sensor: a market's rows of the landing file (:func:`read_market_file`), then the calendar's
event columns and the checks (:func:`weekly_features`); and which markets a scenario covers (:func:`scenario_markets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mmm_assets.core.config import ConfigError, FilesSource, MMMConfig
from mmm_assets.core.data.calendar import with_calendar
from mmm_assets.core.data.features import SOURCE_ATTR, validate_features
from mmm_assets.core.data.ingest import MARKET_VALUE_ATTR, landing_markets, read_landing_file, resolve_landing_file


def scenario_markets(cfg: MMMConfig, landing: Path | None = None, seen: Sequence[str] | None = None) -> list[str]:
    """The markets a refresh of the scenario covers: the configured ones (``markets.names``, or the one default
    market); for a scenario whose markets come from its landing file's market column, ``seen`` when the caller knows
    them already (the partitions earlier files added), else those in ``landing`` (default: the file it reads now).
    """
    if cfg.market_names is not None:
        return cfg.market_names
    if seen is not None:
        return list(seen)
    files = cfg.data.files
    assert files is not None  # the markets come from a file only for a files source with a market column
    return landing_markets(landing or resolve_landing_file(files), files.columns)


def with_landing_file(cfg: MMMConfig, name: str) -> MMMConfig:
    """The scenario reading landing file ``name`` (a plain name in its landing folder), not its configured or newest
    one."""
    if cfg.data.files is None:
        raise ConfigError(f"scenario {cfg.scenario}: landing file {name} is named but there is no data.files section")
    files = FilesSource.model_validate({**cfg.data.files.model_dump(), "file": name})
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"files": files})})


def read_market_file(cfg: MMMConfig) -> pd.DataFrame:
    """The market's canonical weekly frame from the scenario's landing file; ``attrs[SOURCE_ATTR]`` names the file
    (and the market, when the file holds several, with the market column's value when the name normalises it:
    "spend.csv (market north_east: region 'North East')")."""
    files = cfg.data.files
    assert files is not None
    path = resolve_landing_file(files)
    frame = read_landing_file(path, files.columns, cfg.market if files.market_column else None)
    frame.attrs[SOURCE_ATTR] = str(path)
    if files.market_column:
        value = frame.attrs[MARKET_VALUE_ATTR]
        spelled = "" if value == cfg.market else f": {files.market_column} {value!r}"
        frame.attrs[SOURCE_ATTR] = f"{path} (market {cfg.market}{spelled})"
    return frame


def weekly_features(cfg: MMMConfig, spend: pd.DataFrame) -> pd.DataFrame:
    """The market's validated feature table: ``spend`` with the calendar's event columns, checked; an
    :class:`InputError` names ``spend.attrs[SOURCE_ATTR]``."""
    weekly = with_calendar(spend, cfg)  # the event flags are stored with the features
    source = spend.attrs.get(SOURCE_ATTR, "marketing_spend")
    return validate_features(weekly, cfg.channels, cfg.controls, cfg.validation.min_weeks, source)


def check_landing_file(cfg: MMMConfig, name: str) -> list[str]:
    """The markets landing file ``name`` feeds, each read and validated as a refresh on that file would; raises
    :class:`InputError` for the first problem."""
    cfg = with_landing_file(cfg, name)
    assert cfg.data.files is not None
    markets = scenario_markets(cfg, resolve_landing_file(cfg.data.files))
    for market in markets:
        narrowed = cfg.for_market(market)
        weekly_features(narrowed, read_market_file(narrowed))
    return markets
