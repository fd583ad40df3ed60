"""Prior checks of the model under validation, for `mmm_validation` (model.py): the prior predictive against the KPI
and the prior-to-posterior table in its metadata and DuckDB, and the result of the blocking `prior_predictive_scale`
check, which sits with the quality gates on `mmm_validation` and reads only its report."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from mmm_assets.core.records import PriorChecks
from mmm_assets.defs import metadata as md
from mmm_assets.defs.resources import ScenarioResource

PRIOR_POSTERIOR_TABLE = "prior_posterior"
PRIOR_SCALE_DESCRIPTION = (
    "The prior predictive's typical weekly KPI within validation.plausibility.prior_predictive_max_orders orders of "
    "magnitude of the observed KPI's: priors stated in the KPI's units (a fixed target scale in other units fails)."
)
NOT_APPLICABLE = "not applicable: a market's view of a pooled model (its priors are the pooled model's hierarchy)"


def prior_reports(scenario: ScenarioResource, cfg, checks: PriorChecks | None) -> dict:
    """What the model believed before the data: the prior predictive against the KPI (plot) and, per parameter, how
    far the data moved it (DuckDB `prior_posterior`, and which parameters the data informed)."""
    from mmm_assets.core.evaluation.prior_checks import informed
    from mmm_assets.core.presentation.plots import prior_predictive_plot

    if checks is None:
        return {"prior_checks": NOT_APPLICABLE}
    scenario.store(PRIOR_POSTERIOR_TABLE, checks.prior_posterior)
    by_data, by_prior = informed(checks.prior_posterior)
    title = f"{cfg.scenario}/{cfg.market}: prior predictive vs actual ({checks.orders_apart:.2g} orders apart)"
    return {
        "prior_predictive": checks.message,
        "prior_predictive_plot": md.image(prior_predictive_plot(checks.band, title), "prior predictive vs actual"),
        "prior_posterior": md.table_md(checks.prior_posterior),
        "informed_by_the_data": ", ".join(by_data) or "none",
        "prior_dominated": ", ".join(by_prior) or "none",
    }


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
