import sys

import pytest

from mmm_assets.core.config import MAX_YAML_DEPTH, ConfigError, load_config, parse_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG, PROJECT_DIR


def test_default_config_is_the_reference_scenario():
    cfg = load_config(DEFAULT_CONFIG)
    synthetic = cfg.data.synthetic
    assert cfg.channels == ["adwords", "facebook", "linkedin"]
    assert [c.beta for c in synthetic.channels.values()] == [1.5, 1.0, 2.4]
    assert [c.saturation_lam for c in synthetic.channels.values()] == [3.1, 4.2, 2.1]
    assert [c.adstock_alpha for c in synthetic.channels.values()] == [0.15, 0.35, 0.6]
    assert (synthetic.intercept, synthetic.outcome_scale, synthetic.adstock_l_max) == (3.4, 100000, 12)
    assert cfg.sampler.name == "numpyro"
    t = cfg.validation.thresholds
    assert (t.r2_min, t.mape_max_pct, t.rhat_max, t.ess_bulk_min, t.divergences_max) == (0.95, 2.0, 1.01, 400, 0)
    assert (t.lam_rel_error_max, t.alpha_abs_error_max) == (0.05, 0.05)
    assert cfg.validation.holdout_weeks == 8
    # relative paths resolve against the project folder, not the working directory
    assert cfg.paths.duckdb == PROJECT_DIR / "data" / "mmm.duckdb"


def test_duckdb_path_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MMM_DUCKDB_PATH", str(tmp_path / "other.duckdb"))
    assert load_config(DEFAULT_CONFIG).paths.duckdb == tmp_path / "other.duckdb"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sampler": {"chains": 4, "draws": 1000, "tune": 1000, "target_accept": 0.9, "seed": 1, "drawz": 5}},
         r"sampler\.drawz: unknown key"),
        ({"sampler": {"chains": "four", "draws": 1000, "tune": 1000, "target_accept": 0.9, "seed": 1}},
         r"sampler\.chains: .*integer"),
        ({"sampler": {"chains": 4, "draws": 1000, "tune": 1000, "target_accept": 1.5, "seed": 1}},
         r"sampler\.target_accept: .*less than 1"),
        ({"sampler": {"chains": 2, "draws": 700, "tune": 300, "target_accept": 0.9, "seed": 1, "max_draws": 500}},
         r"sampler: .*max_draws \(500\) must be at least sampler\.draws \(700\)"),
        ({"validation": {"holdout_method": "loo"}}, r"validation\.holdout_method: .*'psis' or 'refit'"),
        ({"model": {"adstock_l_max": 0}}, r"model\.adstock_l_max: .*greater than or equal to 1"),
        ({"data": {"source": "files"}}, r"data\.source is 'files' but there is no data\.files section"),
        ({"data": {"source": "ftp"}}, r"data\.source: .*'synthetic' or 'files'"),
        ({"scenario": "../../etc"}, r"scenario: .*pattern"),
    ],
)
def test_invalid_configs_name_the_key(overrides, message):
    import yaml

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(section), dict) and section != "sampler":
            raw[section] = {**raw[section], **value}
        else:
            raw[section] = value
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, source="bad.yaml")


