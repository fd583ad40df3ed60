"""Ingest: weekly marketing spend (synthetic with ground truth, or a landing file) and the true parameters."""


import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from mmm_assets.core.data.features import SOURCE_ATTR
from mmm_assets.core.data.inputs import read_market_file
from mmm_assets.core.synthetic.generator import GroundTruth, generate, synthetic_spend
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import INGEST_GROUP, OWNERS
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource


@asset(group_name=INGEST_GROUP, kinds={"python", "pandas"}, owners=OWNERS, partitions_def=MARKETS)
def marketing_spend(context: AssetExecutionContext, scenario: ScenarioResource) -> pd.DataFrame:
    """Weekly spend per channel, controls and the target (KPI) of one market, under the pipeline's column names.

    From the synthetic generator (known ground truth) or from the newest CSV/Parquet file in the landing folder,
    mapped from the team's own column names by the scenario configuration.
    """
    cfg = scenario.load()
    frame = synthetic_spend(cfg) if cfg.data.source == "synthetic" else read_market_file(cfg)
    context.log.info(f"read {len(frame)} rows from {frame.attrs[SOURCE_ATTR]}")
    context.add_output_metadata(
        {
            "source": frame.attrs[SOURCE_ATTR],
            "market": cfg.market,
            "dagster/row_count": len(frame),
            "date_range": md.date_range(frame),
            "channels": ", ".join(cfg.channels),
            "preview": md.preview(frame),
        }
    )
    return frame


@asset(group_name=INGEST_GROUP, kinds={"python", "duckdb"}, owners=OWNERS, partitions_def=MARKETS)
def ground_truth(context: AssetExecutionContext, scenario: ScenarioResource) -> GroundTruth | None:
    """The true parameters behind synthetic data (β, saturation λ, adstock α per channel); None for real data."""
    cfg = scenario.load()
    if cfg.data.source != "synthetic":
        context.add_output_metadata({"available": False, "reason": "real data (files source) has no ground truth"})
        return None
    assert cfg.data.synthetic is not None
    _, truth = generate(cfg.data.synthetic, cfg.model.calendar)
    table = truth.parameters.reset_index()
    scenario.store("ground_truth", table)
    context.add_output_metadata(
        {
            "available": True,
            "parameters": md.table_md(table),
            "intercept": truth.intercept,
            "outcome_scale": truth.outcome_scale,
            "noise_sigma": truth.noise_sigma,
            "duckdb_table": MetadataValue.text("ground_truth"),
        }
    )
    return truth
