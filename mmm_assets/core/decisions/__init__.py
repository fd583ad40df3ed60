"""What the fitted model is used for: contributions per component, ROAS and marginal ROAS per channel, and budget
optimisation with its recommendations.
"""
