"""The identification checks' picture: the channels' weekly spend correlations as a heat map."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mmm_assets.core.presentation.plots import DPI  # noqa: E402

#: Up to this many channels every cell is labelled with its value; beyond it the labels would overlap.
LABELLED_CHANNELS = 16
#: Largest side of the figure, inches: 30 channels stay readable and the embedded PNG small.
MAX_SIDE = 11.0


def correlation_heatmap(matrix: pd.DataFrame, threshold: float) -> bytes:
    """PNG of a channel-by-channel correlation matrix (red positive, blue negative), the pairs whose |r| exceeds
    ``threshold`` outlined: the pairs the weekly data cannot tell apart well."""
    names = [str(c) for c in matrix.columns]
    values = matrix.to_numpy(dtype=float)
    n = len(names)
    side = min(max(4.0, 0.55 * n + 2.5), MAX_SIDE)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1)
    size = 10 if n <= LABELLED_CHANNELS else 7
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=size)
    ax.set_yticks(range(n), names, fontsize=size)
    for i in range(n):
        for j in range(n):
            flagged = i != j and abs(values[i, j]) > threshold
            if flagged:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=2))
            if n <= LABELLED_CHANNELS and not np.isnan(values[i, j]):
                color = "white" if abs(values[i, j]) > 0.6 else "black"
                weight = "bold" if flagged else "normal"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8, color=color,
                        fontweight=weight)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="correlation of weekly spend")
    ax.set_title(f"Spend correlation between channels (outlined: |r| > {threshold:g})")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")  # long channel names stay inside the image
    plt.close(fig)
    return buffer.getvalue()
