"""Identification before fitting: can the weekly data tell the model's channels apart and measure each of them?

A model learns a channel's effect from how the KPI moves when that channel's spend moves and the others' do not.
Five checks on the feature table (the columns the model reads) say, before any sampling, where that information is
missing, naming the channels and what would supply it:

- ``spend_correlation``: |Pearson r| of every pair of channels' weekly spend. Channels bought together move
  together; the data then inform their sum, and the split between them leans on the priors.
- ``spend_vif``: each channel's variance inflation factor, 1 / (1 - R²) of its spend regressed on every other column
  the model reads (other channels, controls, events, the trend, the yearly Fourier terms). It catches what no pair
  shows: a channel that follows a mix of others, or the season.
- ``weeks_per_parameter``: training weeks (feature weeks minus ``validation.holdout_weeks``: the gated holdout refit
  sees the fewest) per free parameter of the model (:func:`mmm_assets.core.modelling.roles.parameter_counts`).
- ``spend_variation``: coefficient of variation (std / mean) of each channel's spend: a channel that hardly moves
  cannot be measured.
- ``zero_spend_weeks``: share of weeks a channel spends nothing; its effect and saturation rest on the others.

Each finding WARNs (the run goes on, an alert says what to look at). A finding is an ERROR, which stops the run, only
where no fit could be trusted: fewer training weeks than parameters, a channel whose spend never changes or is
always zero. Correlated channels only warn: a lift test or an ROI prior separates even identical spend patterns.
Bounds: ``validation.adequacy``; how the defaults were chosen: README, "Identification checks (before fitting)".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, TREND_TERM, AdequacyConfig, MMMConfig
from mmm_assets.core.modelling.roles import parameter_counts

CORRELATION = "spend_correlation"
VIF = "spend_vif"
WEEKS = "weeks_per_parameter"
VARIATION = "spend_variation"
ZEROS = "zero_spend_weeks"
#: The checks and what each one asks (the Dagster checks' descriptions).
CHECKS = {
    CORRELATION: "No two channels' weekly spend correlate beyond validation.adequacy.max_abs_correlation (WARN).",
    VIF: "No channel's spend is mostly explained by the model's other columns: VIF up to max_vif (WARN).",
    WEEKS: "Enough training weeks per free model parameter (WARN; ERROR below block_weeks_per_parameter).",
    VARIATION: "Every channel's spend varies by at least min_spend_cv of its mean (WARN; ERROR when constant).",
    ZEROS: "No channel spends nothing in more than max_zero_share of the weeks (WARN; ERROR when always zero).",
}
OK, WARN, ERROR = "OK", "WARN", "ERROR"
COLUMNS = ["check", "subject", "value", "threshold", "severity", "passed", "message"]
#: Checks whose larger values are worse (the others: smaller is worse); orders each check's rows worst first.
HIGHER_IS_WORSE = {CORRELATION: True, VIF: True, WEEKS: False, VARIATION: False, ZEROS: True}
#: Label of the yearly Fourier columns in the VIF's explanation.
SEASONALITY = "the yearly seasonality"
#: 1 - R² below this counts as perfectly explained (infinite VIF).
EXACT = 1e-12

PAIR_HELP = (
    "What would separate them: a lift test on one of the two (model.lift_tests), an ROI prior on one "
    "(model.roi_priors), weeks where one moves and the other does not, or grouping them into one channel."
)
CHANNEL_HELP = "a lift test or an ROI prior on it (model.lift_tests, model.roi_priors)"


def _row(check: str, subject: str, value: float, threshold: float, severity: str, message: str) -> dict:
    """One finding; ``severity`` OK means it passed."""
    return {"check": check, "subject": subject, "value": float(value), "threshold": float(threshold),
            "severity": severity, "passed": severity == OK, "message": message}


def _calibration_note(cfg: MMMConfig, channels: list[str]) -> str:
    """What the scenario already has that separates ``channels``: ROI priors on them, lift tests."""
    notes = []
    covered = [c for c in channels if c in cfg.model.roi_priors]
    if covered:
        notes.append(f"model.roi_priors covers {' and '.join(covered)}: that prior, not the data, sets the split.")
    if cfg.model.lift_tests is not None:
        covers = " or ".join(channels)
        notes.append(f"Lift tests are configured (model.lift_tests): they supply this if they cover {covers}.")
    return (" " + " ".join(notes)) if notes else ""


# -- correlation ---------------------------------------------------------------------------------------------------
def spend_correlations(features: pd.DataFrame, channels: list[str]) -> pd.DataFrame:
    """Pearson correlation of the channels' weekly spend, channel by channel (NaN for a channel that never moves)."""
    return features[channels].astype(float).corr()


