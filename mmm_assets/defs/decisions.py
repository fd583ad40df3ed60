"""Decisions: what the marketing team reads. Everything here sits downstream of the blocking model gates."""


from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mmm_assets.core.records import FittedModel
from mmm_assets.core.storage import replace_table
from mmm_assets.defs import metadata as md
from mmm_assets.defs.ingest import OWNERS
from mmm_assets.defs.model import mmm_validation
from mmm_assets.defs.resources import ScenarioResource

CONTRIBUTIONS_TABLE = "channel_contributions"


@asset(group_name="decisions", kinds={"pymc", "duckdb"}, owners=OWNERS, deps=[mmm_validation])
def channel_contributions(
    context: AssetExecutionContext, scenario: ScenarioResource, mmm_posterior: FittedModel
) -> MaterializeResult:
    """Weekly contribution of every channel and of the baseline to the target, posterior mean and 94 % HDI.

    DuckDB table `channel_contributions` (long: date, component, mean, hdi_low, hdi_high). Channels plus baseline
    add up to the `predicted` component. Only computed from a model that passed every blocking gate.
    """
    from mmm_assets.core.contributions import (
        BASELINE,
        PREDICTED,
        weekly_contributions,
        wide_means,
    )
    from mmm_assets.core.model import load_model
    from mmm_assets.core.plots import contributions_plot

    cfg = scenario.load()
    long = weekly_contributions(load_model(mmm_posterior.path))
    with scenario.duckdb(cfg) as conn:
        replace_table(conn, CONTRIBUTIONS_TABLE, long)
    wide = wide_means(long)
    totals = wide[[*cfg.channels, BASELINE]].sum()
    share = (100 * totals / wide[PREDICTED].sum()).round(1)
    context.log.info("contribution shares (%): " + ", ".join(f"{k} {v}" for k, v in share.items()))
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(long),
            "share_of_predicted_pct": md.table_md(share.rename("share_pct").rename_axis("component").reset_index()),
            "plot": md.image(
                contributions_plot(wide, [BASELINE, *cfg.channels], f"{cfg.scenario}: weekly contributions"),
                "weekly contributions",
            ),
            "duckdb_table": MetadataValue.text(CONTRIBUTIONS_TABLE),
        }
    )
