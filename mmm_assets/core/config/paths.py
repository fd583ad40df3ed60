"""Where the project is, and which scenario a process serves: ``$MMM_CONFIG`` or config/default.yaml.

One scenario per process: the Dagster definitions fix the schedule's cron and the assets' freshness policy from it
when they are imported, and the sensors and the scenario resource default to it. `make dev` sets ``$MMM_CONFIG``;
`python -m mmm_assets run --config X` makes X the scenario (:func:`serving`) before it imports the definitions.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

from mmm_assets.core.config.base import ENV_CONFIG
from mmm_assets.core.config.loading import load_config
from mmm_assets.core.config.operations import OperationsConfig

PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = PROJECT_DIR / "config" / "default.yaml"


def default_config_path() -> str:
    """The process's scenario file: ``$MMM_CONFIG`` when set, else config/default.yaml."""
    return os.environ.get(ENV_CONFIG) or str(DEFAULT_CONFIG)


def default_operations() -> OperationsConfig:
    """Operations settings of the process's scenario, for what Dagster fixes at load time (schedule, freshness)."""
    return _operations(default_config_path())


@functools.cache
def _operations(path: str) -> OperationsConfig:
    return load_config(path).operations


@contextlib.contextmanager
def serving(config_path: str | os.PathLike[str]) -> Iterator[str]:
    """Make ``config_path`` the process's scenario for the block (``$MMM_CONFIG``, inherited by child processes);
    the variable is put back as it was afterwards. Import the Dagster definitions inside the block: they read it
    once, when first imported."""
    resolved = str(Path(config_path).resolve())
    before = os.environ.get(ENV_CONFIG)
    os.environ[ENV_CONFIG] = resolved
    try:
        yield resolved
    finally:
        if before is None:
            os.environ.pop(ENV_CONFIG, None)
        else:
            os.environ[ENV_CONFIG] = before
