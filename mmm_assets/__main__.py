"""`python -m mmm_assets`: the command line (mmm_assets.cli)."""

import atexit
import os
import sys

from mmm_assets.cli import main

code = main()
# Leave without the interpreter tearing down every loaded module: with PyMC, JAX and MLflow loaded that takes ~3 s
# and writes nothing. Exit handlers (logging, temporary files, libraries' own) still run, and output is flushed.
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
