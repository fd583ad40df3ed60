"""Loading a scenario: the YAML reader (unique keys, bounded depth), ``extends:`` chains, merging and paths
relative to the project root."""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path

import yaml
from pydantic import (
    ValidationError,
)

from mmm_assets.core.config.base import ENV_CONFIG, ENV_DUCKDB, ConfigError, _format_errors, merged
from mmm_assets.core.config.operations import PathsConfig
from mmm_assets.core.config.scenario import MMMConfig

PROJECT_MARKERS = ("pyproject.toml", "workspace.yaml")
#: Deepest nesting of a scenario file (mappings and lists inside each other, the top-level mapping being level 1).
#: The deepest shipped setting is 6 levels down (data.synthetic.channels.<name>.spend_min's value); PyYAML builds
#: nodes recursively and overflows Python's stack (an uncaught RecursionError) a few hundred levels down, so the
#: limit sits well above any real layout and far below the crash.
MAX_YAML_DEPTH = 50
def project_root_for(path: Path) -> Path:
    """The nearest folder at or above ``path`` holding a project marker; the file's own folder otherwise."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return start


def parse_config(raw: object, source: str = "<config>", root: Path | None = None) -> MMMConfig:
    """Validate a mapping (as read from YAML) and resolve its relative paths against ``root``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, found {type(raw).__name__}")
    try:
        cfg = MMMConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source} is not a valid scenario configuration:\n{_format_errors(err)}") from None
    base = (root or Path.cwd()).resolve()

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    duckdb_path = Path(os.environ[ENV_DUCKDB]) if os.environ.get(ENV_DUCKDB) else cfg.paths.duckdb
    update: dict = {
        "paths": PathsConfig(
            duckdb=absolute(duckdb_path),
            models_dir=absolute(cfg.paths.models_dir),
            reports_dir=absolute(cfg.paths.reports_dir),
            alerts_log=absolute(cfg.paths.alerts_log),
            mlflow_dir=absolute(cfg.paths.mlflow_dir),
        )
    }
    if cfg.data.files is not None:
        files = cfg.data.files.model_copy(update={"landing_dir": absolute(cfg.data.files.landing_dir)})
        update["data"] = cfg.data.model_copy(update={"files": files})
    lift = cfg.model.lift_tests
    if lift is not None and lift.folder is not None:
        update["model"] = cfg.model.model_copy(
            update={"lift_tests": lift.model_copy(update={"folder": absolute(lift.folder)})}
        )
    plans_dir = cfg.decisions.planner.plans_dir
    if plans_dir is not None:
        planner = cfg.decisions.planner.model_copy(update={"plans_dir": absolute(plans_dir)})
        update["decisions"] = cfg.decisions.model_copy(update={"planner": planner})
    return cfg.model_copy(update=update)


class _TooDeep(yaml.composer.ComposerError):
    """A node nested deeper than :data:`MAX_YAML_DEPTH`; its ``problem_mark`` is where the limit is crossed."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error instead of "the last one wins",
    and that nesting deeper than :data:`MAX_YAML_DEPTH` is an error instead of a stack overflow."""

    def __init__(self, stream: object) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        """PyYAML's composer recurses once per level: count the levels and stop before Python's stack runs out."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooDeep(problem=f"nested more than {MAX_YAML_DEPTH} levels deep",
                               problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by the keys after it
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # the safe loader itself reports an unhashable key
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r}: give each key once (the second would silently replace the first)",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_raw(file: Path, seen: tuple[Path, ...] = ()) -> object:
    """The YAML mapping of ``file``; an ``extends: other.yaml`` key (relative to the file) merges it over another."""
    if not file.is_file():
        raise ConfigError(f"scenario configuration {file} does not exist (set {ENV_CONFIG} or pass another file)")
    if file.resolve() in seen:
        raise ConfigError(f"{file}: 'extends' forms a cycle through {', '.join(map(str, seen))}")
    try:
        with file.open(encoding="utf-8") as stream:  # error marks then name the file
            raw = yaml.load(stream, Loader=_UniqueKeyLoader)
    except _TooDeep as err:
        mark = err.problem_mark
        raise ConfigError(
            f"{file}: line {mark.line + 1}, column {mark.column + 1}: the settings are nested more than "
            f"{MAX_YAML_DEPTH} levels deep (a scenario needs fewer than 10); check the indentation and the brackets"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{file} is not valid YAML: {err}") from None
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    base = _read_raw(file.parent / str(raw.pop("extends")), (*seen, file.resolve()))
    if not isinstance(base, dict):
        raise ConfigError(f"{file}: the file it extends is not a mapping of settings")
    return merged(base, raw)


def load_config(path: str | os.PathLike[str]) -> MMMConfig:
    """Load and validate one scenario file; relative paths in it are relative to the project folder."""
    file = Path(path)
    try:
        return parse_config(_read_raw(file), source=str(file), root=project_root_for(file))
    except RecursionError:  # nesting built without deep indentation (aliases of aliases, long `extends` chains)
        raise ConfigError(
            f"{file}: nested too deeply to read (Python's recursion limit was reached); keep the settings within "
            f"{MAX_YAML_DEPTH} levels, without aliases (*name) nested into each other or a long chain of 'extends'"
        ) from None
