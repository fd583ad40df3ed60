"""The report writer and the plots, without a model: synthetic tables in, files and pictures out."""

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import KpiConfig
from mmm_assets.core.decisions.budget import BudgetResult, Interval
from mmm_assets.core.decisions.kpi import KpiTerms, with_costs
from mmm_assets.core.presentation import plots
from mmm_assets.core.presentation.report import Section, executive_summary, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _budget(fallback: bool = False) -> BudgetResult:
    allocation = pd.DataFrame(
        {"channel": ["tv", "search"], "current_spend": [100.0, 50.0], "optimized_spend": [80.0, 70.0],
         "lower_bound": [50.0, 25.0], "upper_bound": [150.0, 75.0], "change_pct": [-20.0, 40.0]}
    )
    return BudgetResult(
        start_date=pd.Timestamp("2024-01-01"), end_date=pd.Timestamp("2024-01-22"), horizon_weeks=4,
        total_budget=150.0, utility="mean", allocation=allocation, optimized_response=Interval(330, 320, 340),
        current_response=Interval(300, 290, 310), uplift=Interval(30, 25, 35), uplift_pct=10.0,
        method="SLSQP" if not fallback else "projection", fallback_used=fallback,
        fallback_reason="did not converge" if fallback else None, wall_seconds=1.0,
    )


def _recommendations() -> pd.DataFrame:
    return pd.DataFrame({"channel": ["tv", "search"], "action": ["REDUCE", "INCREASE"],
                         "reason": ["marginal ROAS below 1", "marginal ROAS above 1"]})


def test_executive_summary_reads_like_sentences():
    lines = executive_summary(_budget(), _recommendations())
    assert lines[0].startswith("Plan for 4 weeks from 2024-01-01: total budget 150.")
    assert "+10.0 %" in lines[0]
    assert lines[1:] == ["tv: REDUCE — marginal ROAS below 1", "search: INCREASE — marginal ROAS above 1"]
    assert "fallback" in executive_summary(_budget(fallback=True), _recommendations())[-1]


def test_report_is_self_contained_with_exports(tmp_path):
    table = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=2, freq="7D"), "value": [1.5, 2.5]})
    section = Section("Numbers", ["A <b>tag</b> is escaped."], {"chart": PNG + b"fake"}, {"numbers": table})
    folder = write_report(tmp_path / "reports" / "run1", "Title", "subtitle", ["summary line"], [section])
    page = (folder / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "A &lt;b&gt;tag&lt;/b&gt; is escaped." in page and "2024-01-08" in page
    assert (folder / "chart.png").read_bytes().startswith(PNG)
    assert pd.read_csv(folder / "numbers.csv")["value"].tolist() == [1.5, 2.5]
    assert pd.read_json(folder / "numbers.json")["value"].tolist() == [1.5, 2.5]
    with pytest.raises(FileExistsError):
        write_report(folder, "Title", "", [], [section])


def test_failed_report_leaves_nothing_behind(tmp_path):
    class Exploding(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise OSError("disk full")

    section = Section("Broken", tables={"t": Exploding({"a": [1]})})
    reports = tmp_path / "reports"
    with pytest.raises(OSError, match="disk full"):
        write_report(reports / "run", "Title", "", [], [section])
    assert list(reports.iterdir()) == []


def _weekly(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="7D")})


def test_every_plot_is_a_png():
    frame = _weekly().assign(actual=np.arange(10.0), predicted_mean=np.arange(10.0), predicted_hdi_low=0.0,
                             predicted_hdi_high=10.0)
    roas = pd.DataFrame({"channel": ["tv"], **{f"{p}_{s}": [1.0] for p in ("roas", "mroas")
                                               for s in ("mean", "hdi_low", "hdi_high")}})
    curves = pd.DataFrame({"channel": "tv", "weekly_spend": [0.0, 1.0, 2.0], "contribution_mean": [0, 1, 1.5],
                           "contribution_hdi_low": [0, 0.9, 1.4], "contribution_hdi_high": [0, 1.1, 1.6],
                           "is_current": [False, True, False]})
    levels = pd.DataFrame({"level": [0.5, 1.0], "total_budget": [50.0, 100.0], "expected_response_mean": [1.0, 1.5],
                           "expected_response_hdi_low": [0.9, 1.4], "expected_response_hdi_high": [1.1, 1.6]})
    recovery = pd.DataFrame({"channel": ["tv"], "parameter": ["saturation_lam"], "estimate": [1.0], "hdi_low": [0.9],
                             "hdi_high": [1.1], "true": [1.0]})
    pictures = [
        plots.fit_plot(frame, frame.tail(3), "fit"),
        plots.contributions_plot(_weekly().assign(baseline=1.0, tv=2.0), ["baseline", "tv"], "contributions"),
        plots.roas_plot(roas), plots.response_curves_plot(curves), plots.allocation_plot(_budget().allocation, "a"),
        plots.scenarios_plot(levels), plots.recovery_plot(recovery),
        plots.plans_plot(levels.assign(plan=["half", "today"], source=["goal", "current"],
                                       total_spend=levels["total_budget"]),
                         pd.DataFrame({"plan": ["half", "today"], "channel": "tv", "share_pct": 100.0})),
    ]
    assert all(p.startswith(PNG) and len(p) > 5000 for p in pictures)
    assert plots.markdown_image(PNG, "alt").startswith("![alt](data:image/png;base64,iVBORw0KGgo")


