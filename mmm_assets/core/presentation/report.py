"""The Monday-morning report: one self-contained HTML page, the same plots as PNG files, the tables as CSV and JSON.

Everything for one run is written into a temporary folder next to the target and renamed into place at the end,
so a reader never sees half a report and a failed run never touches an earlier one.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.decisions.budget import BudgetResult
from mmm_assets.core.decisions.kpi import KpiTerms, value_of
from mmm_assets.core.formatting import cell, number

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } .wide { overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4rem 0 1rem; }
.summary { background: #f6fbf6; border-left: 4px solid #2a9d4a; padding: 0.6rem 1rem; }
.fail { color: #b00020; font-weight: bold; } .pass { color: #2a7d3a; }
"""


@dataclass
class Section:
    """A titled part of the report: paragraphs, plots (name -> PNG), tables shown on the page (name -> frame), and
    tables only exported as CSV/JSON (long weekly tables nobody reads on a page)."""

    title: str
    text: list[str] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    exports: dict[str, pd.DataFrame] = field(default_factory=dict)


def executive_summary(
    budget: BudgetResult, recommendations: pd.DataFrame, kpi: KpiConfig | None = None
) -> list[str]:
    """Plain sentences a marketing lead reads first. Amounts are shown by magnitude (``formatting.number``); the
    response is named after the KPI (``kpi``, revenue when None), and conversions of known value get their value."""
    terms = KpiTerms.of(kpi)
    best, now, uplift = budget.optimized_response, budget.current_response, budget.uplift
    lines = [
        f"Plan for {budget.horizon_weeks} weeks from {budget.start_date:%Y-%m-%d}: total budget "
        f"{number(budget.total_budget)}. Expected incremental {terms.label} {number(best.mean)} "
        f"(94 % HDI {number(best.hdi_low)}–{number(best.hdi_high)}) with the optimised allocation, against "
        f"{number(now.mean)} with the current one: {budget.uplift_pct:+.1f} % (uplift {number(uplift.mean)}, 94 % HDI "
        f"{number(uplift.hdi_low)}–{number(uplift.hdi_high)}).",
    ]
    if terms.conversions and (worth := value_of(best, terms)) is not None:
        gained = value_of(uplift, terms)
        lines[0] += (
            f" Worth {number(worth.mean)} (94 % HDI {number(worth.hdi_low)}–{number(worth.hdi_high)}) at "
            f"{number(terms.value_per_unit)} per conversion, uplift worth {number(gained.mean)}; maximising "
            "conversions at a constant value per conversion maximises their value too."
        )
    elif terms.conversions:
        lines[0] += (" No value per conversion is set (kpi.value_per_unit), so the plan maximises conversions and "
                     "no breakeven is known.")
    for row in recommendations.itertuples(index=False):
        lines.append(f"{row.channel}: {row.action} — {row.reason}")
    if budget.fallback_used:
        lines.append(f"Note: the optimiser needed a fallback ({budget.method}): {budget.fallback_reason}")
    return lines


def _cell(value: object) -> str:
    if isinstance(value, float):
        return cell(value)
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    return str(value)


def _table_html(frame: pd.DataFrame) -> str:
    """An HTML table with numbers right-aligned and formatted for reading; wide tables scroll in their box."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{_cell(v)}</td>' if is_num else f"<td>{html.escape(_cell(v))}</td>"
            for v, is_num in zip(values, numeric, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in section.text]
    for name, png in section.plots.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
    parts += [_table_html(frame) for frame in section.tables.values()]
    if section.exports:
        names = ", ".join(f"{name}.csv / {name}.json" for name in section.exports)
        parts.append(f'<p class="meta">Full tables next to this page: {html.escape(names)}</p>')
    return "\n".join(parts)


def render_html(title: str, subtitle: str, summary: list[str], sections: list[Section]) -> str:
    """The report's HTML page: title, summary lines and the sections' tables and plots."""
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(subtitle)}</p>']
    if summary:
        body.append('<div class="summary">' + "".join(f"<p>{html.escape(s)}</p>" for s in summary) + "</div>")
    body += [_section_html(s) for s in sections]
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(target: Path, title: str, subtitle: str, summary: list[str], sections: list[Section]) -> Path:
    """Write ``target``/index.html, one PNG per plot and CSV + JSON per table, atomically; returns ``target``."""
    if target.exists():
        raise FileExistsError(f"{target} already exists; reports are never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (staging / "index.html").write_text(render_html(title, subtitle, summary, sections), encoding="utf-8")
        for section in sections:
            for name, png in section.plots.items():
                (staging / f"{name}.png").write_bytes(png)
            for name, frame in {**section.tables, **section.exports}.items():
                frame.to_csv(staging / f"{name}.csv", index=False)
                frame.to_json(staging / f"{name}.json", orient="records", date_format="iso", indent=1)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
