"""The marketing-mix model itself: variable roles, non-media terms and ROI priors, lift-test calibration, building the
PyMC-Marketing MMM, fitting it, saving and loading it, forecasting unseen weeks, posterior summaries, and the pooled
multi-market model.
"""
