"""The process's scenario: $MMM_CONFIG or config/default.yaml, and the CLI's `serving` of its own."""

from mmm_assets.core.config import ENV_CONFIG
from mmm_assets.core.config.paths import DEFAULT_CONFIG, PROJECT_DIR, default_config_path, default_operations, serving


def test_the_default_scenario_is_the_project_default_unless_the_variable_names_another(write_config, monkeypatch):
    assert (PROJECT_DIR / "pyproject.toml").is_file() and DEFAULT_CONFIG.is_file()
    assert default_config_path() == str(DEFAULT_CONFIG)
    path = write_config({"operations": {"freshness_days": 4}})
    monkeypatch.setenv(ENV_CONFIG, str(path))
    assert default_config_path() == str(path) and default_operations().freshness_days == 4


def test_serving_makes_a_file_the_scenario_for_the_block_only(write_config, monkeypatch):
    path = write_config({"operations": {"freshness_days": 5}})
    with serving(path) as served:
        assert served == default_config_path() == str(path.resolve())
        assert default_operations().freshness_days == 5
    assert default_config_path() == str(DEFAULT_CONFIG)
    monkeypatch.setenv(ENV_CONFIG, "elsewhere.yaml")
    with serving(path):
        pass
    assert default_config_path() == "elsewhere.yaml"
