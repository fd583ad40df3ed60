"""The pooled model's holdout refit as a step of its own, so that it can run beside the pooled fit.

A pooled model is validated on a refit without every market's last weeks; the refit is independent of the fit, and
much of either runs on one core (the mode search, the spreads' EM). As part of `mmm_validation` it could only start
after `mmm_posterior`'s fit, while the other market runs waited for the fit pool. `pooled_holdout` comes before
`mmm_posterior` in every market's run and outside the fit pool: the first run to reach it builds the refit, any
other leaves it to that run at once (and goes on to the fit), and `mmm_validation` waits for the file if it is still
being built. One refit per version of the data and settings, so at most one runs beside the pool's fit.
"""

from dagster import AssetExecutionContext, asset

from mmm_assets.defs.constants import MODEL_GROUP, OWNERS
from mmm_assets.defs.features import mmm_features
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.pooled import pooled_holdout_file
from mmm_assets.defs.resources import ScenarioResource


@asset(group_name=MODEL_GROUP, kinds={"pymc"}, owners=OWNERS, deps=[mmm_features], partitions_def=MARKETS)
def pooled_holdout(context: AssetExecutionContext, scenario: ScenarioResource) -> str | None:
    """A pooled scenario's holdout refit (every market's last `validation.holdout_weeks` weeks held out) and its
    forecasts, a parquet file shared by every market's `mmm_validation`: built by the first market's run to get
    here, beside that run's or another's pooled fit (see the module). Nothing to do for a market's own model, whose
    holdout `mmm_validation` takes from its fit. Returns the file's path (None when there is nothing to do)."""
    cfg = scenario.load()
    weeks = cfg.validation.holdout_weeks
    if not (cfg.pooled and weeks):
        context.log.info("not a pooled model with a holdout: mmm_validation takes the holdout from the market's fit")
        return None
    path = pooled_holdout_file(scenario, cfg, weeks, context.log.info, wait=False)
    context.add_output_metadata({"file": str(path), "ready": path.exists()})
    return str(path)
