"""The champion: the registry's model every decision uses, moved only by a fit whose gates all passed.

`mmm_champion` sits downstream of `mmm_validation`, whose quality gates are blocking checks: when any gate fails,
Dagster skips this asset (and every decision behind it), so the registry's `champion` alias stays where it was.
(The failed version is tagged a rejected challenger by `mmm_validation`, where the verdict is computed.)
"""

from dataclasses import replace

from dagster import AssetExecutionContext, MetadataValue, asset

from mmm_assets.core.records import Champion, FittedModel, ValidationReport
from mmm_assets.defs.constants import MODEL_GROUP, OWNERS
from mmm_assets.defs.partitions import MARKETS
from mmm_assets.defs.resources import ScenarioResource


@asset(group_name=MODEL_GROUP, kinds={"mlflow"}, owners=OWNERS, partitions_def=MARKETS)
def mmm_champion(
    context: AssetExecutionContext,
    scenario: ScenarioResource,
    mmm_posterior: FittedModel,
    mmm_validation: ValidationReport,
) -> Champion:
    """The fitted version promoted to the registry's `champion` (every gate passed), with its posterior file and
    which channels' ROAS its data measured (its validation's `channel_measurement`).

    The decision assets take this value as their input: the registry is read once per run, here. The version is an
    MLflow model: `mlflow.pyfunc.load_model("models:/<model>@champion").predict(weekly_spend)` gives the KPI.
    """
    from mmm_assets.core.stores import tracking

    cfg = scenario.load()
    crowned = tracking.crown(tracking.client_for(cfg), cfg, mmm_posterior.model_version, mmm_validation.failed_gates())
    champion = replace(crowned, measurement=mmm_validation.measurement)
    context.log.info(f"model {champion.model_name} v{champion.version} is the champion")
    context.add_output_metadata(
        {
            "model_version": f"{champion.model_name} v{champion.version} (champion)",
            "model_uri": f"models:/{champion.model_name}@{tracking.CHAMPION}",
            "source": champion.source,
            "data_version": champion.data_version,
            "model_file": MetadataValue.path(champion.path),
        }
    )
    return champion