def _correlation_rows(cfg: MMMConfig, features: pd.DataFrame) -> list[dict]:
    limit = cfg.validation.adequacy.max_abs_correlation
    matrix = spend_correlations(features, cfg.channels)
    rows = []
    for i, a in enumerate(cfg.channels):
        for b in cfg.channels[i + 1 :]:
            r = float(matrix.loc[a, b])
            if np.isnan(r):
                continue  # a channel that never moves: spend_variation reports it
            subject = f"{a} & {b}"
            if abs(r) <= limit:
                rows.append(_row(CORRELATION, subject, abs(r), limit, OK, f"{subject}: spend correlation {r:.2f}."))
                continue
            message = (
                f"{a} and {b}: weekly spend correlates at {r:.3g} (|r| above {limit:g}): the data inform their sum, "
                f"the split between them leans on the priors. {PAIR_HELP}{_calibration_note(cfg, [a, b])}"
            )
            rows.append(_row(CORRELATION, subject, abs(r), limit, WARN, message))
    return rows


# -- variance inflation --------------------------------------------------------------------------------------------
def model_columns(cfg: MMMConfig, features: pd.DataFrame) -> pd.DataFrame:
    """Every column the model regresses the KPI on, as numbers: channels, controls and events, the trend, the yearly
    Fourier terms (labelled :data:`SEASONALITY`); columns that never move are left out (they carry no information)."""
    frame = features.sort_values(DATE_COLUMN).reset_index(drop=True)
    columns = {name: frame[name].astype(float) for name in [*cfg.channels, *cfg.controls]}
    if cfg.model.trend:
        columns[TREND_TERM] = pd.Series(np.arange(len(frame), dtype=float))
    day = pd.to_datetime(frame[DATE_COLUMN]).dt.dayofyear.to_numpy()
    for k in range(1, (cfg.model.yearly_seasonality or 0) + 1):
        angle = 2 * np.pi * k * day / 365.25
        columns[f"{SEASONALITY} sin {k}"] = pd.Series(np.sin(angle))
        columns[f"{SEASONALITY} cos {k}"] = pd.Series(np.cos(angle))
    design = pd.DataFrame(columns).dropna()  # a missing value is the quality checks' finding, not this one's
    return design.loc[:, design.std() > 0]


def variance_inflation(design: pd.DataFrame, column: str) -> tuple[float, dict[str, float]]:
    """``column``'s VIF against the other columns of ``design``, and the share of its variance each other column
    explains (Pratt's decomposition of R²: standardised coefficient x correlation; the Fourier terms summed as one).
    """
    z = (design - design.mean()) / design.std()
    y, others = z[column].to_numpy(), z.drop(columns=column)
    if others.shape[1] == 0:
        return 1.0, {}
    coef, *_ = np.linalg.lstsq(others.to_numpy(), y, rcond=None)
    residual = y - others.to_numpy() @ coef
    unexplained = float(residual @ residual / (y @ y))
    vif = float("inf") if unexplained < EXACT else 1.0 / unexplained
    shares = coef * (others.to_numpy().T @ y) / (len(y) - 1)
    labels = [SEASONALITY if name.startswith(SEASONALITY) else name for name in others.columns]
    return vif, pd.Series(shares, index=labels).groupby(level=0).sum().to_dict()


def _either(options: list[str]) -> str:
    """'a or b', 'a, b, or c'."""
    return " or ".join(options) if len(options) < 3 else f"{', '.join(options[:-1])}, or {options[-1]}"


def _explaining(shares: dict[str, float]) -> list[str]:
    """The columns that explain a channel's spend: each at least 5 % of its variance and a fifth of the largest."""
    top = max(shares.values(), default=0.0)
    ordered = sorted(shares.items(), key=lambda kv: -kv[1])
    return [name for name, share in ordered if share >= max(0.05, 0.2 * top)][:3] or [ordered[0][0]]


