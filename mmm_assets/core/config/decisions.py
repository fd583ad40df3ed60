"""The ``decisions`` section: budget optimisation settings."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from mmm_assets.core.config.base import _Strict


class BudgetSettings(_Strict):
    """What to optimise: horizon, total budget, bounds per channel, utility and the budget scenarios."""

    horizon_weeks: int = Field(default=4, ge=1, le=52, description="Weeks to plan, starting after the data.")
    total_budget: float | None = Field(
        default=None, gt=0, description="Total over the horizon; null = what was spent over the last horizon."
    )
    bounds: Literal["relative", "absolute"] = "relative"
    relative_bound: float = Field(
        default=0.5, gt=0, le=10, description="Each channel may move by this fraction of its current spend."
    )
    absolute_bounds: dict[str, tuple[float, float]] | None = Field(
        default=None, description="(low, high) per channel, totals over the horizon; needs bounds: absolute."
    )
    utility: Literal["mean", "var", "cvar"] = "mean"
    risk_level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of var / cvar.")
    scenario_levels: list[float] = Field(
        default=[0.5, 1.0, 1.5], min_length=1, description="Multiples of the base budget for the scenarios."
    )
    total_tolerance: float = Field(
        default=0.001, gt=0, le=0.1, description="Allowed relative gap between the plan's total and the budget."
    )

    @field_validator("absolute_bounds")
    @classmethod
    def _ordered(cls, value: dict[str, tuple[float, float]] | None) -> dict[str, tuple[float, float]] | None:
        for channel, (low, high) in (value or {}).items():
            if low < 0:
                raise ValueError(f"{channel}: low bound {low:g} is negative; spend cannot be below 0")
            if low > high:
                raise ValueError(f"{channel}: low bound {low:g} is above high bound {high:g}; give (low, high)")
        return value

    @field_validator("scenario_levels")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        bad = [level for level in value if not level > 0]
        if bad:
            raise ValueError(f"scenario levels must be > 0 (multiples of the base budget), got {bad}")
        return value

    @model_validator(mode="after")
    def _bounds_given(self) -> BudgetSettings:
        if self.bounds == "absolute" and self.absolute_bounds is None:
            raise ValueError(
                "bounds is 'absolute' but absolute_bounds is missing: give (low, high) per channel, "
                "as totals over the horizon"
            )
        if self.bounds == "relative" and self.absolute_bounds is not None:
            raise ValueError("absolute_bounds is given but bounds is 'relative'; set bounds: absolute to use them")
        return self


class DecisionsConfig(_Strict):
    """What the decision assets compute: the budget plan, the response-curve grid, the recommendation band."""

    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    response_curve_points: int = Field(default=41, ge=5, le=401, description="Grid points per response curve.")
    response_curve_max_multiple: float = Field(
        default=2.0, ge=2.0, le=10.0, description="Grid end, as a multiple of the channel's largest weekly spend."
    )
    hold_band_pct: float = Field(
        default=5.0, ge=0, le=100, description="A proposed change within ±this % of current spend is a HOLD."
    )
