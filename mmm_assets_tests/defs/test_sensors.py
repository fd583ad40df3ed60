"""Sensors: market partitions from the YAML, the landing folder's runs and rejections, dead runs."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    build_sensor_context,
    validate_run_config,
)

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.core.data import landing_folder
from mmm_assets.definitions import defs
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.sensors import landing_file_sensor, market_partitions_sensor
from mmm_assets_tests.defs.conftest import landing_frame, read_alerts


def test_partitions_sensor_adds_the_markets_of_the_yaml(write_config, monkeypatch):
    path = write_config({"markets": {"names": ["north"]}})
    monkeypatch.setenv("MMM_CONFIG", str(path))
    instance = DagsterInstance.get()

    def tick():
        result = market_partitions_sensor.evaluate_tick(build_sensor_context(instance=instance))
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    assert [list(r.partition_keys) for r in tick().dynamic_partitions_requests] == [["north"]]
    assert "every market of scenario" in tick().skip_message
    path.write_text(path.read_text().replace("names:\n  - north", "names:\n  - north\n  - south"))
    assert [list(r.partition_keys) for r in tick().dynamic_partitions_requests] == [["south"]]
    assert instance.get_dynamic_partitions(MARKETS.name) == ["north", "south"]



def test_sensors_are_registered_and_on_by_default():
    names = {"market_partitions_sensor", "landing_file_sensor", "run_failure_alert_sensor",
             "nonblocking_check_alert_sensor", "dead_run_sensor", "plan_file_sensor", "all_markets_sensor"}
    sensors: dict[str, SensorDefinition] = {s.name: s for s in defs.sensors}
    assert set(sensors) == names
    assert all(s.default_status == DefaultSensorStatus.RUNNING and s.description for s in sensors.values())
    assert sensors["landing_file_sensor"].minimum_interval_seconds == 60
    assert sensors["landing_file_sensor"].job_name == "weekly_refresh"
    assert sensors["plan_file_sensor"].job_name == "score_plans"



def test_the_dead_run_sensor_releases_a_run_whose_process_died():
    """Under `make dev` nothing else notices a run whose process was killed: the sensor fails it, frees its slot."""
    from mmm_assets.defs.model import FIT_POOL
    from mmm_assets.defs.recovery import WORKER_HOST_TAG, WORKER_PID_TAG, worker_tags
    from mmm_assets.defs.sensors import dead_run_sensor

    instance = DagsterInstance.get()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = DagsterRun(job_name="weekly_refresh", status=DagsterRunStatus.STARTED,
                     tags={WORKER_HOST_TAG: worker_tags()[WORKER_HOST_TAG], WORKER_PID_TAG: str(gone.pid)})
    instance.add_run(run)
    instance.event_log_storage.initialize_concurrency_limit_to_default(FIT_POOL)
    assert instance.event_log_storage.claim_concurrency_slot(FIT_POOL, run.run_id, "mmm_posterior").is_claimed

    result = dead_run_sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SkipReason) and f"released run {run.run_id}" in result.skip_message
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info(FIT_POOL).claimed_slots
    again = dead_run_sensor(build_sensor_context(instance=instance))
    assert again.skip_message.startswith("no run with a dead worker")



# --- landing folder ---------------------------------------------------------------------------------------------


def _tick(cursor: str | None):
    """One evaluation as the daemon does it (an instance ref, so partitions load from the instance with the sensor's
    own additions pending), then the partitions it asks for are added."""
    instance = DagsterInstance.get()
    context = SensorEvaluationContext(
        instance_ref=instance.get_ref(), instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
    )
    result = landing_file_sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()



def test_landing_sensor_launches_once_per_new_content(landing):
    config, folder = landing
    good = landing_frame(config)
    good.to_csv(folder / "spend.csv", index=False)
    (folder / "notes.txt").write_text("not a landing file")

    first = _tick(None)
    (request,) = first.run_requests
    sha = _sha(folder / "spend.csv")
    assert request.run_key == f"spend.csv:{sha[:16]}:{DEFAULT_MARKET}" and request.partition_key == DEFAULT_MARKET
    assert {"landing_file": "spend.csv", "sha256": sha}.items() <= request.tags.items()
    assert request.run_config == {
        "resources": {"scenario": {"config": {"config_path": str(config.resolve()), "landing_file": "spend.csv"}}}
    }
    validate_run_config(defs.resolve_job_def("weekly_refresh"), request.run_config)
    assert json.loads(first.cursor) == {"spend.csv": sha}

    unchanged = _tick(first.cursor)
    assert not unchanged.run_requests and "no new or changed file" in unchanged.skip_message

    good.iloc[:-1].to_csv(folder / "spend.csv", index=False)
    (changed,) = _tick(unchanged.cursor).run_requests
    assert changed.run_key == f"spend.csv:{_sha(folder / 'spend.csv')[:16]}:{DEFAULT_MARKET}" != request.run_key
    assert not read_alerts(load_config(config).paths.alerts_log)


def test_landing_sensor_alerts_once_for_a_rejected_file(landing, webhook, monkeypatch):
    config, folder = landing
    monkeypatch.setenv("MMM_ALERT_WEBHOOK_URL", webhook.url)
    good = landing_frame(config)
    pd.concat([good.iloc[:10], good.iloc[[9]], good.iloc[10:]]).to_csv(folder / "spend.csv", index=False)

    rejected = _tick(None)
    assert not rejected.run_requests and "rejected spend.csv" in rejected.skip_message
    assert json.loads(rejected.cursor) == {"spend.csv": _sha(folder / "spend.csv")}
    again = _tick(rejected.cursor)
    assert not again.run_requests

    (alert,) = read_alerts(load_config(config).paths.alerts_log)
    assert alert["kind"] == "landing_file_rejected" and alert["asset"] == "marketing_spend"
    assert "spend.csv" in alert["message"] and "duplicate dates: 2019-03-11" in alert["message"]
    (body,) = webhook.bodies
    assert "Landing file rejected" in body["text"]

    good.to_csv(folder / "spend.csv", index=False)  # the fixed file is launched
    assert len(_tick(again.cursor).run_requests) == 1


def test_landing_sensor_skips_what_it_cannot_read(landing, monkeypatch):
    config, folder = landing
    landing_frame(config).to_csv(folder / "spend.csv", index=False)

    def vanished(path: Path) -> str:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(landing_folder, "sha256", vanished)  # deleted between the listing and the read
        gone = _tick(None)
    assert not gone.run_requests and "spend.csv could not be read" in gone.skip_message
    assert json.loads(gone.cursor) == {}  # not recorded: looked at again next tick
    assert len(_tick(gone.cursor).run_requests) == 1

    folder.rename(folder.with_name("elsewhere"))
    missing = _tick(None)
    assert not missing.run_requests and "cannot list the landing folder" in missing.skip_message


def test_landing_sensor_skips_a_synthetic_scenario():
    result = _tick(None)
    assert not result.run_requests and "synthetic data" in result.skip_message

