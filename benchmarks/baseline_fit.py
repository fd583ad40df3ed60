"""The baseline: PyMC-Marketing's MMM fitted the reference way on the reference scenario, in its own process.

PyMC's default NUTS sampler, 4 chains x (1000 tune + 1000 draws), default target_accept; the same generated data as
the pipeline's default scenario. Prints one JSON line: fit seconds, diagnostics and parameter recovery.
"""

import json
import sys
import time

import arviz as az
from pymc_marketing.mmm import MMM, GeometricAdstock, LogisticSaturation

from mmm_assets.core.config import load_config
from mmm_assets.core.evaluation.metrics import recovery
from mmm_assets.core.inference.sampling import diagnose
from mmm_assets.core.modelling.posterior import posterior_parameters
from mmm_assets.core.synthetic.generator import generate


def main(config_path: str) -> None:
    cfg = load_config(config_path)
    frame, truth = generate(cfg.data.synthetic)
    X, y = frame.drop(columns="y"), frame["y"]
    mmm = MMM(
        date_column="date",
        channel_columns=cfg.channels,
        adstock=GeometricAdstock(l_max=cfg.model.adstock_l_max),
        saturation=LogisticSaturation(),
    )
    started = time.monotonic()
    mmm.fit(X, y, nuts_sampler="pymc", chains=4, draws=1000, tune=1000, random_seed=1, progressbar=False)
    fit_seconds = time.monotonic() - started
    d = diagnose(mmm.idata, ["intercept_contribution", "adstock_alpha", "saturation_lam", "saturation_beta", "y_sigma"])
    table = recovery(posterior_parameters(mmm), truth.parameters)
    errors = table.groupby("parameter")["error"].max()
    print(json.dumps({
        "fit_seconds": fit_seconds,
        "max_rhat": d.max_rhat,
        "min_ess_bulk": d.min_ess_bulk,
        "divergences": d.divergences,
        "saturation_lam_max_rel_error": float(errors["saturation_lam"]),
        "adstock_alpha_max_abs_error": float(errors["adstock_alpha"]),
        "arviz": az.__version__,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
