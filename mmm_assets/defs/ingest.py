"""Ingest: weekly marketing spend (synthetic with ground truth, or a landing file) and the true parameters."""


import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from mmm_assets.core.data.ingest import read_landing_file, resolve_landing_file
from mmm_assets.core.synthetic.generator import GroundTruth, generate
from mmm_assets.defs import metadata as md
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

OWNERS = ["team:marketing-science"]
#: The frame attribute that carries where the data came from (used in validation messages).
SOURCE_ATTR = "source"


@asset(group_name="ingest", kinds={"python", "pandas"}, owners=OWNERS, partitions_def=MARKETS)
def marketing_spend(context: AssetExecutionContext, scenario: ScenarioResource) -> pd.DataFrame:
    """Weekly spend per channel, controls and the target (KPI) of one market, under the pipeline's column names.

    From the synthetic generator (known ground truth) or from the newest CSV/Parquet file in the landing folder,
    mapped from the team's own column names by the scenario configuration.
    """
    cfg = scenario.load()
    if cfg.data.source == "synthetic":
        assert cfg.data.synthetic is not None
        frame, _ = generate(cfg.data.synthetic, cfg.model.calendar)
        source = f"synthetic generator (scenario {cfg.scenario}, market {cfg.market}, seed {cfg.data.synthetic.seed})"
    else:
        assert cfg.data.files is not None
        path = resolve_landing_file(cfg.data.files)
        context.log.info(f"reading landing file {path}")
        frame = read_landing_file(path, cfg.data.files.columns, cfg.market if cfg.data.files.market_column else None)
        source = str(path)
    frame.attrs[SOURCE_ATTR] = source
    context.add_output_metadata(
        {
            "source": source,
            "market": cfg.market,
            "dagster/row_count": len(frame),
            "date_range": md.date_range(frame),
            "channels": ", ".join(cfg.channels),
            "preview": md.preview(frame),
        }
    )
    return frame


@asset(group_name="ingest", kinds={"python", "duckdb"}, owners=OWNERS, partitions_def=MARKETS)
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
