"""The registry's versions are MLflow models people can use: a process that imports only mlflow and pandas loads
``models:/<model>@champion`` and predicts the KPI of weekly spend (MLflow's models from code; nothing unpickled)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_assets.core.config import DATE_COLUMN, DEFAULT_MARKET, TARGET_COLUMN, load_config
from mmm_assets.core.modelling.forecast import in_sample_prediction
from mmm_assets.core.modelling.persistence import load_model
from mmm_assets.core.modelling.posterior import fitted_features
from mmm_assets.core.stores import tracking
from mmm_assets_tests.system.test_faults import TINY, _run_refresh

#: The child: mlflow and pandas only; it predicts the fitted weeks and four weeks after them.
PREDICT = """
import sys
from pathlib import Path
import mlflow, pandas as pd
uri, model_uri, spend_file, fitted_out, later_out = sys.argv[1:]
mlflow.set_tracking_uri(uri)
model = mlflow.pyfunc.load_model(model_uri)
spend = pd.read_parquet(spend_file)
model.predict(spend).to_parquet(fitted_out)
later = spend.tail(4).assign(date=spend["date"].iloc[-1] + pd.to_timedelta([7, 14, 21, 28], unit="D"))
model.predict(later).to_parquet(later_out)
assert not [m for m in sys.modules if m.startswith("mmm_assets")], "the model imported mmm_assets"
"""


@pytest.mark.slow
def test_the_champion_loads_and_predicts_in_a_fresh_process_without_mmm_assets(write_config, tmp_path):
    path = write_config(TINY)
    assert _run_refresh(path).success
    market = load_config(path).for_market(DEFAULT_MARKET)
    version, model_file = tracking.champion_model_file(tracking.client_for(market), market)
    assert version.source.startswith("models:/m-")
    mmm = load_model(model_file)
    weeks = fitted_features(mmm)
    own = in_sample_prediction(mmm, weeks)
    spend_file, fitted_out, later_out = (tmp_path / f"{n}.parquet" for n in ("spend", "fitted", "later"))
    weeks.drop(columns=[TARGET_COLUMN]).to_parquet(spend_file)

    model_uri = f"models:/{tracking.model_name(market)}@{tracking.CHAMPION}"
    child = subprocess.run(
        [sys.executable, "-c", PREDICT, tracking.tracking_uri(market), model_uri,
         str(spend_file), str(fitted_out), str(later_out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    fitted, later = pd.read_parquet(fitted_out), pd.read_parquet(later_out)
    assert list(fitted.columns) == [DATE_COLUMN, "predicted_mean", "predicted_low", "predicted_high"]
    assert (pd.to_datetime(fitted[DATE_COLUMN]) == pd.to_datetime(own[DATE_COLUMN])).all()
    np.testing.assert_allclose(fitted["predicted_mean"], own["predicted_mean"], rtol=0.01)
    assert (fitted["predicted_low"] <= fitted["predicted_mean"]).all()
    assert (fitted["predicted_mean"] <= fitted["predicted_high"]).all()
    assert len(later) == 4 and np.isfinite(later.drop(columns=DATE_COLUMN).to_numpy()).all()
    assert (later["predicted_mean"] > 0).all()


def test_the_model_code_names_the_artifact_the_registry_logs():
    """tracking does not import the model's code (it would set MLflow's model-from-code global): the two name the
    posterior artifact alike."""
    from mmm_assets.core.stores import mlflow_model

    assert mlflow_model.POSTERIOR == tracking.POSTERIOR_ARTIFACT
    assert tracking.MODEL_CODE.resolve() == Path(mlflow_model.__file__).resolve()
