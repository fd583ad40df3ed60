"""Business plausibility of the champion's decisions: non-blocking (WARN) checks beside the decision assets they
read, `channel_roas` and `channel_contributions` (core.evaluation.plausibility). A failure leaves the run green and
raises an alert (`nonblocking_check_alert_sensor`) naming the channel, the value and what to check."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue, asset_check, multi_asset_check

from mmm_assets.core.evaluation.plausibility import (
    BASELINE_CHECK,
    CHANNEL_SHARE_CHECK,
    MEDIA_SHARE_CHECK,
    SHARE_CHECKS,
    Finding,
)
from mmm_assets.defs.decisions import channel_contributions, channel_roas
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

SHARE_DESCRIPTIONS = {
    BASELINE_CHECK: "The baseline (intercept, controls, trend, seasonality, events) over the fitted weeks is not "
    "negative: media do not explain more than the whole KPI (WARN).",
    CHANNEL_SHARE_CHECK: "No channel explains more of the KPI than validation.plausibility.max_channel_share (WARN).",
    MEDIA_SHARE_CHECK: "Media together explain at most validation.plausibility.max_media_share of the KPI (WARN).",
}


def _result(finding: Finding) -> AssetCheckResult:
    """A finding as a WARN check result: value and threshold (which the alert shows), the channels flagged, and
    what to check."""
    return AssetCheckResult(
        check_name=finding.check,
        passed=finding.passed,
        severity=AssetCheckSeverity.WARN,
        description=finding.message,
        metadata={
            "value": MetadataValue.float(float(f"{finding.value:.4g}")),
            "threshold": MetadataValue.float(float(finding.threshold)),
            "flagged": ", ".join(finding.flagged) or "none",
            "note": finding.message,
        },
    )


@asset_check(
    asset=channel_roas,
    blocking=False,
    partitions_def=MARKETS,
    description="Every channel's mean ROAS within [validation.plausibility.roas_min, roas_max] (in money; for "
    "conversions times kpi.value_per_unit): outside it, spend units, a missing control or a prior is wrong (WARN).",
)
def roas_plausible(scenario: ScenarioResource, channel_roas: pd.DataFrame) -> AssetCheckResult:
    """Each channel's mean ROAS against the plausible range (core.evaluation.plausibility)."""
    from mmm_assets.core.evaluation.plausibility import roas_finding

    cfg = scenario.load()
    return _result(roas_finding(channel_roas, cfg.validation.plausibility, cfg.kpi))


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset=channel_contributions, blocking=False, description=SHARE_DESCRIPTIONS[name],
                       partitions_def=MARKETS)
        for name in SHARE_CHECKS
    ],
)
def contribution_shares_plausible(scenario: ScenarioResource, channel_contributions: pd.DataFrame):
    """The baseline's, the largest channel's and media's shares of the KPI against their bounds."""
    from mmm_assets.core.decisions.contributions import BASELINE
    from mmm_assets.core.evaluation.plausibility import share_findings

    cfg = scenario.load()
    for finding in share_findings(channel_contributions, cfg.channels, BASELINE, cfg.validation.plausibility):
        yield _result(finding)
