"""Typed scenario configuration, loaded from one YAML file per scenario: one module per YAML section, and loading.

Every knob of the pipeline lives here: where the data comes from, how its columns map to the model's names, the
model and sampler settings, the validation gates and the paths of the outputs. Nothing else in the project holds a
magic constant. Errors name the file, the offending key and what was expected. The public names are re-exported
here (an explicit list), so ``from mmm_assets.core.config import load_config, MMMConfig`` keeps working.
"""

from mmm_assets.core.config.base import (
    DATE_COLUMN,
    DEFAULT_MARKET,
    ENV_CONFIG,
    ENV_DUCKDB,
    EVENT_PREFIX,
    IDENTIFIER,
    MARKET_COLUMN,
    RESERVED,
    SCENARIO_COLUMN,
    TARGET_COLUMN,
    TREND_TERM,
    ConfigError,
    Name,
    Sign,
    merged,
    normalised_name,
)
from mmm_assets.core.config.data import (
    DEFAULT_MAX_ABS_VALUE,
    DEFAULT_MAX_FILE_MB,
    ColumnMapping,
    DataConfig,
    FilesSource,
    SyntheticChannel,
    SyntheticCompetitor,
    SyntheticControl,
    SyntheticSeasonality,
    SyntheticSource,
)
from mmm_assets.core.config.decisions import (
    BudgetSettings,
    DecisionsConfig,
)
from mmm_assets.core.config.kpi import KpiConfig
from mmm_assets.core.config.loading import (
    MAX_YAML_DEPTH,
    PROJECT_MARKERS,
    load_config,
    parse_config,
    project_root_for,
)
from mmm_assets.core.config.media import (
    ADSTOCK_PARAMETERS,
    SATURATION_CEILING,
    SATURATION_PARAMETERS,
    AdstockSettings,
    SaturationSettings,
)
from mmm_assets.core.config.model import (
    BetaPrior,
    CalendarEvent,
    LiftTestsConfig,
    MediaPrior,
    ModelConfig,
    RoiPrior,
    SamplerConfig,
    ScalingConfig,
    TermSettings,
)
from mmm_assets.core.config.operations import (
    MarketsConfig,
    OperationsConfig,
    PathsConfig,
)
from mmm_assets.core.config.scenario import (
    MMMConfig,
)
from mmm_assets.core.config.validation import (
    PROFILE_THRESHOLDS,
    STABILITY_ROAS_CHANGE_PCT,
    STABILITY_SHARE_CHANGE_PP,
    AdequacyConfig,
    CrossValidationConfig,
    PlausibilityConfig,
    StabilityConfig,
    Thresholds,
    ValidationConfig,
)

__all__ = [
    "AdequacyConfig",
    "KpiConfig",
    "MediaPrior",
    "ADSTOCK_PARAMETERS",
    "SATURATION_CEILING",
    "SATURATION_PARAMETERS",
    "AdstockSettings",
    "SaturationSettings",
    "PROFILE_THRESHOLDS",
    "PlausibilityConfig",
    "BetaPrior",
    "BudgetSettings",
    "CalendarEvent",
    "ColumnMapping",
    "ConfigError",
    "CrossValidationConfig",
    "DATE_COLUMN",
    "DEFAULT_MARKET",
    "DEFAULT_MAX_ABS_VALUE",
    "DEFAULT_MAX_FILE_MB",
    "DataConfig",
    "DecisionsConfig",
    "ENV_CONFIG",
    "ENV_DUCKDB",
    "EVENT_PREFIX",
    "FilesSource",
    "IDENTIFIER",
    "LiftTestsConfig",
    "MARKET_COLUMN",
    "MAX_YAML_DEPTH",
    "MMMConfig",
    "MarketsConfig",
    "ModelConfig",
    "Name",
    "OperationsConfig",
    "PROJECT_MARKERS",
    "PathsConfig",
    "RESERVED",
    "SCENARIO_COLUMN",
    "RoiPrior",
    "STABILITY_ROAS_CHANGE_PCT",
    "STABILITY_SHARE_CHANGE_PP",
    "SamplerConfig",
    "ScalingConfig",
    "Sign",
    "StabilityConfig",
    "SyntheticChannel",
    "SyntheticCompetitor",
    "SyntheticControl",
    "SyntheticSeasonality",
    "SyntheticSource",
    "TARGET_COLUMN",
    "TREND_TERM",
    "TermSettings",
    "Thresholds",
    "ValidationConfig",
    "load_config",
    "merged",
    "normalised_name",
    "parse_config",
    "project_root_for",
]
