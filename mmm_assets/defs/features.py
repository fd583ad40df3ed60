"""Features: the validated weekly feature table in DuckDB, and data-quality and identification checks on what was
stored."""


import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset_check,
)

from mmm_assets.core.config import DATE_COLUMN, MARKET_COLUMN, SCENARIO_COLUMN, TARGET_COLUMN
from mmm_assets.core.data.features import SOURCE_ATTR
from mmm_assets.core.data.inputs import weekly_features
from mmm_assets.core.evaluation import adequacy
from mmm_assets.core.presentation.adequacy_plot import correlation_heatmap
from mmm_assets.core.stores.duckdb_store import content_hash, quote_ident
from mmm_assets.defs import metadata as md
from mmm_assets.defs.constants import FEATURES_GROUP, OWNERS
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource

TABLE = "mmm_features"
#: The identification checks' findings, one row per check and channel (or pair), per scenario and market.
ADEQUACY_TABLE = "data_adequacy"
#: Rows of a check's values shown in its metadata (the DuckDB table has them all).
SHOWN_ROWS = 10


@asset(group_name=FEATURES_GROUP, kinds={"duckdb"}, owners=OWNERS, partitions_def=MARKETS)
def mmm_features(
    context: AssetExecutionContext, scenario: ScenarioResource, marketing_spend: pd.DataFrame
) -> MaterializeResult:
    """One row per market and week: the target, spend per channel and controls, in DuckDB table `mmm_features`.

    Validated before anything is written (weekly and contiguous, no duplicates, no missing or non-finite values,
    no negative spend, enough weeks); the market's rows are replaced in one transaction, so a rejected file leaves
    the previous table exactly as it was.
    """
    cfg = scenario.load()
    features = weekly_features(cfg, marketing_spend)
    version = content_hash(features)
    scenario.store(TABLE, features)
    context.log.info(
        f"wrote {len(features)} weeks of market {cfg.market} to {cfg.paths.duckdb}:{TABLE} (data version {version})"
    )
    return MaterializeResult(
        data_version=DataVersion(version),
        metadata={
            "dagster/row_count": len(features),
            "dagster/column_schema": md.schema(features).value,
            "date_range": md.date_range(features),
            "data_version": version,
            "source": marketing_spend.attrs.get(SOURCE_ATTR, "marketing_spend"),
            "database": MetadataValue.path(str(cfg.paths.duckdb)),
            "preview": md.preview(features),
        },
    )


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            "enough_weeks", asset=mmm_features, blocking=True, description="At least min_weeks rows.",
            partitions_def=MARKETS,
        ),
        AssetCheckSpec(
            "weekly_contiguous", asset=mmm_features, blocking=True,
            description="Dates are unique and exactly 7 days apart.", partitions_def=MARKETS,
        ),
        AssetCheckSpec(
            "complete_non_negative", asset=mmm_features, blocking=True,
            description="No missing values anywhere and no negative spend.", partitions_def=MARKETS,
        ),
    ],
)
def mmm_features_quality(context: AssetCheckExecutionContext, scenario: ScenarioResource):
    """Data-quality checks run against the stored table (what the model will read), not the in-memory frame:
    the rows of the run's scenario and market, and the columns that market uses."""
    cfg = scenario.load()
    columns = (DATE_COLUMN, TARGET_COLUMN, *cfg.channels, *cfg.controls)
    key = {"scenario": cfg.scenario, "market": cfg.market}
    with scenario.duckdb(cfg) as conn:
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE market_rows AS SELECT * FROM {quote_ident(TABLE)} "
            f"WHERE {quote_ident(SCENARIO_COLUMN)} = $scenario AND {quote_ident(MARKET_COLUMN)} = $market", key
        )
        rows = conn.execute("SELECT count(*) FROM market_rows").fetchone()[0]
        bad_steps = conn.execute(
            "SELECT count(*) FROM (SELECT date - lag(date) OVER (ORDER BY date) AS step "
            "FROM market_rows) WHERE step IS NOT NULL AND step <> INTERVAL 7 DAY"
        ).fetchone()[0]
        nulls = conn.execute(
            "SELECT " + " + ".join(f"count(*) - count({quote_ident(c)})" for c in columns) + " FROM market_rows"
        ).fetchone()[0]
        negatives = conn.execute(
            "SELECT count(*) FROM market_rows WHERE " + " OR ".join(f"{quote_ident(c)} < 0" for c in cfg.channels)
        ).fetchone()[0]
    error = AssetCheckSeverity.ERROR
    yield AssetCheckResult(
        check_name="enough_weeks", passed=rows >= cfg.validation.min_weeks, severity=error,
        metadata={"value": rows, "threshold": cfg.validation.min_weeks},
    )
    yield AssetCheckResult(
        check_name="weekly_contiguous", passed=bad_steps == 0, severity=error,
        metadata={"value": bad_steps, "threshold": 0, "meaning": "consecutive rows not exactly 7 days apart"},
    )
    yield AssetCheckResult(
        check_name="complete_non_negative", passed=nulls == 0 and negatives == 0, severity=error,
        metadata={"missing_values": nulls, "negative_spend_rows": negatives, "threshold": 0},
    )


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset=mmm_features, blocking=True, description=description, partitions_def=MARKETS)
        for name, description in adequacy.CHECKS.items()
    ],
)
def mmm_features_adequacy(context: AssetCheckExecutionContext, scenario: ScenarioResource):
    """Identification before fitting (core.evaluation.adequacy): can the stored weekly data tell the channels apart
    and measure each? WARN names the channels and what would help; ERROR (the run stops before the fit) only where no
    fit could be trusted. Every finding goes to DuckDB table `data_adequacy`."""
    cfg = scenario.load()
    features = scenario.read(TABLE, [DATE_COLUMN, TARGET_COLUMN, *cfg.channels, *cfg.controls])
    table = adequacy.adequacy_table(cfg, features)
    scenario.store(ADEQUACY_TABLE, table)
    summary = adequacy.identification_summary(table)
    if summary:
        context.log.warning(summary)
    heatmap = correlation_heatmap(
        adequacy.spend_correlations(features, cfg.channels), cfg.validation.adequacy.max_abs_correlation
    )
    for check in adequacy.CHECKS:
        extra = {"heatmap": md.image(heatmap, "spend correlation heat map")} if check == adequacy.CORRELATION else {}
        yield _adequacy_result(check, table[table["check"] == check], summary, extra)