def test_a_plot_is_drawn_once_per_process_for_the_same_inputs(monkeypatch):
    """The report reuses the plots its assets drew in the same run; any other input draws anew."""
    frame = _weekly().assign(actual=np.arange(10.0), predicted_mean=np.arange(10.0), predicted_hdi_low=0.0,
                             predicted_hdi_high=10.0)
    drawn, subplots = [], plots.plt.subplots
    monkeypatch.setattr(plots.plt, "subplots", lambda *a, **k: drawn.append(1) or subplots(*a, **k))
    monkeypatch.setattr(plots, "_RENDERED", {})
    first = plots.fit_plot(frame, frame.tail(3), "fit")
    assert plots.fit_plot(frame.copy(), frame.tail(3).copy(), "fit") is first and len(drawn) == 1
    assert plots.fit_plot(frame.assign(actual=frame["actual"] + 1), frame.tail(3), "fit") != first
    assert plots.fit_plot(frame, None, "fit") != first
    plots.fit_plot(frame, frame.tail(3), "another title")
    plots.fit_plot(frame.rename(columns={"actual": "actual_"}).rename(columns={"actual_": "actual"}), frame.tail(3),
                   "fit")  # the same frame again: no drawing
    assert len(drawn) == 4
    for i in range(plots.RENDERED_KEPT + 1):  # a bounded memory
        plots.fit_plot(frame, None, f"title {i}")
    assert len(plots._RENDERED) == plots.RENDERED_KEPT


def test_executive_summary_writes_small_units_by_magnitude():
    """Spend kept in thousands: the summary once read "total budget 2"."""
    budget = _budget()
    small = BudgetResult(**{**budget.__dict__, "total_budget": 2.4375, "optimized_response": Interval(0.873, 0.8, 0.95),
                            "current_response": Interval(0.812, 0.75, 0.9), "uplift": Interval(0.061, 0.04, 0.08)})
    line = executive_summary(small, _recommendations())[0]
    assert "total budget 2.44." in line and "Expected incremental revenue 0.873 (94 % HDI 0.8–0.95)" in line
    assert "against 0.812" in line and "uplift 0.061, 94 % HDI 0.04–0.08" in line
    large = BudgetResult(**{**budget.__dict__, "total_budget": 2_345_678.0,
                            "optimized_response": Interval(12_437.0, 11_900.0, 13_050.0)})
    assert "total budget 2.35M. Expected incremental revenue 12,400 (94 % HDI 11,900–13,100)" in \
        executive_summary(large, _recommendations())[0]


def test_executive_summary_of_conversions_names_the_kpi_and_gives_the_value_when_known():
    valued = KpiConfig(type="conversions", name="sign-ups", value_per_unit=45.0)
    line = executive_summary(_budget(), _recommendations(), valued)[0]
    assert "Expected incremental sign-ups 330 (94 % HDI 320–340)" in line
    assert "Worth 14,900 (94 % HDI 14,400–15,300) at 45 per conversion, uplift worth 1,350" in line
    unvalued = executive_summary(_budget(), _recommendations(), KpiConfig(type="conversions", name="leads"))[0]
    assert "Expected incremental leads 330" in unvalued and "no breakeven is known" in unvalued
    assert "Worth" not in unvalued


def test_cpa_plots_draw_open_intervals_and_the_value_line_and_differ_from_the_roas_plot():
    roas = pd.DataFrame({"channel": ["tv", "search"], "roas_mean": [0.05, 0.01], "roas_hdi_low": [0.04, -0.002],
                         "roas_hdi_high": [0.06, 0.02], "mroas_mean": [0.02, 0.004], "mroas_hdi_low": [0.015, -0.001],
                         "mroas_hdi_high": [0.025, 0.009]})
    valued = KpiTerms.of(KpiConfig(type="conversions", name="sign-ups", value_per_unit=45.0))
    table = with_costs(roas, valued)
    assert np.isnan(table.loc[1, "cpa_hdi_high"]) and np.isnan(table.loc[1, "mcpa_hdi_high"])
    pictures = [plots.roas_plot(table, valued), plots.roas_plot(table, KpiTerms.of(KpiConfig(type="conversions"))),
                plots.roas_plot(table)]
    assert all(p.startswith(PNG) and len(p) > 5000 for p in pictures) and len(set(pictures)) == 3
    levels = pd.DataFrame({"level": [0.5, 1.0], "total_budget": [1.2, 2.4], "expected_response_mean": [10.0, 15.0],
                           "expected_response_hdi_low": [9.0, 14.0], "expected_response_hdi_high": [11.0, 16.0]})
    curves = pd.DataFrame({"channel": "tv", "weekly_spend": [0.0, 1.0, 2.0], "contribution_mean": [0, 1, 1.5],
                           "contribution_hdi_low": [0, 0.9, 1.4], "contribution_hdi_high": [0, 1.1, 1.6],
                           "is_current": [False, True, False]})
    assert plots.scenarios_plot(levels, valued) != plots.scenarios_plot(levels)
    assert plots.response_curves_plot(curves, valued).startswith(PNG)
