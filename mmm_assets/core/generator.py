"""Synthetic weekly spend and outcome with known ground truth.

The outcome follows the same transforms as the fitted model, so the model's scale-free parameters (saturation
``lam`` and adstock ``alpha``) can be compared with the truth directly::

    y_t = outcome_scale * (intercept + sum_c beta_c * logistic(adstock(spend_c / max(spend_c), alpha_c), lam_c) + e_t)
    logistic(x, lam) = (1 - exp(-lam x)) / (1 + exp(-lam x))
    adstock(x, alpha)_t = sum_{l < L} alpha^l x_{t-l} / sum_{l < L} alpha^l        (normalised geometric)
    e_t ~ Normal(0, noise_sigma)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmm_assets.core.config import (
    DATE_COLUMN,
    TARGET_COLUMN,
    ColumnMapping,
    SyntheticSource,
)

#: Weeks start on Mondays.
WEEK_FREQ = "W-MON"


def logistic_saturation(x: np.ndarray, lam: float) -> np.ndarray:
    """(1 - e^(-lam x)) / (1 + e^(-lam x)), the saturation PyMC-Marketing's ``LogisticSaturation`` uses."""
    return (1.0 - np.exp(-lam * x)) / (1.0 + np.exp(-lam * x))


def geometric_adstock(x: np.ndarray, alpha: float, l_max: int) -> np.ndarray:
    """Normalised geometric carry-over over ``l_max`` weeks; weeks before the first count as zero spend."""
    weights = alpha ** np.arange(l_max)
    weights = weights / weights.sum()
    return np.convolve(x, weights)[: len(x)]


@dataclass(frozen=True)
class GroundTruth:
    """True parameters of a synthetic scenario and the true weekly contribution of every channel."""

    parameters: pd.DataFrame  # one row per channel: beta, saturation_lam, adstock_alpha, spend_max
    intercept: float
    outcome_scale: float
    noise_sigma: float
    contributions: pd.DataFrame  # date + one column per channel, in outcome units

    def channel_response(self, channel: str, spend: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """True weekly contribution (outcome units) of a spend series, optionally after earlier weeks' spend."""
        p = self.parameters.loc[channel]
        l_max = int(p["adstock_l_max"])
        past = np.zeros(l_max - 1) if history is None else np.asarray(history, dtype=float)[-(l_max - 1) :]
        full = np.concatenate([past, np.asarray(spend, dtype=float)]) / p["spend_max"]
        effect = logistic_saturation(geometric_adstock(full, p["adstock_alpha"], l_max), p["saturation_lam"])
        return (self.outcome_scale * p["beta"] * effect)[len(past) :]


def _spend_signal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A spend pattern in [0, 1]: a few campaign cycles of random period plus week-to-week noise."""
    t = np.arange(n)
    signal = rng.normal(0.0, 0.6, n)
    for _ in range(3):
        period = rng.uniform(6, 60)
        signal += rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    signal -= signal.min()
    return signal / signal.max()


def generate(source: SyntheticSource) -> tuple[pd.DataFrame, GroundTruth]:
    """Weekly spend per channel and the outcome ``y``, plus the ground truth that produced them."""
    rng = np.random.default_rng(source.seed)
    dates = pd.date_range(source.start_date, source.end_date, freq=WEEK_FREQ)
    n = len(dates)
    frame = pd.DataFrame({DATE_COLUMN: dates})
    contributions = pd.DataFrame({DATE_COLUMN: dates})
    rows = []
    for name, channel in source.channels.items():
        spend = channel.spend_min + (channel.spend_max - channel.spend_min) * _spend_signal(rng, n)
        spend = np.round(spend, 2)
        frame[name] = spend
        rows.append(
            {
                "channel": name,
                "beta": channel.beta,
                "saturation_lam": channel.saturation_lam,
                "adstock_alpha": channel.adstock_alpha,
                "adstock_l_max": source.adstock_l_max,
                "spend_max": float(spend.max()),
            }
        )
    parameters = pd.DataFrame(rows).set_index("channel")
    truth = GroundTruth(
        parameters=parameters,
        intercept=source.intercept,
        outcome_scale=source.outcome_scale,
        noise_sigma=source.noise_sigma,
        contributions=contributions,
    )
    for name in source.channels:
        contributions[name] = truth.channel_response(name, frame[name].to_numpy())
    noise = rng.normal(0.0, source.noise_sigma, n)
    baseline = source.outcome_scale * (source.intercept + noise)
    frame[TARGET_COLUMN] = baseline + contributions[list(source.channels)].sum(axis=1).to_numpy()
    return frame, truth


def landing_export(frame: pd.DataFrame, columns: ColumnMapping) -> pd.DataFrame:
    """The generated frame under a landing file's own column names (the inverse of the column mapping)."""
    rename = {DATE_COLUMN: columns.date, TARGET_COLUMN: columns.target, **{c: s for c, s in columns.channels.items()}}
    missing = sorted(set(columns.channels) - set(frame.columns))
    if missing or columns.controls:
        raise ValueError(
            f"the synthetic scenario cannot fill {missing or sorted(columns.controls)}: map exactly its channels"
        )
    return frame.rename(columns=rename)[list(rename.values())]
