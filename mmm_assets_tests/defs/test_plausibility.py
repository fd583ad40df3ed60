"""The plausibility checks wired to their assets: a green run whose decisions are implausible fails the WARN checks
and the non-blocking alert sensor raises one alert per failed check (stand-in decision tables, no MCMC)."""

import pandas as pd
from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance, asset, materialize

from mmm_assets.core.config import DEFAULT_MARKET, load_config
from mmm_assets.defs.alerts import nonblocking_check_alert_sensor
from mmm_assets.defs.partitions import MARKETS, register_markets
from mmm_assets.defs.plausibility import contribution_shares_plausible, roas_plausible
from mmm_assets.defs.resources import ScenarioResource
from mmm_assets_tests.defs.conftest import evaluate_sensor, read_alerts


@asset(key="channel_roas", partitions_def=MARKETS)
def implausible_roas() -> pd.DataFrame:
    """channel_roas as a spend-units mistake on one channel would leave it."""
    return pd.DataFrame({"channel": ["adwords", "facebook", "linkedin"], "roas_mean": [3.0, 54.0, 1.5]})


@asset(key="channel_contributions", partitions_def=MARKETS)
def media_beyond_the_kpi() -> pd.DataFrame:
    """channel_contributions whose channels explain more than the whole KPI (the baseline below zero)."""
    totals = {"adwords": 70.0, "facebook": 30.0, "linkedin": 10.0, "baseline": -10.0}
    rows = [{"date": pd.Timestamp("2024-01-01"), "component": c, "mean": v, "hdi_low": v, "hdi_high": v}
            for c, v in {**totals, "predicted": sum(totals.values())}.items()]
    return pd.DataFrame(rows)


def test_implausible_decisions_fail_warn_checks_and_alert_without_failing_the_run(write_config, monkeypatch):
    path = write_config()
    monkeypatch.setenv("MMM_CONFIG", str(path))
    instance = DagsterInstance.get()
    register_markets(instance, [DEFAULT_MARKET])
    result = materialize(
        [implausible_roas, media_beyond_the_kpi, roas_plausible, contribution_shares_plausible],
        instance=instance, resources={"scenario": ScenarioResource(config_path=str(path))},
        partition_key=DEFAULT_MARKET,
    )
    assert result.success  # WARN checks: the run stays green
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"roas_plausible", "baseline_share_positive", "channel_share_plausible",
                                "media_share_plausible"}
    failed = {name for name, e in evaluations.items() if not e.passed}
    assert failed == set(evaluations)  # adwords 70 % of the KPI, media 110 %, baseline -10 %
    assert all(e.severity == AssetCheckSeverity.WARN and not e.blocking for e in evaluations.values())

    evaluate_sensor(nonblocking_check_alert_sensor, result.run_id, DagsterEventType.RUN_SUCCESS)
    alerts = {a["check"]: a for a in read_alerts(load_config(path).paths.alerts_log)}
    assert set(alerts) == failed
    roas = alerts["roas_plausible"]
    assert (roas["kind"], roas["asset"], roas["severity"]) == ("check_failed", "channel_roas", "WARN")
    assert (roas["value"], roas["threshold"]) == (54.0, 20.0)
    assert "facebook's mean ROAS 54 is above 20" in roas["message"] and "spend" in roas["message"]
    assert alerts["channel_share_plausible"]["asset"] == "channel_contributions"
    assert "adwords 70.0 % of the KPI" in alerts["channel_share_plausible"]["message"]
    assert alerts["baseline_share_positive"]["value"] < 0 and "missing control" in alerts["baseline_share_positive"]["message"]
