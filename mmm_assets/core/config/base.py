"""The lowest layer of the configuration: its error type, the strict base model, the canonical column
names, the environment variables, the identifier rules every section uses, and merging and error formatting."""

from __future__ import annotations

import copy
import re
import unicodedata
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

#: Environment variables that override the configuration (documented in the README).
ENV_CONFIG = "MMM_CONFIG"
ENV_DUCKDB = "MMM_DUCKDB_PATH"

#: Canonical column names are used as SQL identifiers and MMM variable names, so they are kept to a safe alphabet.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Names the pipeline uses itself for the date and target columns of the feature table.
DATE_COLUMN = "date"
TARGET_COLUMN = "y"
#: The column that says which market a row belongs to (landing files with several markets, stored tables).
MARKET_COLUMN = "market"
#: The column that says which scenario a stored row belongs to: scenarios sharing a DuckDB file keep their own rows.
SCENARIO_COLUMN = "scenario"
RESERVED = {DATE_COLUMN, TARGET_COLUMN, MARKET_COLUMN, SCENARIO_COLUMN}
#: The one market of a scenario that lists none.
DEFAULT_MARKET = "national"


class ConfigError(ValueError):
    """A configuration file that cannot be used, with a message that says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalised_name(text: str, what: str = "name") -> str | None:
    """``text`` as an identifier: accents dropped, lower case, every run of other characters one '_', no '_' at
    either end, ``<what>_`` in front when it would start with a digit, at most 63 characters ("North East" ->
    "north_east", "Île-de-France" -> "ile_de_france", "2024" -> "market_2024"); None when nothing is left."""
    plain = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii").lower()
    name = re.sub(r"[^a-z0-9]+", "_", plain).strip("_")
    if not name:
        return None
    if not name[0].isalpha():
        name = f"{re.sub(r'[^a-z0-9]+', '_', what.lower()).strip('_') or 'x'}_{name}"
    return name[:63].rstrip("_")


def _check_identifier(name: str, what: str) -> str:
    if not IDENTIFIER.match(name):
        proposed = normalised_name(name, what)
        raise ValueError(
            f"{what} name {name!r} is not allowed: use lower-case letters, digits and '_', starting with a letter "
            f"(at most 63 characters){f', e.g. {proposed!r}' if proposed and proposed not in RESERVED else ''}"
        )
    if name in RESERVED:
        raise ValueError(f"{what} name {name!r} is reserved for the pipeline's own {name!r} column")
    return name


#: The sign an effect is constrained to: ``free`` lets the data decide.
Sign = Literal["positive", "negative", "free"]
#: Prefix of the indicator column of a calendar event in the feature frame (``event_<name>``).
EVENT_PREFIX = "event_"
#: Name of the linear-trend term (reserved when ``model.trend`` is on).
TREND_TERM = "trend"


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


def _format_errors(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see config/default.yaml for the keys)"
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def merged(base: dict, overrides: dict) -> dict:
    """``overrides`` laid over ``base``, nested mappings key by key; the result shares nothing with either input."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if nested else copy.deepcopy(value)
    return out
