"""Names of the PyMC-Marketing model's variables that several layers read (sampling, persistence, priors, pooling)."""

#: Posterior-predictive variable in target units (registered before the fit).
PREDICTED = "y_original_scale"
#: Channel contributions in target units (registered before the fit).
CONTRIBUTIONS = "channel_contribution_original_scale"
#: Suffix of PyMC-Marketing's original-scale deterministics whose base names a saved model lists (see
#: :func:`mmm_assets.core.modelling.persistence.netcdf_bytes`).
ORIGINAL_SCALE_SUFFIX = "_original_scale"
