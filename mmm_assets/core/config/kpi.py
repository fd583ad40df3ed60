"""The ``kpi`` section: what the target column measures, so returns are read in the right units."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmm_assets.core.config.base import _Strict


class KpiConfig(_Strict):
    """The target's kind. revenue: money, so ROAS is money back per unit of spend and breakeven is 1. conversions
    (sign-ups, sales, leads): counted units, so the model's returns are conversions per unit of spend; reports show
    the cost per acquisition (CPA) and marginal CPA, and breakeven is where a conversion costs what it is worth."""

    type: Literal["revenue", "conversions"] = Field(default="revenue", description="revenue | conversions.")
    name: str | None = Field(
        default=None, min_length=1, max_length=60, description="What the target is called in reports; null = type."
    )
    value_per_unit: float | None = Field(
        default=None,
        gt=0,
        description="conversions: money one conversion is worth (breakeven CPA, and budgets maximise value); null "
        "= CPA and marginal CPA are reported without a breakeven. revenue: must stay null (revenue is money).",
    )

    @model_validator(mode="after")
    def _value(self) -> KpiConfig:
        if self.type == "revenue" and self.value_per_unit is not None:
            raise ValueError("kpi.value_per_unit is for type: conversions; revenue is already money")
        return self

    @property
    def label(self) -> str:
        """The KPI's name in tables, plots and advice."""
        return self.name or self.type

    @property
    def money_per_unit(self) -> float | None:
        """Money one KPI unit is worth (:func:`money_per_unit`)."""
        return money_per_unit(self.type, self.value_per_unit)

    @property
    def breakeven_return(self) -> float | None:
        """KPI units per unit of spend at which spend pays for itself (:func:`breakeven_return`)."""
        return breakeven_return(self.type, self.value_per_unit)


def money_per_unit(kind: str, value_per_unit: float | None) -> float | None:
    """Money one unit of a KPI of this ``kind`` is worth: 1 for revenue, the value of a conversion for conversions,
    None when that value is not known."""
    return 1.0 if kind == "revenue" else value_per_unit


def breakeven_return(kind: str, value_per_unit: float | None) -> float | None:
    """KPI units per unit of spend at which spend pays for itself: 1 for revenue, 1 / the value of a conversion for
    conversions, None when that value is not known."""
    money = money_per_unit(kind, value_per_unit)
    return None if money is None else 1.0 / money
