"""Scenarios and fits shared by test_roles, test_priors and test_calibration (each fit runs once per process).

- the roles scenario: ``config/roles_example.yaml`` (every role, an ROI prior, fixed scaling) on the two years of
  the SMALL scenario, 2 chains x 300 draws;
- the collinear scenario: SMALL with facebook's spend copying adwords' (correlation above 0.99), more noise, so the
  data alone cannot split the two; fitted without calibration, with lift tests on facebook (read from a CSV through
  ``model.lift_tests``) and with an ROI prior on facebook.
"""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from mmm_assets.core.config import MMMConfig, load_config
from mmm_assets.core.config.paths import PROJECT_DIR
from mmm_assets.core.data.calendar import with_calendar
from mmm_assets.core.data.features import validate_features
from mmm_assets.core.inference.sampling import FitResult
from mmm_assets.core.modelling.calibration import Experiment, sample_lift_tests
from mmm_assets.core.modelling.fitting import fit
from mmm_assets.core.synthetic.generator import GroundTruth, generate
from mmm_assets_tests.conftest import SMALL, merge, write_scenario

ROLES_EXAMPLE = PROJECT_DIR / "config" / "roles_example.yaml"
#: Within the brief's limit for test fits (<= 300 draws + 300 tune).
DRAWS = {"sampler": {"draws": 300, "tune": 300}}
#: The collinear pair: facebook copies adwords' spend pattern with 5 % of its own; noise 5 % of outcome_scale.
COLLINEAR = {"data": {"synthetic": {"noise_sigma": 0.05, "channels": {"facebook": {"follows": "adwords",
                                                                                  "follow_noise": 0.05}}}}}
TESTED = "facebook"
#: Two experiments on the tested channel: +50 % for 8 weeks in 2019, -50 % for 8 weeks in 2020; 10 % standard error.
EXPERIMENTS = (Experiment(TESTED, dt.date(2019, 6, 3), 8, 0.5), Experiment(TESTED, dt.date(2020, 6, 1), 8, -0.5))
LIFT_RELATIVE_SD = 0.1
LIFT_SEED = 7
LIFT_FILE = "lift_tests.csv"
#: The analyst's belief in the collinear ROI-prior fit: the true ROAS, with this sd.
ROI_PRIOR_SD = 0.25

_folder = Path(tempfile.mkdtemp(prefix="mmm_role_scenarios_"))
atexit.register(shutil.rmtree, _folder, ignore_errors=True)
_fits: dict[str, Scenario] = {}


@dataclass(frozen=True)
class Scenario:
    cfg: MMMConfig
    frame: pd.DataFrame  # as generated
    features: pd.DataFrame  # validated, calendar columns added
    truth: GroundTruth
    result: FitResult | None = None
    messages: tuple[str, ...] = ()

    @property
    def mmm(self):
        assert self.result is not None
        return self.result.mmm

    def true_roas(self) -> pd.Series:
        return self.truth.contributions[self.cfg.channels].sum() / self.features[self.cfg.channels].sum()


def roles_overrides() -> dict:
    """The roles example's own settings (everything but ``extends``), laid over SMALL."""
    raw = yaml.safe_load(ROLES_EXAMPLE.read_text())
    raw.pop("extends")
    return merge(merge(SMALL, raw), DRAWS)


def scenario(name: str, overrides: dict) -> Scenario:
    """A scenario written as a real YAML file (default.yaml + overrides) with its data, unfitted."""
    folder = _folder / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = load_config(write_scenario(folder, overrides))
    frame, truth = generate(cfg.data.synthetic, cfg.model.calendar)
    features = validate_features(with_calendar(frame, cfg), cfg.channels, cfg.controls, cfg.validation.min_weeks, name)
    return Scenario(cfg, frame, features, truth)


def _fitted(name: str, overrides: dict) -> Scenario:
    if name not in _fits:
        base = scenario(name, overrides)
        messages: list[str] = []
        result = fit(base.cfg, base.features, report=messages.append)
        _fits[name] = Scenario(base.cfg, base.frame, base.features, base.truth, result, tuple(messages))
    return _fits[name]


def roles_fit() -> Scenario:
    return _fitted("roles", roles_overrides())


def collinear_overrides(kind: str) -> dict:
    """``kind``: uncalibrated | lift (experiments file on facebook) | roi (ROI prior on facebook at its true ROAS)."""
    base = merge(merge(SMALL, COLLINEAR), DRAWS)
    if kind == "uncalibrated":
        return base
    if kind == "lift":
        folder = _folder / "lift_tests"
        folder.mkdir(parents=True, exist_ok=True)
        plain = scenario("collinear_plain", base)
        tests = sample_lift_tests(plain.truth, plain.frame, EXPERIMENTS, LIFT_RELATIVE_SD, seed=LIFT_SEED)
        tests.to_csv(folder / LIFT_FILE, index=False)
        return merge(base, {"model": {"lift_tests": {"file": LIFT_FILE, "folder": str(folder)}}})
    if kind == "roi":
        truth = float(scenario("collinear_plain", base).true_roas()[TESTED])
        return merge(base, {"model": {"roi_priors": {TESTED: {"mean": truth, "sd": ROI_PRIOR_SD}}}})
    raise ValueError(kind)


def collinear_fit(kind: str) -> Scenario:
    return _fitted(f"collinear_{kind}", collinear_overrides(kind))
