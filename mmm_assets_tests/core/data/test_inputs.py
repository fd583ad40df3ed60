"""The one path from a scenario to its validated features, and the markets a scenario covers (no Dagster)."""

from pathlib import Path

import pandas as pd
import pytest

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.data import landing_folder
from mmm_assets.core.data.features import SOURCE_ATTR
from mmm_assets.core.data.inputs import (
    check_landing_file,
    read_market_file,
    scenario_markets,
    weekly_features,
    with_landing_file,
)
from mmm_assets.core.errors import InputError
from mmm_assets.core.synthetic.generator import generate, landing_export, synthetic_spend

COLUMNS = {"date": "Week Start", "target": "Revenue (EUR)",
           "channels": {"adwords": "Google Ads", "facebook": "Facebook", "linkedin": "LinkedIn"}}


def _files_scenario(write_config, tmp_path: Path, market_column: str | None = None):
    files = {"landing_dir": str(tmp_path / "landing"), "columns": COLUMNS}
    if market_column:
        files["market_column"] = market_column
    (tmp_path / "landing").mkdir()
    return load_config(write_config({"scenario": "landing", "data": {"source": "files", "files": files}}))


def _export(cfg) -> pd.DataFrame:
    frame, _ = generate(load_config(DEFAULT_CONFIG).data.synthetic)
    return landing_export(frame, cfg.data.files.columns)


def test_configured_markets_come_from_the_yaml(small_config):
    assert scenario_markets(small_config()) == [DEFAULT_MARKET]
    assert scenario_markets(small_config({"markets": {"names": ["north", "south"]}}), seen=["x"]) == ["north", "south"]


def test_markets_of_a_market_column_come_from_the_file_or_what_the_caller_has_seen(write_config, tmp_path):
    cfg = _files_scenario(write_config, tmp_path, "Region")
    export = _export(cfg)
    pd.concat([export.assign(Region="south"), export.assign(Region="north")]).to_csv(
        tmp_path / "landing" / "all.csv", index=False)
    assert scenario_markets(cfg) == ["north", "south"]
    assert scenario_markets(cfg, seen=["north"]) == ["north"]
    assert check_landing_file(cfg, "all.csv") == ["north", "south"]
    north = read_market_file(with_landing_file(cfg, "all.csv").for_market("north"))
    assert north.attrs[SOURCE_ATTR].endswith("all.csv (market north)") and len(north) == len(export)


def test_the_sensor_and_the_assets_read_and_validate_alike(write_config, tmp_path):
    cfg = _files_scenario(write_config, tmp_path).for_market(DEFAULT_MARKET)
    export = _export(cfg)
    export.to_csv(tmp_path / "landing" / "good.csv", index=False)
    pd.concat([export.iloc[:10], export.iloc[[9]], export.iloc[10:]]).to_csv(tmp_path / "landing" / "bad.csv",
                                                                             index=False)
    assert check_landing_file(cfg, "good.csv") == [DEFAULT_MARKET]
    with pytest.raises(InputError, match=r"(?s)bad\.csv: .*duplicate dates: 2019-03-11"):
        check_landing_file(cfg, "bad.csv")
    with pytest.raises(InputError, match=r"(?s)bad\.csv: .*duplicate dates"):  # what mmm_features would say
        weekly_features(cfg, read_market_file(with_landing_file(cfg, "bad.csv")))


def test_synthetic_spend_says_where_it_came_from(small_config):
    cfg = small_config().for_market(DEFAULT_MARKET)
    frame = synthetic_spend(cfg)
    assert frame.attrs[SOURCE_ATTR].startswith(f"synthetic generator (scenario small, market {DEFAULT_MARKET}")
    assert len(weekly_features(cfg, frame)) == len(frame)


def test_a_scan_handles_each_content_once(write_config, tmp_path):
    cfg = _files_scenario(write_config, tmp_path)
    export = _export(cfg)
    export.to_csv(tmp_path / "landing" / "spend.csv", index=False)
    (tmp_path / "landing" / "notes.txt").write_text("not a landing file")
    first = landing_folder.scan(cfg, {})
    sha = landing_folder.sha256(tmp_path / "landing" / "spend.csv")
    assert [(a.name, a.sha256, a.markets) for a in first.accepted] == [("spend.csv", sha, [DEFAULT_MARKET])]
    assert first.cursor == {"spend.csv": sha} and not first.rejected
    again = landing_folder.scan(cfg, landing_folder.read_cursor(f'{{"spend.csv": "{sha}"}}'))
    assert not again.accepted and again.cursor == first.cursor
    assert landing_folder.read_cursor("not json") == {} and landing_folder.read_cursor(None) == {}