def _vif_rows(cfg: MMMConfig, features: pd.DataFrame) -> list[dict]:
    limit = cfg.validation.adequacy.max_vif
    design = model_columns(cfg, features)
    rows = []
    for channel in [c for c in cfg.channels if c in design.columns]:
        vif, shares = variance_inflation(design, channel)
        if vif <= limit:
            rows.append(_row(VIF, channel, vif, limit, OK, f"{channel}: VIF {vif:.1f}."))
            continue
        names = _explaining(shares)
        partners = [name for name in names if name in cfg.channels]
        explained = 1.0 - 1.0 / vif
        share = "over 99%" if explained > 0.99 else f"{explained:.0%}"
        remedies = [CHANNEL_HELP, f"weeks where its spend moves out of step with {' and '.join(names)}"]
        remedies += [f"grouping it with {' and '.join(partners)} into one channel"] if partners else []
        message = (
            f"{channel}: {share} of its weekly spend variation is explained by the other columns the model reads, "
            f"mostly {' and '.join(names)} (VIF {vif:.1f}, above {limit:g}): its effect is hard to separate from "
            f"theirs. What would help: {_either(remedies)}.{_calibration_note(cfg, [channel])}"
        )
        rows.append(_row(VIF, channel, vif, limit, WARN, message))
    return rows


# -- weeks per parameter -------------------------------------------------------------------------------------------
def _parameter_breakdown(counts: dict[str, int], channels: int) -> str:
    parts = [f"{channels} channels x 3"] if channels else []
    parts += [f"{counts[k]} {label}" for k, label in (("seasonality", "seasonality"), ("terms", "term effects"),
                                                      ("term_carryover", "term carry-over rates")) if counts[k]]
    return ", ".join([*parts, "intercept", "noise"])


def _weeks_row(cfg: MMMConfig, features: pd.DataFrame) -> dict:
    limits = cfg.validation.adequacy
    counts = parameter_counts(cfg)
    parameters = sum(counts.values())
    holdout = cfg.validation.holdout_weeks
    weeks = max(len(features) - holdout, 0)
    ratio = weeks / parameters
    stated = (
        f"{weeks} training weeks ({len(features)} minus {holdout} held out) for {parameters} free parameters "
        f"({_parameter_breakdown(counts, len(cfg.channels))}): {ratio:.2f} weeks per parameter"
    )
    help_ = ("What would help: more weeks of history, fewer channels (group small or similar ones), a lower "
             "model.yearly_seasonality order, or ROI priors / lift tests that pin the channels down.")
    if ratio < limits.block_weeks_per_parameter:
        message = (f"{stated}, below {limits.block_weeks_per_parameter:g}: the data cannot determine this model, no "
                   f"fit of it can be trusted. {help_}")
        return _row(WEEKS, "model", ratio, limits.block_weeks_per_parameter, ERROR, message)
    if ratio < limits.min_weeks_per_parameter:
        message = (f"{stated}, below {limits.min_weeks_per_parameter:g}: a posterior this thin on data may have "
                   f"several modes or not converge, and the channels' effects lean on the priors. {help_}")
        return _row(WEEKS, "model", ratio, limits.min_weeks_per_parameter, WARN, message)
    return _row(WEEKS, "model", ratio, limits.min_weeks_per_parameter, OK, f"{stated}.")


# -- spend variation and zero weeks ------------------------------------------------------------------------------
def _variation_row(channel: str, spend: pd.Series, limits: AdequacyConfig) -> dict:
    spread, mean = float(spend.std()), float(spend.mean())
    if not spread > 0:
        message = (
            f"{channel}: spend is {mean:g} every week, it never changes: its effect cannot be told from the intercept "
            f"and no fit of it can be trusted. What would help: vary its spend, or leave it out of the channels."
        )
        return _row(VARIATION, channel, 0.0, 0.0, ERROR, message)
    cv = spread / mean
    if cv < limits.min_spend_cv:
        message = (
            f"{channel}: spend hardly moves (it varies {cv:.0%} around its mean, below {limits.min_spend_cv:.0%}): "
            f"the data say little about its effect. What would help: weeks of clearly higher or lower spend (e.g. "
            f"pausing or doubling it for a few weeks), {CHANNEL_HELP}."
        )
        return _row(VARIATION, channel, cv, limits.min_spend_cv, WARN, message)
    return _row(VARIATION, channel, cv, limits.min_spend_cv, OK, f"{channel}: spend varies {cv:.0%} around its mean.")


