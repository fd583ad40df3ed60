"""System tests: whole-graph runs, faults, crash recovery, markets, PostgreSQL, deployment, security, bad inputs and
the UI."""