def _adequacy_result(check: str, rows: pd.DataFrame, summary: str, extra: dict) -> AssetCheckResult:
    """One identification check's result: failed when any of its rows failed, ERROR when one of those is an ERROR;
    value and threshold of its worst row (the rows come worst first)."""
    failed = rows[~rows["passed"]]
    severity = AssetCheckSeverity.ERROR if (failed["severity"] == adequacy.ERROR).any() else AssetCheckSeverity.WARN
    metadata: dict = {**extra}
    if len(rows):
        worst = rows.iloc[0]
        metadata |= {"value": MetadataValue.float(float(worst["value"])),
                     "threshold": MetadataValue.float(float(worst["threshold"])),
                     "values": md.table_md(rows[["subject", "value", "threshold", "severity"]].head(SHOWN_ROWS))}
    if len(failed):
        metadata |= {"findings": MetadataValue.md("\n".join(f"- {m}" for m in failed["message"])),
                     "summary": MetadataValue.md(summary)}
    description = (f"{len(failed)} finding(s): {'; '.join(failed['subject'])}" if len(failed)
                   else rows["message"].iloc[0] if len(rows) else "nothing to compare")
    return AssetCheckResult(
        check_name=check, passed=failed.empty, severity=severity, description=description, metadata=metadata
    )
