"""mmm_assets: a weekly Bayesian marketing-mix model as Dagster assets, with quality gates and lineage."""
