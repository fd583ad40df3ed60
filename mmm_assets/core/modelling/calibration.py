"""Lift-test calibration: experiment results in, a model that agrees with them out, and a check that it does.

The experiments file
--------------------
A CSV (``model.lift_tests.file`` in ``model.lift_tests.folder``, by default the landing folder), one row per
experiment, with a header holding these columns (others are ignored):

============  ====================================================================================================
column        meaning
============  ====================================================================================================
channel       the channel tested (a channel of the scenario)
start_date    first day of the test period (YYYY-MM-DD)
end_date      last day of the test period (YYYY-MM-DD, on or after start_date)
delta_spend   the change of the channel's spend over the whole test period (negative for a cut), in the
              channel column's units
lift          the measured incremental outcome caused by the test, in outcome (target) units, including what it
              carried over after the period (what a geo test with a post-period reads)
lift_sd       the standard error of ``lift`` (> 0), same units
market        the market the test ran in (a market of the scenario); needed when the scenario has several markets,
              optional otherwise. A market's model is calibrated with its own experiments only; the pooled model
              with every market's, each in its own market's units.
============  ====================================================================================================

Every problem is reported at once, naming the file, the line and the column.

How an experiment calibrates the model (``model.lift_tests.method``)
--------------------------------------------------------------------
``exact`` (the default): the model-implied lift of an experiment is its counterfactual, computed in the model with
the channel's own adstock and saturation: the channel's contribution with the spend of the test weeks raised by
``delta_spend / k`` per week (``k``: the test's weeks in the fitted data), minus its contribution with the actual
spend, summed over every week from the test's start to the end of the data (so the carry-over after the test is
counted, as the experiment counts it). The model gains ``lift ~ Normal(model-implied lift, lift_sd)``, in target
units (scaled like the target inside the model).

``library``: PyMC-Marketing's own ``MMM.add_lift_test_measurements``. It takes one row per experiment with
``channel, x, delta_x, delta_y, sigma``, per period (week) and in the data's own units (it scales them by the
model's channel and target scales itself), and adds ``delta_y ~ Normal(s(x + delta_x) - s(x), sigma)``, where ``s``
is the channel's saturation curve alone (``s(x / channel_scale)``, ceiling included, no carry-over): a
steady-state reading. The row is ``x`` = the channel's mean weekly spend over the test weeks, ``delta_x =
delta_spend / k``, ``delta_y = lift / k``, ``sigma = lift_sd / k``. It is exact when spend is flat through the test;
when weekly spend swings, the mean of the raw spend is not what the saturation sees (the adstocked spend) and the
steady-state lift is off: with ``config/lift_example.yaml``'s true parameters it is 11 % and 14 % larger than the
true lifts of that file's two experiments, about one standard error of each. ``exact`` has no such error: it is
what the experiment measured, computed the way the model computes everything else.

:func:`lift_test_report` then compares each experiment with what a fitted model implies (calibrated or not): the
exact model-implied lift per posterior draw, its mean and 94 % HDI, the z-score
``(measured - model mean) / sqrt(lift_sd^2 + model sd^2)`` and whether the measured lift lies inside the HDI.

:func:`sample_lift_tests` writes the experiments a synthetic scenario's truth implies (exact counterfactual lifts of
the true model, carry-over included), so tests and the README can make a file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_assets.core.config import DATE_COLUMN, MARKET_COLUMN, MMMConfig
from mmm_assets.core.errors import InputError, examples, raise_if_problems
from mmm_assets.core.synthetic.generator import GroundTruth, generate

#: Columns of the experiments file, in the order :func:`sample_lift_tests` writes them.
COLUMNS = ["channel", "start_date", "end_date", "delta_spend", "lift", "lift_sd"]
NUMBERS = ["delta_spend", "lift", "lift_sd"]
DATES = ["start_date", "end_date"]
#: Name of the lift-test likelihood in the model.
LIFT_TESTS = "lift_measurements"
WEEK = pd.Timedelta(days=7)
#: The first data line of a CSV file is line 2 (line 1 is the header).
FIRST_LINE = 2


def lift_tests_path(cfg: MMMConfig) -> Path | None:
    """The configured experiments file, or None when the scenario has none."""
    spec = cfg.model.lift_tests
    if spec is None:
        return None
    folder = spec.folder
    if folder is None:
        assert cfg.data.files is not None  # the config rejects a synthetic scenario without a folder
        folder = cfg.data.files.landing_dir
    return Path(folder) / spec.file


def validate_lift_tests(  # noqa: C901 -- a flat list of independent checks, each collecting its problems
    table: pd.DataFrame, channels: Sequence[str], source: str, markets: Sequence[str] | None = None
) -> pd.DataFrame:
    """The experiments of ``table`` as a clean frame (dates parsed, numbers as floats, ``market`` when the file has
    one), or one :class:`InputError` naming ``source``, the line and the column of every problem. ``markets``: the
    scenario's (None when they come from a landing file); with more than one, the file must say each test's."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"{source}: column(s) {', '.join(map(repr, missing))} missing; the experiments file needs the columns "
            f"{', '.join(COLUMNS)} (has {', '.join(map(repr, table.columns))})"
        )
    by_market = MARKET_COLUMN in table.columns
    if not by_market and markets is not None and len(markets) > 1:
        raise InputError(
            f"{source}: column {MARKET_COLUMN!r} missing; the scenario has several markets ({', '.join(markets)}), "
            "so each experiment must name the market it ran in"
        )
    if table.empty:
        raise InputError(f"{source}: no experiments (the file has a header but no rows)")
    work = table[[*COLUMNS, *([MARKET_COLUMN] if by_market else [])]].reset_index(drop=True)
    lines = pd.Series(range(FIRST_LINE, FIRST_LINE + len(work)))
    problems: list[str] = []

    def at(mask: pd.Series, column: str, values: pd.Series | None = None) -> str:
        shown = lines[mask].astype(str)
        if values is not None:
            shown = shown + " (" + values[mask].astype(str) + ")"
        return f"column {column!r}, line(s) {examples(list(shown))}"

    text = work["channel"].astype(str).str.strip()
    unknown = ~text.isin(list(channels))
    if unknown.any():
        problems.append(f"{at(unknown, 'channel', text)}: not a channel of the scenario (channels: {list(channels)})")
    out = pd.DataFrame({"channel": text})
    if by_market:
        market = work[MARKET_COLUMN].astype(str).str.strip()
        unknown = market.eq("") | (~market.isin(list(markets)) if markets is not None else False)
        if unknown.any():
            known = f" (markets: {list(markets)})" if markets is not None else ""
            problems.append(f"{at(unknown, MARKET_COLUMN, market)}: not a market of the scenario{known}")
        out[MARKET_COLUMN] = market
    for column in DATES:
        parsed = pd.to_datetime(work[column].astype(str).str.strip(), format="%Y-%m-%d", errors="coerce")
        bad = parsed.isna()
        if bad.any():
            problems.append(f"{at(bad, column, work[column])}: not a date; write dates as YYYY-MM-DD")
        out[column] = parsed
    for column in NUMBERS:
        values = pd.to_numeric(work[column], errors="coerce").astype("float64")
        bad = ~np.isfinite(values)
        if bad.any():
            problems.append(f"{at(bad, column, work[column])}: not a number; write plain numbers such as 1234.5")
        out[column] = values
    backwards = out["end_date"] < out["start_date"]
    if backwards.any():
        problems.append(f"{at(backwards, 'end_date', work['end_date'])}: before start_date; the period is inclusive")
    not_positive = out["lift_sd"] <= 0
    if not_positive.any():
        problems.append(f"{at(not_positive, 'lift_sd', work['lift_sd'])}: must be > 0 (a standard error)")
    no_change = out["delta_spend"] == 0
    if no_change.any():
        problems.append(f"{at(no_change, 'delta_spend', work['delta_spend'])}: zero; a test must change the spend")
    raise_if_problems(source, problems)
    out.insert(0, "line", lines)
    return out


