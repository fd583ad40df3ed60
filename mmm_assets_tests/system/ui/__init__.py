"""End-to-end tests of the Dagster UI: a real `dagster dev`, driven by headless Chromium."""
