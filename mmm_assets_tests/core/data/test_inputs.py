"""The one path from a scenario to its validated features, and the markets a scenario covers (no Dagster)."""

from pathlib import Path

import pandas as pd
import pytest

from mmm_assets.core.config import DEFAULT_MARKET, ConfigError, load_config, normalised_name
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.data import landing_folder
from mmm_assets.core.data.features import SOURCE_ATTR
from mmm_assets.core.data.ingest import landing_market_names, resolve_landing_file
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


# --- names: markets from a market column are normalised, channel names are the user's and strict ------------------


def test_market_names_are_the_columns_values_normalised(write_config, tmp_path):
    cfg = _files_scenario(write_config, tmp_path, "Region")
    export = _export(cfg)
    pd.concat([export.assign(Region="North East"), export.assign(Region="Île-de-France"),
               export.assign(Region="south")]).to_csv(tmp_path / "landing" / "all.csv", index=False)
    path = resolve_landing_file(cfg.data.files)
    assert landing_market_names(path, cfg.data.files.columns) == {
        "ile_de_france": "Île-de-France", "north_east": "North East", "south": "south"}
    assert scenario_markets(cfg) == ["ile_de_france", "north_east", "south"]
    north_east = read_market_file(cfg.for_market("north_east"))
    assert len(north_east) == len(export) and north_east["y"].equals(pd.Series(export["Revenue (EUR)"], name="y"))
    assert north_east.attrs[SOURCE_ATTR].endswith("all.csv (market north_east: Region 'North East')")
    assert read_market_file(cfg.for_market("south")).attrs[SOURCE_ATTR].endswith("all.csv (market south)")
    with pytest.raises(InputError, match="no row for market 'North East'; it has ile_de_france, north_east, south"):
        read_market_file(cfg.for_market("North East"))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["North East", "north-east", "south"],
         r"all\.csv: column 'Region' \(market\): 'North East' and 'north-east' become the same market 'north_east'"),
        (["north", " -- "], r"all\.csv: column 'Region' \(market\): '--' at line 106.* cannot name a market"),
    ],
)
def test_market_values_that_cannot_be_told_apart_are_rejected(write_config, tmp_path, values, message):
    cfg = _files_scenario(write_config, tmp_path, "Region")
    export = _export(cfg).iloc[:104]
    pd.concat([export.assign(Region=value) for value in values]).to_csv(tmp_path / "landing" / "all.csv", index=False)
    with pytest.raises(InputError, match=message):
        check_landing_file(cfg, "all.csv")
    with pytest.raises(InputError, match=message):  # and a run of one market reads the same verdict
        read_market_file(with_landing_file(cfg, "all.csv").for_market("south"))


@pytest.mark.parametrize(
    ("text", "name"),
    [("North East", "north_east"), ("  north--east ", "north_east"), ("São Paulo", "sao_paulo"),
     ("2024", "market_2024"), ("UK & Ireland", "uk_ireland"), ("-- ", None), ("x" * 80, "x" * 63)],
)
def test_normalised_names(text, name):
    assert normalised_name(text, "market") == name


def test_a_channel_name_that_is_not_an_identifier_is_refused_with_its_normalised_form(write_config, tmp_path):
    (tmp_path / "landing").mkdir()
    columns = {**COLUMNS, "channels": {"Google Ads": "Google Ads", "facebook": "Facebook"}}
    files = {"landing_dir": str(tmp_path / "landing"), "columns": columns}
    with pytest.raises(ConfigError, match=r"channel name 'Google Ads' is not allowed: use lower-case letters.*"
                                          r"e\.g\. 'google_ads'"):
        load_config(write_config({"data": {"source": "files", "files": files}}))
