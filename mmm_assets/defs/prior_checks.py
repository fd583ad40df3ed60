"""Prior checks of the model under validation, for `mmm_validation` (model.py): the prior predictive against the KPI,
the prior-to-posterior table and which channels' ROAS the data measured, in its metadata and DuckDB; the result of
the blocking `prior_predictive_scale` check, which sits with the quality gates on `mmm_validation` and reads only its
report; and the WARN check `channels_measured`, which names the channels whose ROAS is still their prior's."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from mmm_assets.core.records import PriorChecks, ValidationReport
from mmm_assets.defs import metadata as md
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

PRIOR_POSTERIOR_TABLE = "prior_posterior"
MEASUREMENT_TABLE = "channel_measurement"
PRIOR_SCALE_DESCRIPTION = (
    "The prior predictive's typical weekly KPI within validation.plausibility.prior_predictive_max_orders orders of "
    "magnitude of the observed KPI's: priors stated in the KPI's units (a fixed target scale in other units fails)."
)
NOT_APPLICABLE = "not applicable: a market's view of a pooled model (its priors are the pooled model's hierarchy)"
UNMEASURED = "not measured: a pooled model fitted before its prior draws were kept with it"


def prior_reports(scenario: ScenarioResource, cfg, checks: PriorChecks | None,
                  measurement: pd.DataFrame | None) -> dict:
    """What the model believed before the data: the prior predictive against the KPI (plot), per parameter how far
    the data moved it (DuckDB `prior_posterior`, and which parameters the data informed) and per channel whether the
    data measured its ROAS (DuckDB `channel_measurement`, a table and a picture)."""
    from mmm_assets.core.evaluation.measurement import measurement_message
    from mmm_assets.core.evaluation.prior_checks import informed
    from mmm_assets.core.presentation.measurement_plot import measurement_plot
    from mmm_assets.core.presentation.plots import prior_predictive_plot

    meta = {"prior_checks": NOT_APPLICABLE}
    if checks is not None:
        scenario.store(PRIOR_POSTERIOR_TABLE, checks.prior_posterior)
        by_data, by_prior = informed(checks.prior_posterior)
        title = f"{cfg.scenario}/{cfg.market}: prior predictive vs actual ({checks.orders_apart:.2g} orders apart)"
        meta = {
            "prior_predictive": checks.message,
            "prior_predictive_plot": md.image(prior_predictive_plot(checks.band, title), "prior predictive vs actual"),
            "prior_posterior": md.table_md(checks.prior_posterior),
            "informed_by_the_data": ", ".join(by_data) or "none",
            "prior_dominated": ", ".join(by_prior) or "none",
        }
    if measurement is not None:
        scenario.store(MEASUREMENT_TABLE, measurement)
        plot = measurement_plot(measurement, f"{cfg.scenario}/{cfg.market}: ROAS before and after the data")
        meta |= {"channel_measurement": md.table_md(measurement),
                 "channel_measurement_plot": md.image(plot, "ROAS: prior vs posterior"),
                 "channels_measured": measurement_message(measurement)}
    return meta


def prior_scale_result(checks: PriorChecks | None, decision: str) -> AssetCheckResult:
    """The blocking check's result: the prior predictive's distance to the KPI (orders of magnitude) vs the bound."""
    if checks is None:
        return AssetCheckResult(check_name=PriorChecks.CHECK, passed=True,
                                metadata={"note": NOT_APPLICABLE, "registry": decision})
    return AssetCheckResult(
        check_name=PriorChecks.CHECK,
        passed=checks.passed,
        severity=AssetCheckSeverity.ERROR,
        description=checks.message,
        metadata={
            "value": MetadataValue.float(float(f"{checks.orders_apart:.4g}")),
            "threshold": MetadataValue.float(checks.max_orders),
            "prior_level": MetadataValue.float(float(f"{checks.prior_level:.4g}")),
            "observed_level": MetadataValue.float(float(f"{checks.observed_level:.4g}")),
            "note": checks.message,
            "registry": decision,
        },
    )


@asset_check(
    name=PriorChecks.MEASURED_CHECK,
    asset="mmm_validation",
    blocking=False,
    partitions_def=MARKETS,
    description="Every channel's ROAS was measured by the data (its posterior at most half as variable as its "
    "prior's; ROI priors and lift tests count as data): a channel still at its prior gets its ROAS, contribution and "
    "budget share from the priors' assumptions (WARN, with the channels named and what would measure them).",
)
def channels_measured(mmm_validation: ValidationReport) -> AssetCheckResult:
    """The channels whose ROAS the data left at its prior (core.evaluation.measurement)."""
    from mmm_assets.core.evaluation.measurement import AT_PRIOR, measurement_message, measurement_metrics

    table = mmm_validation.measurement
    if table is None:
        return AssetCheckResult(check_name=PriorChecks.MEASURED_CHECK, passed=True, metadata={"note": UNMEASURED})
    metrics = measurement_metrics(table)
    message = measurement_message(table)
    return AssetCheckResult(
        check_name=PriorChecks.MEASURED_CHECK,
        passed=bool(metrics["channels_at_prior"] == 0),
        severity=AssetCheckSeverity.WARN,
        description=message,
        metadata={
            "value": MetadataValue.float(metrics["unmeasured_spend_share"]),
            "threshold": MetadataValue.float(0.0),
            "flagged": ", ".join(table.loc[table["verdict"] == AT_PRIOR, "channel"]) or "none",
            "channels_measured": MetadataValue.int(int(metrics["channels_measured"])),
            "note": message,
        },
    )
