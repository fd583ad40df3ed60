"""The channel-measurement picture: each channel's ROAS before the data (its prior's 94 % range) and after (its
posterior's 94 % HDI), so the channels the data measured stand out from those still at their prior."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mmm_assets.core.evaluation.measurement import MEASURED  # noqa: E402
from mmm_assets.core.presentation.plots import DPI  # noqa: E402

PRIOR_COLOUR, MEASURED_COLOUR, AT_PRIOR_COLOUR = "#bbbbbb", "#2a9d8f", "#e76f51"


def measurement_plot(table: pd.DataFrame, title: str) -> bytes:
    """PNG: per channel (largest spend at the top) a grey bar for the prior ROAS range and a coloured one for the
    posterior HDI (green: measured, orange: still at its prior), each with its mean."""
    rows = table.sort_values("spend_share", ascending=True, na_position="first").reset_index(drop=True)
    n = len(rows)
    fig, ax = plt.subplots(figsize=(8.0, max(2.5, 0.42 * n + 1.2)))
    y = np.arange(n)
    ax.hlines(y + 0.15, rows["prior_low"], rows["prior_high"], color=PRIOR_COLOUR, lw=6, label="prior, 94 % range")
    ax.plot(rows["prior_mean"], y + 0.15, "|", color="#555555", ms=10)
    colours = [MEASURED_COLOUR if v == MEASURED else AT_PRIOR_COLOUR for v in rows["verdict"]]
    ax.hlines(y - 0.15, rows["hdi_low"], rows["hdi_high"], color=colours, lw=6)
    ax.scatter(rows["posterior_mean"], y - 0.15, color="black", s=14, zorder=3)
    labels = [c if np.isnan(s) else f"{c} ({s:.0%} of spend)" for c, s in zip(rows["channel"], rows["spend_share"],
                                                                            strict=True)]
    ax.set_yticks(y, labels, fontsize=9 if n <= 16 else 7)
    ax.set_xlabel("ROAS over the fitted weeks")
    ax.plot([], [], color=MEASURED_COLOUR, lw=6, label="posterior 94 % HDI: measured")
    ax.plot([], [], color=AT_PRIOR_COLOUR, lw=6, label="posterior 94 % HDI: still at its prior")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