def read_lift_tests(path: Path, channels: Sequence[str], markets: Sequence[str] | None = None) -> pd.DataFrame:
    """Read and validate an experiments CSV (see the module docstring)."""
    if not path.is_file():
        raise InputError(f"{path}: lift-test file not found (model.lift_tests names it)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be read as a comma-separated UTF-8 file ({err})") from None
    return validate_lift_tests(table, channels, str(path), markets)


def load_lift_tests(cfg: MMMConfig, every_market: bool = False) -> pd.DataFrame | None:
    """The scenario's validated experiments, or None when ``model.lift_tests`` is not set. A configuration narrowed
    to one market (``cfg.for_market``) gets that market's only, unless ``every_market`` (the pooled model)."""
    path = lift_tests_path(cfg)
    if path is None:
        return None
    tests = read_lift_tests(path, cfg.channels, cfg.market_names)
    if MARKET_COLUMN in tests and cfg.market is not None and not every_market:
        tests = tests[tests[MARKET_COLUMN] == cfg.market].reset_index(drop=True)
    return tests


def to_library_rows(tests: pd.DataFrame, features: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """PyMC-Marketing's lift-test rows (``channel, x, delta_x, delta_y, sigma``, per week) for the experiments whose
    period overlaps the weeks of ``features`` (sorted by date), plus a note for each one left out. Also keeps each
    experiment's ``line``, ``lift``, ``lift_sd`` and its window: ``first`` (row of its first week) and ``weeks``."""
    dates = pd.to_datetime(features[DATE_COLUMN])
    rows, notes = [], []
    for test in tests.itertuples(index=False):
        covered = (dates <= test.end_date) & (dates + WEEK > test.start_date)
        weeks = int(covered.sum())
        if weeks == 0:
            notes.append(
                f"line {test.line}: the test of {test.channel!r} ({test.start_date:%Y-%m-%d} .. "
                f"{test.end_date:%Y-%m-%d}) is outside the fitted weeks; not used"
            )
            continue
        x = float(features.loc[covered.to_numpy(), test.channel].mean())
        delta_x = test.delta_spend / weeks
        if x + delta_x < 0:
            notes.append(
                f"line {test.line}: delta_spend {test.delta_spend:g} cuts {test.channel!r} below zero spend "
                f"(mean weekly spend {x:g} over {weeks} weeks); not used"
            )
            continue
        rows.append(
            {
                "line": test.line,
                "channel": test.channel,
                "first": int(np.flatnonzero(covered.to_numpy())[0]),
                "weeks": weeks,
                "x": x,
                "delta_x": delta_x,
                "delta_y": test.lift / weeks,
                "sigma": test.lift_sd / weeks,
                "lift": test.lift,
                "lift_sd": test.lift_sd,
            }
        )
    columns = ["line", "channel", "first", "weeks", "x", "delta_x", "delta_y", "sigma", "lift", "lift_sd"]
    return pd.DataFrame(rows, columns=columns), notes


def _counterfactual_spend(features: pd.DataFrame, row) -> tuple[np.ndarray, np.ndarray]:
    """The channel's actual weekly spend and the spend with the experiment's change in its weeks."""
    spend = features[row.channel].to_numpy(dtype=float)
    changed = spend.copy()
    changed[row.first : row.first + row.weeks] += row.delta_x
    return spend, changed


def _add_exact(mmm, rows: pd.DataFrame, features: pd.DataFrame | Mapping[str, pd.DataFrame]) -> None:
    """The exact lift likelihood; ``features``: the frame the model was built on, or the pooled model's frame per
    market (``rows`` then name their market: the market's own parameters, channel and target scales)."""
    import pymc.dims as pmd
    import pytensor.tensor as pt
    from pytensor.xtensor import as_xtensor

    model = mmm.model
    channels = list(mmm.channel_columns)
    pooled = not isinstance(features, pd.DataFrame)
    markets = [str(m) for m in model.coords[MARKET_COLUMN]] if pooled else []
    case, dim = f"_{LIFT_TESTS}_case", f"_{LIFT_TESTS}_dim"
    lifts, target_scales = [], []
    with model:
        model.add_coord(case, ["actual", "experiment"])
        model.add_coord(dim, length=len(rows))
        for row in rows.itertuples(index=False):
            at = {MARKET_COLUMN: row.market} if pooled else {}  # the market's scales, by name
            where = {"channel": channels.index(row.channel)}  # its parameters, by position
            if pooled:
                where[MARKET_COLUMN] = markets.index(row.market)
            frame = features[row.market] if pooled else features
            target_scales.append(float(mmm.scalers["_target"].sel(at)))
            scale = float(mmm.scalers["_channel"].sel(channel=row.channel, **at))
            spend = as_xtensor(np.stack(_counterfactual_spend(frame, row), axis=1) / scale, dims=("date", case))
            carry = {k: model[v].isel(where) for k, v in mmm.adstock.variable_mapping.items()}
            shape = {k: model[v].isel(where) for k, v in mmm.saturation.variable_mapping.items()}

            def adstock(x, carry=carry):
                return mmm.adstock.function(x, **carry, dim="date")

            def saturate(x, shape=shape):
                return mmm.saturation.function(x, **shape)

            response = saturate(adstock(spend)) if mmm.adstock_first else adstock(saturate(spend))
            difference = response.isel({case: 1}) - response.isel({case: 0})
            lifts.append(difference.values[row.first :].sum())
        lift = as_xtensor(pt.stack(lifts), dims=(dim,))
        target_scale = np.asarray(target_scales)
        pmd.Deterministic(f"{LIFT_TESTS}_model_lift_original_scale", lift * as_xtensor(target_scale, dims=(dim,)))
        pmd.Normal(
            LIFT_TESTS,
            mu=lift,
            sigma=as_xtensor(rows["lift_sd"].to_numpy() / target_scale, dims=(dim,)),
            observed=as_xtensor(rows["lift"].to_numpy() / target_scale, dims=(dim,)),
        )


def add_lift_tests(
    mmm, tests: pd.DataFrame, features: pd.DataFrame | Mapping[str, pd.DataFrame], method: str = "exact"
) -> tuple[int, list[str]]:
    """Add the experiments to a built model (see the module docstring for ``method``); the number added and the
    notes on those left out. ``features``: the frame the model was built on, or the pooled model's frame per market
    (each market's experiments on its own weeks; ``exact`` only)."""
    if isinstance(features, pd.DataFrame):
        rows, notes = to_library_rows(tests, features)
    else:
        if MARKET_COLUMN not in tests:
            raise InputError(
                f"the pooled model's experiments need a {MARKET_COLUMN!r} column naming the market of each"
            )
        if method != "exact":
            raise ValueError(f"the pooled model takes lift tests with method 'exact', not {method!r}")
        parts, notes = [], []
        for market, frame in features.items():
            part, left_out = to_library_rows(tests[tests[MARKET_COLUMN] == market], frame)
            parts.append(part.assign(**{MARKET_COLUMN: market}))
            notes += [f"market {market}: {note}" for note in left_out]
        rows = pd.concat(parts, ignore_index=True)
    if rows.empty:
        return 0, notes
    if method == "library":
        mmm.add_lift_test_measurements(rows[["channel", "x", "delta_x", "delta_y", "sigma"]], name=LIFT_TESTS)
    elif method == "exact":
        _add_exact(mmm, rows, features)
    else:
        raise ValueError(f"unknown lift-test method {method!r}; use 'exact' or 'library'")
    return len(rows), notes


def implied_lift(mmm, rows: pd.DataFrame, features: pd.DataFrame) -> np.ndarray:
    """The model's exact lift of each experiment row, per posterior draw: (draws, rows), in target units, with the
    model's own adstock and saturation (any family)."""
    from mmm_assets.core.transforms.media import ChannelMedia

    out = []
    for row in rows.itertuples(index=False):
        media = ChannelMedia.of(mmm, row.channel)
        spend, changed = _counterfactual_spend(features, row)
        out.append((media.response(changed) - media.response(spend))[:, row.first :].sum(axis=1))
    posterior = mmm.idata.posterior
    return np.stack(out, axis=1) if out else np.empty((posterior.sizes["chain"] * posterior.sizes["draw"], 0))


def lift_test_report(mmm, tests: pd.DataFrame) -> pd.DataFrame:
    """How well a fitted model reproduces each experiment (see the module docstring); one row per experiment.

    Columns: ``line, channel, start_date, end_date, weeks, delta_spend, measured_lift, lift_sd, model_lift_mean,
    model_lift_sd, model_hdi_low, model_hdi_high, z, measured_in_hdi, used`` (``used``: the period overlaps the
    fitted weeks; the other model columns are NaN otherwise).
    """
    import arviz as az

    from mmm_assets.core.modelling.posterior import HDI_PROB, fitted_features  # imports PyMC-Marketing: deferred too

    features = fitted_features(mmm)
    rows, _ = to_library_rows(tests, features)
    draws = implied_lift(mmm, rows, features)
    report = tests[["line", "channel", "start_date", "end_date", "delta_spend"]].copy()
    report["measured_lift"] = tests["lift"].to_numpy()
    report["lift_sd"] = tests["lift_sd"].to_numpy()
    model = pd.DataFrame(
        {
            "line": rows["line"].to_numpy(),
            "weeks": rows["weeks"].to_numpy(),
            "model_lift_mean": draws.mean(axis=0),
            "model_lift_sd": draws.std(axis=0),
        }
    )
    if len(rows):
        hdi = np.asarray([az.hdi(draws[:, i], prob=HDI_PROB) for i in range(draws.shape[1])])
        model["model_hdi_low"], model["model_hdi_high"] = hdi[:, 0], hdi[:, 1]
    else:
        model["model_hdi_low"] = model["model_hdi_high"] = pd.Series(dtype=float)
    report = report.merge(model, on="line", how="left")
    report["z"] = (report["measured_lift"] - report["model_lift_mean"]) / np.sqrt(
        report["lift_sd"] ** 2 + report["model_lift_sd"] ** 2
    )
    report["measured_in_hdi"] = (report["model_hdi_low"] <= report["measured_lift"]) & (
        report["measured_lift"] <= report["model_hdi_high"]
    )
    report["used"] = report["weeks"].notna()
    return report


@dataclass(frozen=True)
class Experiment:
    """A synthetic experiment: change a channel's spend by ``spend_change`` (a fraction, e.g. 0.3 = +30 %) for
    ``weeks`` weeks from the week holding ``start_date``."""

    channel: str
    start_date: dt.date
    weeks: int
    spend_change: float


def sample_lift_tests(
    truth: GroundTruth,
    frame: pd.DataFrame,
    experiments: Sequence[Experiment],
    relative_sd: float,
    seed: int | None = None,
) -> pd.DataFrame:
    """The experiments file a synthetic scenario's truth implies, in the columns of :data:`COLUMNS`.

    ``lift`` is the exact counterfactual lift of the true model (spend raised in the test weeks, everything else
    equal; carry-over after the test counted to the end of the data), ``lift_sd`` = ``relative_sd`` x ``|lift|``.
    With a ``seed`` the measured lift gets that much Normal noise, as a real experiment would; without, it is exact.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    dates = pd.to_datetime(frame[DATE_COLUMN]).reset_index(drop=True)
    rows = []
    for e in experiments:
        start = int(dates.searchsorted(pd.Timestamp(e.start_date), side="right")) - 1
        if start < 0 or start + e.weeks > len(dates):
            raise ValueError(f"the experiment on {e.channel!r} from {e.start_date} does not fit in the data's weeks")
        spend = frame[e.channel].to_numpy(dtype=float)
        changed = spend.copy()
        changed[start : start + e.weeks] *= 1 + e.spend_change
        lift = float((truth.channel_response(e.channel, changed) - truth.channel_response(e.channel, spend)).sum())
        sd = relative_sd * abs(lift)
        measured = lift + (rng.normal(0.0, sd) if rng is not None else 0.0)
        rows.append(
            {
                "channel": e.channel,
                "start_date": dates[start].strftime("%Y-%m-%d"),
                "end_date": (dates[start + e.weeks - 1] + pd.Timedelta(days=6)).strftime("%Y-%m-%d"),
                "delta_spend": float((changed - spend).sum()),
                "lift": measured,
                "lift_sd": sd,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def write_sample_lift_tests(
    cfg: MMMConfig, experiments: Sequence[Experiment], relative_sd: float, seed: int | None = None
) -> Path:
    """Write the experiments file of a synthetic scenario (its truth's lifts, see :func:`sample_lift_tests`) where
    ``model.lift_tests`` points; the path written."""
    if cfg.data.synthetic is None or cfg.data.source != "synthetic":
        raise ValueError(f"scenario {cfg.scenario!r} is not synthetic: there is no truth to derive lifts from")
    path = lift_tests_path(cfg)
    if path is None:
        raise ValueError(f"scenario {cfg.scenario!r} sets no model.lift_tests; name the file to write there")
    frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
    table = sample_lift_tests(truth, frame, experiments, relative_sd, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path
