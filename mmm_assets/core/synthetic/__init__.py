"""The synthetic data generator: weekly spend, controls, events and a KPI drawn from a known truth (adstock,
saturation, coefficients), so a fit's recovery of that truth can be measured.
"""