def _zero_row(channel: str, spend: pd.Series, limits: AdequacyConfig) -> dict:
    zero = float((spend == 0).mean()) if len(spend) else 0.0
    if len(spend) and zero == 1.0:
        message = (f"{channel}: spends nothing in any week: its effect cannot be measured and no fit of it can be "
                   "trusted. What would help: leave it out of the channels until it has spend.")
        return _row(ZEROS, channel, zero, 1.0, ERROR, message)
    if zero > limits.max_zero_share:
        active = int((spend != 0).sum())
        message = (
            f"{channel}: no spend in {zero:.0%} of the weeks (above {limits.max_zero_share:.0%}): its effect and "
            f"saturation rest on {active} weeks. What would help: more weeks with spend, {CHANNEL_HELP}, or grouping "
            "it with a similar channel."
        )
        return _row(ZEROS, channel, zero, limits.max_zero_share, WARN, message)
    return _row(ZEROS, channel, zero, limits.max_zero_share, OK, f"{channel}: no spend in {zero:.0%} of the weeks.")


# -- the table -----------------------------------------------------------------------------------------------------
def _worst_first(table: pd.DataFrame) -> pd.DataFrame:
    """Each check's rows, ERROR before WARN before OK, then the worst value first; checks in :data:`CHECKS` order."""
    rank = {ERROR: 0, WARN: 1, OK: 2}
    key = table.assign(
        _check=table["check"].map(list(CHECKS).index),
        _severity=table["severity"].map(rank),
        _value=np.where(table["check"].map(HIGHER_IS_WORSE).astype(bool), -table["value"], table["value"]),
    )
    ordered = key.sort_values(["_check", "_severity", "_value"], kind="stable")
    return ordered[COLUMNS].reset_index(drop=True)


def adequacy_table(cfg: MMMConfig, features: pd.DataFrame) -> pd.DataFrame:
    """Every identification check of the market's feature table, one row per channel, pair or model:
    ``check, subject, value, threshold, severity (OK | WARN | ERROR), passed, message``; each check's worst first."""
    limits = cfg.validation.adequacy
    features = features.sort_values(DATE_COLUMN).reset_index(drop=True)
    rows = [*_correlation_rows(cfg, features), *_vif_rows(cfg, features), _weeks_row(cfg, features)]
    rows += [_variation_row(c, features[c].astype(float), limits) for c in cfg.channels]
    rows += [_zero_row(c, features[c].astype(float), limits) for c in cfg.channels]
    return _worst_first(pd.DataFrame(rows, columns=COLUMNS))


def identification_summary(table: pd.DataFrame) -> str:
    """One paragraph from the table's failed rows: which channels the data cannot tell apart or measure, and what
    would separate them (for a failed fit's message); empty when every check passed."""
    failed = table[~table["passed"].astype(bool)]
    if failed.empty:
        return ""
    by = {check: failed[failed["check"] == check] for check in CHECKS}
    said = []
    if len(by[CORRELATION]):
        pairs = ", ".join(f"{s} ({v:.3g})" for s, v in zip(by[CORRELATION]["subject"], by[CORRELATION]["value"]))
        said.append(f"these channels' spend moves together (|correlation|): {pairs}")
    if len(by[VIF]):
        said.append("these channels' spend is mostly explained by the model's other columns (VIF): "
                    + ", ".join(f"{s} ({v:.1f})" for s, v in zip(by[VIF]["subject"], by[VIF]["value"])))
    if len(by[VARIATION]):
        said.append("spend hardly or never moves for " + ", ".join(by[VARIATION]["subject"]))
    if len(by[ZEROS]):
        said.append("spend is mostly zero for " + ", ".join(by[ZEROS]["subject"]))
    if len(by[WEEKS]):
        said.append(f"there are {by[WEEKS]['value'].iloc[0]:.2f} training weeks per model parameter")
    help_ = []
    if len(by[CORRELATION]) or len(by[VIF]):
        help_.append("a lift test or an ROI prior on one channel of each group, grouping them into one channel, or "
                     "weeks where their spend moves independently would separate them")
    if len(by[VARIATION]) or len(by[ZEROS]):
        help_.append("weeks of clearly different spend, or a lift test or ROI prior, would measure the flat or "
                     "mostly-off channels")
    if len(by[WEEKS]):
        help_.append("more weeks of history or fewer channels would give each parameter more data")
    return (f"Before fitting, the data showed that {'; '.join(said)}. The weekly data alone cannot tell these "
            f"effects apart or measure them: {'; '.join(help_)}.")