def test_thresholds_out_of_range(write_config):
    path = write_config({"validation": {"thresholds": {"rhat_max": 0.5, "mape_max_pct": -1}}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    assert "validation.thresholds.rhat_max" in text and "validation.thresholds.mape_max_pct" in text


def test_channel_names_must_be_safe_identifiers(write_config):
    path = write_config(
        {"data": {"synthetic": {"channels": {'tv"; DROP TABLE x; --': {
            "spend_min": 1, "spend_max": 2, "beta": 1, "saturation_lam": 1, "adstock_alpha": 0.1}}}}}
    )
    with pytest.raises(ConfigError, match="channel name .* is not allowed"):
        load_config(path)


def test_column_mapping_rejects_one_source_column_twice():
    raw = {
        "landing_dir": "landing",
        "columns": {"date": "Week", "target": "Sales", "channels": {"tv": "Spend", "radio": "Spend"}},
    }
    from pydantic import ValidationError

    from mmm_assets.core.config import FilesSource

    with pytest.raises(ValidationError, match=r"source column\(s\) \['Spend'\] mapped more than once"):
        FilesSource.model_validate(raw)


def test_landing_file_must_be_a_plain_name():
    from pydantic import ValidationError

    from mmm_assets.core.config import FilesSource

    with pytest.raises(ValidationError, match="plain file name"):
        FilesSource.model_validate(
            {"landing_dir": "x", "file": "../secrets.csv",
             "columns": {"date": "d", "target": "t", "channels": {"tv": "tv"}}}
        )


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_holdout_must_leave_training_weeks(write_config):
    with pytest.raises(ConfigError, match="holdout_weeks"):
        load_config(write_config({"validation": {"holdout_weeks": 52, "min_weeks": 52}}))


def test_extends_merges_over_the_base_file(tmp_path):
    (tmp_path / "child.yaml").write_text(
        f"extends: {DEFAULT_CONFIG}\nscenario: child\nsampler:\n  draws: 50\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.scenario, cfg.sampler.draws, cfg.sampler.chains) == ("child", 50, 2)
    assert cfg.channels == ["adwords", "facebook", "linkedin"]


def test_extends_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_shipped_configs_load():
    for name in ("default", "undersampled", "landing_example"):
        assert load_config(PROJECT_DIR / "config" / f"{name}.yaml").scenario


def _nested_yaml(depth: int) -> str:
    """Mappings in mappings, one a line, down to a value ``depth`` levels deep (the top-level mapping is level 1, the
    keys and values in a mapping of level n are at level n + 1)."""
    keys = depth - 2
    return "".join(f"{'  ' * level}k{level}:\n" for level in range(keys)) + f"{'  ' * keys}leaf: 1\n"


@pytest.mark.parametrize(
    ("text", "where"),
    [(_nested_yaml(500), "line 50, column 99"), ("scenario: " + "[" * 500 + "]" * 500 + "\n", "line 1, column 60")],
    ids=["block", "flow"],
)
def test_nesting_beyond_the_limit_names_the_file_and_line(tmp_path, text, where):
    """500 levels used to crash load_config with an uncaught RecursionError inside PyYAML."""
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {where}: the settings are nested more than {MAX_YAML_DEPTH} levels")


def test_nesting_up_to_the_limit_is_only_validated(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(_nested_yaml(MAX_YAML_DEPTH))
    with pytest.raises(ConfigError, match="k0: unknown key") as err:
        load_config(path)
    assert "nested" not in str(err.value)


def test_a_recursion_error_never_escapes(tmp_path):
    """Nesting the depth count cannot see (here a chain of 'extends' longer than Python's stack) still ends in a
    ConfigError naming the file."""
    limit = 500  # PyTensor, once imported, raises Python's limit to tens of thousands: a chain that long took 25 s
    depth = limit + 10
    for i in range(depth):
        (tmp_path / f"s{i}.yaml").write_text(f"extends: s{i + 1}.yaml\n")
    (tmp_path / f"s{depth}.yaml").write_text("scenario: end\n")
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        with pytest.raises(ConfigError, match=r"s0\.yaml: nested too deeply to read \(Python's recursion limit"):
            load_config(tmp_path / "s0.yaml")
    finally:
        sys.setrecursionlimit(before)


def test_the_validation_profile_follows_the_data_source(write_config):
    synthetic = load_config(write_config())
    assert synthetic.validation.profile == "synthetic" and synthetic.sampler.target_accept == 0.9
    assert synthetic.validation.thresholds.r2_min == 0.95 and synthetic.validation.thresholds.holdout_mase_max is None
    real = load_config(PROJECT_DIR / "config" / "landing_example.yaml")
    assert real.validation.profile == "real" and real.sampler.target_accept == 0.95
    t = real.validation.thresholds
    assert t.r2_min is None and t.lam_rel_error_max is None and t.holdout_mase_max == 1.0 and t.rhat_max == 1.01
    chosen = load_config(write_config({"validation": {"profile": "real", "thresholds": {"holdout_mase_max": 0.8}},
                                       "sampler": {"target_accept": 0.85}}))
    assert chosen.validation.thresholds.holdout_mase_max == 0.8 and chosen.validation.thresholds.r2_min is None
    assert chosen.sampler.target_accept == 0.85  # set explicitly: the profile's is not used


def test_thresholds_can_switch_a_gate_off_but_not_convergence(write_config):
    off = load_config(write_config({"validation": {"thresholds": {"mape_max_pct": None}}}))
    assert off.validation.thresholds.mape_max_pct is None and off.validation.thresholds.r2_min == 0.95
    with pytest.raises(ConfigError, match="rhat_max cannot be null"):
        load_config(write_config({"validation": {"thresholds": {"rhat_max": None}}}))


def test_the_media_families_and_their_one_l_max(write_config):
    cfg = load_config(PROJECT_DIR / "config" / "families" / "weibull_hill.yaml")
    assert (cfg.model.adstock.family, cfg.model.saturation.family) == ("weibull_cdf", "hill")
    assert cfg.model.adstock.l_max == cfg.model.adstock_l_max == 12  # adstock_l_max fills adstock.l_max
    assert cfg.data.synthetic.saturation_parameters("facebook") == {"slope": 1.5, "kappa": 0.5, "beta": 1.0}
    assert cfg.data.synthetic.adstock_parameters("facebook") == {"lam": 2.5, "k": 2.0}
    with pytest.raises(ConfigError, match=r"model.adstock_l_max \(12\) and model.adstock.l_max \(8\) disagree"):
        load_config(write_config({"model": {"adstock": {"l_max": 8}}}))
    with pytest.raises(ConfigError, match="saturation: 'sigmoid'|Input should be 'logistic'"):
        load_config(write_config({"model": {"saturation": {"family": "sigmoid"}}}))


def test_a_synthetic_channel_must_give_its_familys_parameters_by_the_librarys_names(write_config):
    hill = {"data": {"synthetic": {"saturation": {"family": "hill"}, "channels": {
        c: {"saturation_lam": None, "saturation": {"slope": 2.0, "kappa": 0.4}} for c in ("adwords", "facebook")}}}}
    with pytest.raises(ConfigError, match=r"channels.linkedin.saturation_lam is logistic's"):
        load_config(write_config(hill))
    hill["data"]["synthetic"]["channels"]["linkedin"] = {"saturation_lam": None, "saturation": {"slope": 2.0}}
    with pytest.raises(ConfigError, match=r"channels.linkedin.saturation: hill takes \['slope', 'kappa', 'beta'\]: "
                                          r"missing \['kappa'\]"):
        load_config(write_config(hill))


def test_candidates_are_checked_when_the_scenario_loads(write_config):
    two = {"a": {}, "b": {"saturation": {"family": "hill"}}}
    cfg = load_config(write_config({"model": {"candidates": two}}))
    assert cfg.with_candidate("b").model.saturation.family == "hill" and cfg.with_candidate("b").model.candidates == {}
    assert cfg.with_candidate(None) is cfg
    with pytest.raises(ConfigError, match="at least two specifications"):
        load_config(write_config({"model": {"candidates": {"a": {}}}}))
    with pytest.raises(ConfigError, match="model.candidates.b"):
        load_config(write_config({"model": {"candidates": {"a": {}, "b": {"adstock": {"family": "binomial"}}}}}))
    with pytest.raises(ConfigError, match="the pooled model fits every market"):
        load_config(write_config({"markets": {"names": ["north", "south"], "pooling": "pooled"},
                                  "model": {"candidates": two}}))
