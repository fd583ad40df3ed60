"""The ``decisions`` section: budget optimisation and the planner's goals and what-if plans."""

from __future__ import annotations

from pathlib import Path
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
    utility: Literal["mean", "var", "cvar", "sharpe"] = "mean"
    risk_level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of var / cvar.")
    scenario_levels: list[float] = Field(
        default=[0.5, 1.0, 1.5], min_length=1, description="Multiples of the base budget for the scenarios."
    )
    total_tolerance: float = Field(
        default=0.001, gt=0, le=0.1, description="Allowed relative gap between the plan's total and the budget."
    )
    scope: Literal["market", "all_markets"] = Field(
        default="market",
        description=(
            "market: each market plans its own budget; all_markets: also one total across every market's channels "
            "(asset all_markets_budget), from the markets' champions."
        ),
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
        if self.scope == "all_markets" and self.utility != "mean":
            raise ValueError(
                f"scope all_markets maximises the markets' summed expected response; utility {self.utility!r} of one "
                "market's response does not add up across markets: use utility: mean"
            )
        return self


GoalKind = Literal["target_roas", "target_mroas", "target_kpi", "same_response_least_spend"]
#: The goals whose target is a return (KPI units per unit of spend): null means the KPI's breakeven return.
RETURN_GOALS = ("target_roas", "target_mroas")


class Goal(_Strict):
    """One question the planner answers with a plan: a target return, marginal return or KPI, or today's response
    for less money."""

    kind: GoalKind
    value: float | None = Field(
        default=None, gt=0,
        description=(
            "target_roas / target_mroas: KPI units per unit of spend (null = the KPI's breakeven); target_kpi: "
            "incremental KPI over the horizon and its carry-over; none for same_response_least_spend."
        ),
    )
    name: str | None = Field(default=None, max_length=80, description="The plan's name; default kind and value.")

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Goal:
        if self.kind == "target_kpi" and self.value is None:
            raise ValueError("target_kpi needs value: the incremental KPI over the horizon to reach")
        if self.kind == "same_response_least_spend" and self.value is not None:
            raise ValueError("same_response_least_spend takes no value: its target is today's expected response")
        return self

    @property
    def label(self) -> str:
        """The plan's name: ``name`` when given, else the kind and its value."""
        if self.name:
            return self.name
        return self.kind if self.value is None else f"{self.kind} {self.value:g}"


class PlannerSettings(_Strict):
    """Goal-seeking plans and saved what-if plans, scored by the champion next to the optimised budget."""

    goals: list[Goal] = Field(
        default_factory=lambda: [Goal(kind="same_response_least_spend"), Goal(kind="target_mroas")],
        description="Each goal becomes a plan in goal_plans.",
    )
    plans_dir: Path | None = Field(
        default=None, description="Folder of what-if plan CSV files (one per named plan); null = none."
    )
    max_total_multiple: float = Field(
        default=3.0, gt=1, le=20,
        description="The largest total a goal search considers, as a multiple of the base budget.",
    )
    min_total_multiple: float = Field(
        default=0.05, gt=0, lt=1,
        description="The smallest total a goal search considers, as a multiple of the base budget.",
    )
    marginal_step: float = Field(
        default=0.05, gt=0, le=0.25,
        description="Relative step of the total over which a plan's marginal return is measured (central difference).",
    )

    @field_validator("goals")
    @classmethod
    def _unique_names(cls, value: list[Goal]) -> list[Goal]:
        names = [goal.label for goal in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"goal names must be unique; give each a name: {twice} appear more than once")
        return value


class DecisionsConfig(_Strict):
    """What the decision assets compute: the budget plan, the response-curve grid, the recommendation band."""

    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    response_curve_points: int = Field(default=41, ge=5, le=401, description="Grid points per response curve.")
    response_curve_max_multiple: float = Field(
        default=2.0, ge=2.0, le=10.0, description="Grid end, as a multiple of the channel's largest weekly spend."
    )
    hold_band_pct: float = Field(
        default=5.0, ge=0, le=100, description="A proposed change within ±this % of current spend is a HOLD."
    )
