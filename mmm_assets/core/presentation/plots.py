"""Plots people look at instead of reading tables: PNG bytes, plus a markdown embed for UIs without image types."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from mmm_assets.core.config import DATE_COLUMN  # noqa: E402
from mmm_assets.core.decisions.kpi import KpiTerms  # noqa: E402
from mmm_assets.core.formatting import number  # noqa: E402

DPI = 110
#: Plots kept per process (see ``_remembered``).
RENDERED_KEPT = 16
_RENDERED: dict[tuple, bytes] = {}


def _fingerprint(value: object) -> object:
    """A hashable stand-in for a plot argument: a data frame by its columns and a hash of its values and index."""
    if isinstance(value, pd.DataFrame):
        hashed = hashlib.sha256(pd.util.hash_pandas_object(value).to_numpy().tobytes()).hexdigest()
        return ("frame", tuple(map(str, value.columns)), tuple(map(str, value.dtypes)), hashed)
    if isinstance(value, list | tuple):
        return tuple(_fingerprint(v) for v in value)
    return value


def _remembered(render: Callable[..., bytes]) -> Callable[..., bytes]:
    """Renders a plot once per process for the same arguments: the report draws the plots the assets before it in
    the same run drew (one process per run), ~1 s of matplotlib otherwise."""

    @functools.wraps(render)
    def drawn(*args: object) -> bytes:
        key = (render.__name__, *(_fingerprint(a) for a in args))
        if key not in _RENDERED:
            while len(_RENDERED) >= RENDERED_KEPT:
                _RENDERED.pop(next(iter(_RENDERED)))
            _RENDERED[key] = render(*args)
        return _RENDERED[key]

    return drawn


def _compact(value: float, _position: object = None) -> str:
    """Tick labels like 250k or 1.2M instead of 250000 or an axis offset."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def _money_axes(ax: plt.Axes, x: bool = False, y: bool = True) -> None:
    if x:
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    if y:
        ax.yaxis.set_major_formatter(FuncFormatter(_compact))


