"""The registered model as MLflow serves it: weekly spend in, the posterior-mean KPI (and a 94 % interval) out.

MLflow's "models from code": this file itself is logged as the model's code, so loading it needs mlflow, pandas and
PyMC-Marketing, not mmm_assets, and nothing is unpickled (the posterior is the version's netCDF artifact). Load the
champion anywhere with ``mlflow.pyfunc.load_model("models:/<registered model>@champion").predict(spend)``, where
``spend`` holds the date column and every channel (and control) column of the fit, one row per week. Weeks after
the fitted window carry the fitted weeks' adstock over; a frame of fitted weeks is predicted as it stands (start it
at the window's first week for the model's own in-sample prediction).
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

#: The artifact holding the posterior netCDF (``MMM.save``).
POSTERIOR = "posterior"
HDI_PROB = 0.94


class MMMForecast(PythonModel):
    """A fitted PyMC-Marketing MMM predicting the KPI of new weeks of spend."""

    def load_context(self, context) -> None:
        """Read the posterior (``MMM.load`` of the version's netCDF artifact)."""
        from pymc_marketing.mmm import MMM

        self.mmm = MMM.load(context.artifacts[POSTERIOR])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """The date, the posterior-mean KPI and its 94 % equal-tailed interval, one row per week of ``model_input``."""
        date = self.mmm.date_column
        frame = pd.DataFrame(model_input).copy()
        frame[date] = pd.to_datetime(frame[date])
        fitted_until = pd.Timestamp(self.mmm.idata.fit_data[date].values.max())
        draws = self.mmm.sample_posterior_predictive(
            frame, var_names=["y_original_scale"], include_last_observations=bool((frame[date] > fitted_until).all()),
            extend_idata=False, combined=True, progressbar=False,
        )["y_original_scale"]
        sample = [d for d in draws.dims if d != date]
        tail = (1 - HDI_PROB) / 2
        return pd.DataFrame({
            date: frame[date].to_numpy(),
            "predicted_mean": draws.mean(sample).to_numpy(),
            "predicted_low": draws.quantile(tail, dim=sample).to_numpy(),
            "predicted_high": draws.quantile(1 - tail, dim=sample).to_numpy(),
        })


mlflow.models.set_model(MMMForecast())
