"""Plain-Python core of the pipeline (no Dagster): configuration, data, modelling, inference, evaluation, decisions,
presentation and stores, one sub-package per concern; errors, records and variable names shared by all at this level."""