def _png(fig: plt.Figure, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout(rect=rect)
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inlined as a data URI (renders in Dagster's metadata panel)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


@_remembered
def fit_plot(in_sample: pd.DataFrame, holdout: pd.DataFrame | None, title: str) -> bytes:
    """Actual vs posterior-predictive mean with its 94 % HDI band; the holdout forecast in its own colour."""
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(
        in_sample[DATE_COLUMN], in_sample["predicted_hdi_low"], in_sample["predicted_hdi_high"],
        color="tab:blue", alpha=0.25, label="fit, 94 % HDI",
    )
    ax.plot(in_sample[DATE_COLUMN], in_sample["predicted_mean"], color="tab:blue", lw=1.2, label="fit, mean")
    ax.plot(in_sample[DATE_COLUMN], in_sample["actual"], color="black", lw=0.9, label="actual")
    if holdout is not None and len(holdout):
        ax.fill_between(
            holdout[DATE_COLUMN], holdout["predicted_hdi_low"], holdout["predicted_hdi_high"],
            color="tab:orange", alpha=0.3, label="holdout forecast, 94 % HDI",
        )
        ax.plot(holdout[DATE_COLUMN], holdout["predicted_mean"], color="tab:orange", lw=1.5, label="holdout forecast")
        ax.axvline(holdout[DATE_COLUMN].iloc[0], color="grey", ls="--", lw=0.8)
    ax.set_title(title)
    ax.set_ylabel("target")
    _money_axes(ax)
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    return _png(fig)


@_remembered
def prior_predictive_plot(band: pd.DataFrame, title: str) -> bytes:
    """The prior predictive's weekly median and 94 % band against the actual KPI; on a symmetric log axis when they
    are an order of magnitude or more apart, so both stay visible."""
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(band[DATE_COLUMN], band["prior_low"], band["prior_high"], color="tab:purple", alpha=0.2,
                    label="prior predictive, 94 %")
    ax.plot(band[DATE_COLUMN], band["prior_median"], color="tab:purple", lw=1.2, label="prior predictive, median")
    ax.plot(band[DATE_COLUMN], band["actual"], color="black", lw=0.9, label="actual")
    actual, prior = band["actual"].abs().mean(), band["prior_median"].abs().mean()
    if actual > 0 and prior > 0 and not 0.1 <= prior / actual <= 10:
        ax.set_yscale("symlog", linthresh=min(actual, prior))  # linear within the smaller level, log beyond
    else:
        _money_axes(ax)
    ax.set_title(title)
    ax.set_ylabel("target")
    ax.legend(loc="best", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    return _png(fig)


#: Panel titles of the recovery rows that are not a model parameter (mmm_assets.core.evaluation.recovery).
RECOVERY_TITLES = {
    "response_curve": "weekly contribution at the largest weekly spend",
    "adstock_mean_lag": "mean carry-over lag (weeks)",
}


@_remembered
def recovery_plot(table: pd.DataFrame) -> bytes:
    """Posterior estimate with 94 % HDI against the true value, one panel per compared quantity."""
    parameters = list(dict.fromkeys(table["parameter"]))
    fig, axes = plt.subplots(1, len(parameters), figsize=(5 * len(parameters), 3.2), squeeze=False)
    for ax, parameter in zip(axes[0], parameters, strict=True):
        rows = table[table["parameter"] == parameter].reset_index(drop=True)
        y = range(len(rows))
        ax.errorbar(
            rows["estimate"], y,
            xerr=[rows["estimate"] - rows["hdi_low"], rows["hdi_high"] - rows["estimate"]],
            fmt="o", color="tab:blue", capsize=3, label="posterior mean, 94 % HDI",
        )
        ax.scatter(rows["true"], y, marker="x", color="tab:red", s=60, zorder=3, label="truth")
        ax.set_yticks(list(y), rows["channel"])
        ax.set_title(RECOVERY_TITLES.get(parameter, parameter), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    return _png(fig)


@_remembered
def contributions_plot(
    contributions: pd.DataFrame, components: list[str], title: str, terms: KpiTerms = KpiTerms()
) -> bytes:
    """Stacked weekly contributions (posterior means) of the baseline and each channel, in the KPI's units."""
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.stackplot(contributions[DATE_COLUMN], *[contributions[c] for c in components], labels=components, alpha=0.85)
    ax.set_title(title)
    ax.set_ylabel(f"contribution to {terms.label}")
    _money_axes(ax)
    ax.legend(loc="upper left", fontsize=8, ncols=len(components))
    ax.grid(alpha=0.3)
    return _png(fig)


def _interval_bars(
    ax: plt.Axes, table: pd.DataFrame, prefix: str, title: str, breakeven: float | None = 1.0,
    breakeven_label: str = "pays back (1.0)",
) -> None:
    """Horizontal posterior means with 94 % HDI whiskers per channel, and the payback line at ``breakeven`` (none
    when None). An interval without an upper bound (a CPA whose return can be 0) runs to the edge with an arrow."""
    y = list(range(len(table)))
    mean, low, high = (table[f"{prefix}_{s}"].astype(float) for s in ("mean", "hdi_low", "hdi_high"))
    finite = pd.concat([mean, low, high]).replace([float("inf"), float("-inf")], float("nan")).dropna()
    edge = 1.15 * float(finite.max()) if len(finite) else 1.0
    open_ended = high.isna() & low.notna()
    shown = mean.where(mean.notna(), low)
    ax.errorbar(shown, y, xerr=[shown - low, high.where(~open_ended, edge) - shown], fmt="o", color="tab:blue",
                capsize=4)
    ends = [i for i, o in zip(y, open_ended, strict=True) if o]
    if ends:
        ax.scatter([edge] * len(ends), ends, marker=">", color="tab:blue")
    for i, value in zip(y, mean, strict=True):
        if value == value:
            ax.annotate(number(value), (value, i), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    if breakeven is not None:
        ax.axvline(breakeven, color="tab:red", ls="--", lw=0.9, label=breakeven_label)
    ax.set_yticks(y, table["channel"])
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.set_title(title)
    ax.grid(alpha=0.3)


@_remembered
def roas_plot(roas: pd.DataFrame, terms: KpiTerms = KpiTerms()) -> bytes:
    """Average and marginal ROAS per channel with 94 % HDIs; for a conversions KPI (``terms``), the CPA and the
    marginal CPA instead, with the value of a conversion as the payback line when it is known."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.6 * len(roas) + 2.2), sharey=True)
    if terms.conversions:
        value = terms.breakeven_cost
        label = f"pays back (value of a conversion, {number(value)})" if value is not None else ""
        _interval_bars(axes[0], roas, "cpa", f"CPA over the fitted window ({terms.label})", value, label)
        _interval_bars(axes[1], roas, "mcpa", "marginal CPA at current spend", value, label)
    else:
        _interval_bars(axes[0], roas, "roas", "ROAS over the fitted window")
        _interval_bars(axes[1], roas, "mroas", "marginal ROAS at current spend")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", fontsize=8, ncols=2)
    return _png(fig, rect=(0, 0.07, 1, 1))


@_remembered
def response_curves_plot(curves: pd.DataFrame, terms: KpiTerms = KpiTerms()) -> bytes:
    """Expected weekly contribution (incremental KPI: revenue, conversions) against weekly spend per channel, with
    the current spend marked."""
    channels = list(dict.fromkeys(curves["channel"]))
    fig, axes = plt.subplots(1, len(channels), figsize=(4 * len(channels), 3.4), squeeze=False)
    for ax, channel in zip(axes[0], channels, strict=True):
        rows = curves[curves["channel"] == channel]
        ax.fill_between(rows["weekly_spend"], rows["contribution_hdi_low"], rows["contribution_hdi_high"],
                        color="tab:blue", alpha=0.25, label="94 % HDI")
        ax.plot(rows["weekly_spend"], rows["contribution_mean"], color="tab:blue", label="expected")
        current = rows[rows["is_current"]]
        ax.scatter(current["weekly_spend"], current["contribution_mean"], color="tab:red", zorder=3,
                   label="current spend")
        ax.set_title(channel)
        ax.set_xlabel("weekly spend")
        _money_axes(ax, x=True)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"weekly incremental {terms.label}")
    axes[0][0].legend(fontsize=8, loc="lower right")
    return _png(fig)


@_remembered
def allocation_plot(allocation: pd.DataFrame, title: str) -> bytes:
    """Current vs optimised spend per channel over the horizon, with each channel's allowed range."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = range(len(allocation))
    width = 0.38
    ax.bar([i - width / 2 for i in x], allocation["current_spend"], width, label="current", color="tab:grey")
    ax.bar([i + width / 2 for i in x], allocation["optimized_spend"], width, label="optimised", color="tab:green")
    ax.vlines([i + width / 2 for i in x], allocation["lower_bound"], allocation["upper_bound"], color="black",
              lw=1.2, label="allowed range")
    ax.set_xticks(list(x), allocation["channel"])
    ax.set_ylabel("spend over the horizon")
    _money_axes(ax)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


@_remembered
def scenarios_plot(levels: pd.DataFrame, terms: KpiTerms = KpiTerms()) -> bytes:
    """Expected incremental KPI against the total budget: the return curve of the whole budget; for conversions of
    known value, their value on a second axis."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.fill_between(levels["total_budget"], levels["expected_response_hdi_low"], levels["expected_response_hdi_high"],
                    color="tab:green", alpha=0.25, label="94 % HDI")
    ax.plot(levels["total_budget"], levels["expected_response_mean"], "o-", color="tab:green", label="expected")
    ax.margins(y=0.15)
    for row in levels.itertuples(index=False):
        ax.annotate(f"{row.level:g}x", (row.total_budget, row.expected_response_mean), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xlabel("total budget over the horizon")
    _money_axes(ax, x=True)
    ax.set_ylabel(f"incremental {terms.label}")
    if terms.conversions and terms.value_per_unit is not None:
        value = terms.value_per_unit
        right = ax.secondary_yaxis("right", functions=(lambda y: y * value, lambda v: v / value))
        right.set_ylabel(f"value ({number(value)} per conversion)")
        right.yaxis.set_major_formatter(FuncFormatter(_compact))
    ax.set_title("budget scenarios (optimised allocation at each level)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def cv_plot(
    forecasts: pd.DataFrame, folds: pd.DataFrame, history: pd.DataFrame | None = None,
    mape_max_pct: float | None = None,
) -> bytes:
    """Cross-validation: each fold's forecast (mean, 94 % HDI) against the actuals, and its errors per fold.

    ``forecasts`` and ``folds`` are :class:`mmm_assets.core.evaluation.cv.CVResult`'s tables; ``history`` (``date`` and
    ``actual``), when given, draws the whole actual series behind the forecasts; ``mape_max_pct`` the MAPE gate.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), gridspec_kw={"height_ratios": [3, 2]})
    actual = history if history is not None else forecasts.drop_duplicates(DATE_COLUMN).sort_values(DATE_COLUMN)
    top.plot(actual[DATE_COLUMN], actual["actual"], color="black", lw=0.9, label="actual")
    colours = plt.get_cmap("tab10")
    for i, (fold, rows) in enumerate(forecasts.groupby("fold", sort=True)):
        colour = colours(i % 10)
        top.fill_between(rows[DATE_COLUMN], rows["predicted_hdi_low"], rows["predicted_hdi_high"], color=colour,
                         alpha=0.3)
        top.plot(rows[DATE_COLUMN], rows["predicted_mean"], color=colour, lw=1.5, label=f"fold {fold} forecast")
        top.axvline(rows[DATE_COLUMN].iloc[0], color=colour, ls="--", lw=0.8)
    top.set_title("cross-validation: forecasts of unseen weeks (mean, 94 % HDI) from each fold's origin (dashed)")
    top.set_ylabel("target")
    _money_axes(top)
    top.legend(loc="upper left", fontsize=8, ncols=min(len(folds) + 1, 5))
    top.grid(alpha=0.3)
    x = range(len(folds))
    width = 0.38
    bottom.bar([i - width / 2 for i in x], folds["mape_pct"], width, color="tab:blue", label="MAPE (%)")
    bottom.bar([i + width / 2 for i in x], folds["crps_rel_pct"], width, color="tab:orange",
               label="CRPS (% of mean actual)")
    highest = float(max(folds["mape_pct"].max(), folds["crps_rel_pct"].max()))
    if mape_max_pct is not None and mape_max_pct <= 2 * highest:
        bottom.axhline(mape_max_pct, color="tab:red", ls="--", lw=0.9, label=f"MAPE gate ({mape_max_pct:g} %)")
    elif mape_max_pct is not None:  # far above the bars: say so instead of squashing them
        bottom.set_title(f"MAPE gate {mape_max_pct:g} % (above this scale)", fontsize=9)
    labels = [f"fold {r.fold}\n{r.train_weeks} wk train, {r.weeks} wk test" for r in folds.itertuples(index=False)]
    bottom.set_xticks(list(x), labels, fontsize=8)
    bottom.set_ylabel("% of actual")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3, axis="y")
    return _png(fig)


@_remembered
def comparison_plot(table: pd.DataFrame) -> bytes:
    """Each candidate specification's ELPD against the best passing one, ±2 SE of the difference; grey: failed a
    gate; the chosen one marked (the ``model_comparison`` table, mmm_assets.core.evaluation.comparison)."""
    rows = table.sort_values("elpd_loo").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.8 * len(rows) + 1.4))
    for i, row in rows.iterrows():
        colour = "tab:blue" if row["passed_gates"] else "tab:gray"
        ax.errorbar(row["elpd_diff"], i, xerr=2 * row["diff_se"], fmt="o", color=colour, capsize=4, markersize=7)
    ax.axvline(0.0, color="black", lw=0.8)
    labels = [
        f"{r.candidate}{'  (chosen)' if r.selected else ''}\n{r.adstock} + {r.saturation}"
        + ("" if r.passed_gates else ", failed gates")
        for r in rows.itertuples()
    ]
    ax.set_yticks(list(range(len(rows))), labels, fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("ELPD minus the best passing candidate's (PSIS-LOO; bars ±2 SE)")
    ax.set_title("Specifications compared: higher is better", fontsize=11)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


#: Marker colour of each plan source in the plans plot.
PLAN_COLOURS = {"current": "tab:grey", "optimized": "tab:green", "goal": "tab:purple", "what_if": "tab:orange"}


@_remembered
def plans_plot(table: pd.DataFrame, spend: pd.DataFrame, terms: KpiTerms = KpiTerms()) -> bytes:
    """Saved plans side by side: each plan's expected incremental KPI (94 % HDI) against its total spend, numbered,
    with lines of equal return through the origin for reference, and each plan's spend mix as stacked bars.

    ``table``: one row per plan with ``plan, source, total_spend, expected_response_mean/_hdi_low/_hdi_high``;
    ``spend``: one row per (plan, channel) with ``share_pct``.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.35 * len(table) + 3.4),
                                      gridspec_kw={"width_ratios": [3, 2]})
    numbered = table.reset_index(drop=True).assign(number=lambda t: t.index + 1)
    for source, rows in numbered.groupby("source", sort=False):
        mean, low, high = (rows[f"expected_response_{s}"].to_numpy(dtype=float) for s in ("mean", "hdi_low", "hdi_high"))
        left.errorbar(rows["total_spend"].to_numpy(dtype=float), mean, yerr=[mean - low, high - mean], fmt="o",
                      color=PLAN_COLOURS.get(str(source), "tab:blue"), capsize=3, label=str(source), alpha=0.8)
    for row in numbered.itertuples(index=False):
        odd = row.number % 2  # odd numbers right of their point, even ones left: plans of one total stay legible
        left.annotate(str(row.number), (row.total_spend, row.expected_response_mean), textcoords="offset points",
                      xytext=(5 if odd else -5, 3), ha="left" if odd else "right", fontsize=8)
    right_edge = float(numbered["total_spend"].max()) * 1.1
    top = float(numbered["expected_response_hdi_high"].max()) * 1.15
    for ratio in _reference_returns(numbered):
        end = min(right_edge, top / ratio)
        left.plot([0, end], [0, ratio * end], color="black", lw=0.6, ls=":", alpha=0.6)
        left.annotate(f"return {ratio:g}", (end, ratio * end), fontsize=7, ha="right", va="top", alpha=0.7)
    left.set_xlim(0, right_edge)
    left.set_ylim(0, top)
    left.set_xlabel("total spend")
    left.set_ylabel(f"incremental {terms.label}")
    _money_axes(left, x=True)
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)
    left.set_title("expected response of each plan (94 % HDI)")
    mix = spend.pivot(index="plan", columns="channel", values="share_pct").reindex(numbered["plan"])
    mix.index = [f"{n} {plan}" for n, plan in zip(numbered["number"], mix.index)]
    mix.iloc[::-1].plot.barh(stacked=True, ax=right, width=0.7, colormap="tab20", legend=False)
    right.set_xlabel("share of spend (%)")
    right.set_ylabel("")
    right.set_xlim(0, 100)
    right.set_title("spend mix")
    right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=min(len(mix.columns), 5))
    return _png(fig)


def _reference_returns(table: pd.DataFrame) -> list[float]:
    """Round returns (1, 2, 3, 5, 10, ...) within the plans' range of returns, widened by half, for reference lines."""
    returns = (table["expected_response_mean"] / table["total_spend"]).replace([float("inf")], float("nan")).dropna()
    returns = returns[returns > 0]
    if returns.empty:
        return []
    low, high = float(returns.min()) / 1.5, float(returns.max()) * 1.5
    return [r for r in (0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 50) if low <= r <= high]


@_remembered
def cross_market_plot(allocation: pd.DataFrame, markets: pd.DataFrame) -> bytes:
    """One budget across markets: per market, each channel's spend under the market's own plan and under the joint
    plan (with its allowed range), and each market's expected response under both (94 % HDI)."""
    names = list(dict.fromkeys(allocation["market"]))
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 3.8), squeeze=False)
    width = 0.38
    for ax, market in zip(axes[0], names):
        rows = allocation[allocation["market"] == market].reset_index(drop=True)
        x = range(len(rows))
        ax.bar([i - width / 2 for i in x], rows["separate_spend"], width, label="market's own plan", color="tab:grey")
        ax.bar([i + width / 2 for i in x], rows["joint_spend"], width, label="one budget", color="tab:green")
        ax.vlines([i + width / 2 for i in x], rows["lower_bound"], rows["upper_bound"], color="black", lw=1.2,
                  label="allowed range")
        ax.set_xticks(list(x), rows["channel"], rotation=30)
        ax.set_title(f"{market}: spend over the horizon")
        _money_axes(ax)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7)
    ax = axes[0][-1]
    y = range(len(markets))
    for offset, plan, colour in ((-0.15, "separate", "tab:grey"), (0.15, "joint", "tab:green")):
        mean, low, high = (markets[f"{plan}_response_{s}"].to_numpy(dtype=float) for s in ("mean", "hdi_low", "hdi_high"))
        ax.errorbar(mean, [i + offset for i in y], xerr=[mean - low, high - mean], fmt="o", color=colour, capsize=3)
    ax.set_yticks(list(y), markets["market"])
    ax.set_title("expected incremental KPI (94 % HDI)")
    _money_axes(ax, x=True, y=False)
    ax.grid(alpha=0.3)
    return _png(fig)


