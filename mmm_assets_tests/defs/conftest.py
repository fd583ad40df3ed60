"""Fixtures of the Dagster-layer tests: a webhook that records what it is sent, a files scenario as the default one."""

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, build_run_status_sensor_context

from mmm_assets.core.config import load_config
from mmm_assets.core.config.paths import DEFAULT_CONFIG
from mmm_assets.core.synthetic.generator import generate, landing_export
from mmm_assets_tests.core.stores.test_alerts import Webhook


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def evaluate_sensor(sensor, run_id: str, event_type: DagsterEventType):
    """Evaluate a run-status sensor for one finished run, as the daemon would."""
    instance = DagsterInstance.get()
    (entry,) = instance.all_logs(run_id, of_type=event_type)
    context = build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=instance.get_run_by_id(run_id),
        dagster_event=entry.dagster_event,
    )
    return sensor(context)


def read_alerts(path: Path) -> list[dict]:
    """The alerts logged to ``path`` (a scenario's paths.alerts_log), oldest first."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def landing(write_config, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A files scenario as the default scenario (via MMM_CONFIG): its config path and its empty landing folder."""
    path = write_config(
        {"scenario": "landing", "data": {"source": "files", "files": {
            "landing_dir": str(tmp_path / "landing"),
            "columns": {"date": "Week Start", "target": "Revenue (EUR)",
                        "channels": {"adwords": "Google Ads", "facebook": "Facebook", "linkedin": "LinkedIn"}},
        }}}
    )
    monkeypatch.setenv("MMM_CONFIG", str(path))
    folder = tmp_path / "landing"
    folder.mkdir()
    return path, folder


def landing_frame(config: Path) -> pd.DataFrame:
    frame, _ = generate(load_config(DEFAULT_CONFIG).data.synthetic)
    return landing_export(frame, load_config(config).data.files.columns)

