"""The landing folder as the sensor watches it: which files are new or changed by content (SHA-256), and for each
the markets it feeds or why it is rejected. Plain Python; the landing-file sensor turns a scan into runs,
partitions and alerts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mmm_assets.core.config import MMMConfig
from mmm_assets.core.data.ingest import SUPPORTED_SUFFIXES
from mmm_assets.core.data.inputs import check_landing_file
from mmm_assets.core.errors import InputError


@dataclass
class Accepted:
    """A new or changed landing file that passed the input checks: one refresh per market."""

    name: str
    sha256: str
    markets: list[str]


@dataclass
class Scan:
    """What one look at the landing folder found."""

    #: {file name: sha256} of every file handled: the sensor's next cursor.
    cursor: dict[str, str] = field(default_factory=dict)
    accepted: list[Accepted] = field(default_factory=list)
    #: {file name: (sha256, the problem)} of new or changed files that failed the checks.
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Why files were left for the next look (vanished, unreadable).
    notes: list[str] = field(default_factory=list)


def read_cursor(cursor: str | None) -> dict[str, str]:
    """The cursor as {file name: sha256}; an empty or unreadable cursor counts as nothing seen yet."""
    try:
        seen = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}
    return seen if isinstance(seen, dict) else {}


def sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, hex, read block by block (a landing file may be hundreds of MB)."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def landing_names(folder: Path) -> list[str]:
    """The .csv / .parquet files in ``folder``, by name; raises OSError when it cannot be listed."""
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file())


def scan(cfg: MMMConfig, seen: dict[str, str]) -> Scan:
    """Check every file of the scenario's landing folder whose content is not the one in ``seen``; raises OSError
    when the folder cannot be listed. A file that cannot be read now is left for the next look."""
    assert cfg.data.files is not None
    folder = cfg.data.files.landing_dir
    found = Scan()
    for name in landing_names(folder):
        try:
            digest = sha256(folder / name)
            changed = seen.get(name) != digest
            markets, problem = check_landing_file(cfg, name) if changed else [], None
        except InputError as err:
            markets, problem = [], str(err)
        except OSError as err:  # vanished or unreadable since the listing: look again next time
            found.notes.append(f"{name} could not be read ({err.strerror or type(err).__name__})")
            if name in seen:
                found.cursor[name] = seen[name]
            continue
        found.cursor[name] = digest
        if not changed:
            continue
        if problem is None:
            found.accepted.append(Accepted(name, digest, markets))
        else:
            found.rejected[name] = (digest, problem)
    return found