@_remembered
def rollup_plot(table: pd.DataFrame, terms: KpiTerms = KpiTerms()) -> bytes:
    """Every market and all markets together: each channel's return (for conversions, its CPA) with 94 % HDI, the
    markets side by side per channel, and each market's incremental contribution over all its channels."""
    from mmm_assets.core.decisions.rollup import ALL_CHANNELS_ROW, ALL_MARKETS_ROW

    prefix, title = ("cpa", f"CPA ({terms.label})") if terms.conversions else ("roas", "ROAS")
    markets = list(dict.fromkeys(table["market_name"]))
    channels = [c for c in dict.fromkeys(table["channel"]) if c != ALL_CHANNELS_ROW]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(channels) * len(markets) ** 0.5 + 2.6),
                             gridspec_kw={"width_ratios": [3, 2]})
    step = 0.8 / len(markets)
    colours = plt.get_cmap("tab10")
    for k, market in enumerate(markets):
        rows = table[(table["market_name"] == market) & (table["channel"] != ALL_CHANNELS_ROW)].set_index("channel")
        rows = rows.reindex(channels)
        y = [i - 0.4 + step * (k + 0.5) for i in range(len(channels))]
        mean, low, high = (rows[f"{prefix}_{s}"].to_numpy(dtype=float) for s in ("mean", "hdi_low", "hdi_high"))
        everywhere = market == ALL_MARKETS_ROW
        axes[0].errorbar(mean, y, xerr=[mean - low, high - mean], fmt="D" if everywhere else "o", capsize=3,
                         color="black" if everywhere else colours(k % 10), label=market, lw=2 if everywhere else 1)
    breakeven = terms.breakeven_cost if terms.conversions else terms.breakeven_return
    if breakeven is not None:
        axes[0].axvline(breakeven, color="tab:red", ls="--", lw=0.9, label="pays back")
    axes[0].set_yticks(range(len(channels)), channels)
    axes[0].invert_yaxis()
    axes[0].set_title(f"{title} over each market's fitted weeks (94 % HDI)")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    totals = table[table["channel"] == ALL_CHANNELS_ROW].reset_index(drop=True)
    mean, low, high = (totals[f"contribution_{s}"].to_numpy(dtype=float) for s in ("mean", "hdi_low", "hdi_high"))
    axes[1].barh(range(len(totals)), mean, color=["black" if m == ALL_MARKETS_ROW else "tab:blue"
                                                  for m in totals["market_name"]], alpha=0.7)
    axes[1].errorbar(mean, range(len(totals)), xerr=[mean - low, high - mean], fmt="none", color="black", capsize=3)
    axes[1].set_yticks(range(len(totals)), totals["market_name"])
    axes[1].invert_yaxis()
    axes[1].set_title("incremental KPI from all channels")
    _money_axes(axes[1], x=True, y=False)
    axes[1].grid(alpha=0.3, axis="x")
    return _png(fig)
