"""Saving and loading fitted models: the netCDF built in memory, written atomically and durably, loaded once.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path

from pymc_marketing.mmm import MMM

from mmm_assets.core.modelling import panel  # noqa: F401  (a pooled model's padded likelihood, so its file loads)
from mmm_assets.core.stores.duckdb_store import MODELS_ROLE, ensure_free_space, no_room_is_disk_space_error
from mmm_assets.core.variables import ORIGINAL_SCALE_SUFFIX

#: netCDF writer of the saved models: h5netcdf (with h5py) is the one the pinned stack installs (netCDF4 is not).
NETCDF_ENGINE = "h5netcdf"

def save_model(mmm: MMM, path: Path, min_free_mb: float = 0.0) -> Path:
    """Write the fitted model's netCDF to ``path`` atomically and durably, or fail cleanly with ``DiskSpaceError``.

    The netCDF is built in memory (:func:`netcdf_bytes`), so HDF5 never writes to the disk. When PyMC-Marketing's
    ``mmm.save`` hit ENOSPC, h5netcdf's half-written file stayed open, held by the error's traceback; freeing it
    later (h5netcdf's ``__del__`` closes it, and closing flushes into HDF5's broken state) crashed the process with
    a segmentation fault: on a 15 MB tmpfs, and in the pipeline on the step's automatic retry (h5py issue #914).
    Knowing the exact size also lets the free space be checked before anything is written: the disk must hold the
    file and still keep ``min_free_mb`` (`operations.min_free_disk_mb`). The bytes are then written with plain file
    I/O (:func:`write_atomically`); a disk that fills up meanwhile gives a ``DiskSpaceError`` naming the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(f"{path} already exists; model files are never overwritten")
    data = netcdf_bytes(mmm)
    ensure_free_space({MODELS_ROLE: path.parent}, min_free_mb, new_file_bytes=len(data))
    with no_room_is_disk_space_error(MODELS_ROLE, path.parent, min_free_mb):
        write_atomically(path, data)
    return path

def netcdf_bytes(mmm: MMM) -> bytes:
    """The netCDF file that ``mmm.save`` would write, built in memory: no native library touches the disk.

    Written into a buffer of our own and returned as immutable ``bytes``, not as the memoryview that ``to_netcdf()``
    returns without a target: that is a view of xarray's ``BytesIO``, and after a failed write (whose traceback is
    a reference cycle holding slices of the view) the garbage collector freed the ``BytesIO`` before the views
    ("deallocated BytesIO object has exported buffers") and the process crashed with a segmentation fault.
    """
    _prepare_for_save(mmm)
    buffer = io.BytesIO()
    mmm.idata.to_netcdf(buffer, engine=NETCDF_ENGINE)
    return buffer.getvalue()

def _prepare_for_save(mmm: MMM) -> None:
    """What PyMC-Marketing 1.3's ``MMM.save`` adds to the inference data before writing it, so that ``MMM.load``
    rebuilds the same model: the mu effects' own groups and the base names of the original-scale deterministics.
    (``test_model.py`` compares the result with the library's own save.)"""
    if mmm.idata is None or "posterior" not in mmm.idata:
        raise RuntimeError("the model has not been fitted: there is no posterior to save")
    for effect in mmm.mu_effects:
        for group, dataset in effect.idata_groups().items():
            if not hasattr(mmm.idata, group):
                mmm.idata["/" + group] = dataset
    original_scale = [
        name.removesuffix(ORIGINAL_SCALE_SUFFIX)
        for name in mmm.model.named_vars
        if name.endswith(ORIGINAL_SCALE_SUFFIX)
        and (name.removesuffix(ORIGINAL_SCALE_SUFFIX).endswith("_contribution")
             or name.removesuffix(ORIGINAL_SCALE_SUFFIX) == mmm.output_var)
    ]
    mmm.idata.attrs["original_scale_vars"] = json.dumps(original_scale)

def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a hidden temporary in the same folder, fsynced, renamed to
    ``path``, then the folder fsynced so the rename survives a power cut too. Any failure (or a kill) before the
    rename leaves no file under ``path``; a failure removes the temporary."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".nc.tmp", dir=path.parent)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)

def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``: ``os.write`` may write fewer bytes than asked (a signal, a size
    limit, Linux's ~2 GiB cap per call), and the next call then reports the error, e.g. ENOSPC or EFBIG."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

def load_model(path: Path | str) -> MMM:
    """The fitted model saved at ``path``. Model files are immutable, so a process loads each one once."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file {path} does not exist (was the models directory cleaned?)")
    return _load(str(Path(path).resolve()))

@functools.lru_cache(maxsize=2)
def _load(path: str) -> MMM:
    return MMM.load(path)
