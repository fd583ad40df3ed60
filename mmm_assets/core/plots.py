"""Plots people look at instead of reading tables: PNG bytes, plus a markdown embed for UIs without image types."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mmm_assets.core.config import DATE_COLUMN  # noqa: E402

DPI = 110


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inlined as a data URI (renders in Dagster's metadata panel)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


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
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    return _png(fig)


def recovery_plot(table: pd.DataFrame) -> bytes:
    """Posterior estimate with 94 % HDI against the true value, one panel per parameter."""
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
        ax.set_title(parameter)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    return _png(fig)


def contributions_plot(contributions: pd.DataFrame, components: list[str], title: str) -> bytes:
    """Stacked weekly contributions (posterior means) of the baseline and each channel."""
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.stackplot(contributions[DATE_COLUMN], *[contributions[c] for c in components], labels=components, alpha=0.85)
    ax.set_title(title)
    ax.set_ylabel("contribution to target")
    ax.legend(loc="upper left", fontsize=8, ncols=len(components))
    ax.grid(alpha=0.3)
    return _png(fig)
