"""Output files: refuse a location that cannot be written before any long work, then write files atomically.

A command that trains for an hour, or runs thousands of LPs, and only then finds that its output folder is
read-only (or lies under a regular file) has wasted the hour. The commands call :func:`check_writable_folder` /
:func:`check_writable_file` first. The check *tries* to create a file there instead of reading permission bits:
that also covers read-only file systems, ACLs and root (which ignores permission bits but not a read-only mount).

Every output file is written through :func:`atomic_write` (a temporary file in the same folder, then
``os.replace``), so a kill or a full disk never leaves half a report, certificate or training record; JSON reports go
through :func:`write_json`. This module imports only the standard library and numpy.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


class OutputLocationError(ValueError):
    """An output file or folder that cannot be written; the message names the path and what to do."""


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``Path.exists`` is False under a regular file, too)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def check_writable_folder(folder: str | os.PathLike, *, option: str) -> None:
    """Raise :class:`OutputLocationError` unless files can be created in ``folder`` (made later if missing).

    ``option`` names where the path came from (``"--output-dir"``, ``"CHECKPOINT"``) for the message. A missing
    folder is checked at its nearest existing ancestor, which must be a folder. Nothing is left behind: the probe
    file is removed at once.
    """
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        where = "is" if existing == folder else f"would be created under {existing}, which is"
        raise OutputLocationError(
            f"{option} {folder} {where} a file, not a folder: choose another {option} (a folder that exists or can "
            "be created)."
        )
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".hf-dft-write-check-")
    except OSError as error:
        missing = "" if existing == folder else f" (it does not exist yet; {existing} is where it would be created)"
        raise OutputLocationError(
            f"{option} {folder}: cannot create files in {existing}{missing}: {error.strerror or error}. Make it "
            f"writable (e.g. chmod u+w {existing}) or choose another {option}."
        ) from None
    os.close(handle)
    os.unlink(probe)


def check_writable_file(path: str | os.PathLike, *, option: str) -> None:
    """Raise :class:`OutputLocationError` unless ``path`` can be written as a file (its folder is checked too)."""
    path = Path(path)
    if path.is_dir():
        raise OutputLocationError(f"{option} {path} is a folder; give a file path (e.g. {path / 'report.json'}).")
    check_writable_folder(path.parent, option=option)


def check_removable_tree(folder: str | os.PathLike, *, option: str) -> None:
    """Raise :class:`OutputLocationError` unless every entry below ``folder`` could be deleted.

    Deleting an entry needs read, write and search permission on the folder holding it. Checking all of them first
    means a refused ``--overwrite`` deletes nothing, rather than half of the old run.
    """
    for root, dirs, _ in os.walk(folder):
        for name in [".", *dirs]:
            path = os.path.normpath(os.path.join(root, name))
            if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise OutputLocationError(
                    f"{option} {folder}: {path} is not writable, so the old run cannot be removed; make it writable "
                    f"(chmod -R u+w {folder}) or choose another {option}."
                )


def new_file_mode(path: str | os.PathLike) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's mode, else ``0o666`` less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write through a temporary file in the same folder and ``os.replace`` it: never leaves a half file.

    The file gets the mode a plain ``open(path, "w")`` would give it (the old file's, else 0o666 less the umask),
    not the 0600 of the temporary file: a certificate is meant to be read by others. A file system error becomes
    an :class:`OutputLocationError` (a ValueError) naming the path.
    """
    try:
        mode = new_file_mode(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        )
    except OSError as error:
        raise OutputLocationError(
            f"cannot write {path}: {error.strerror or error}; make its folder writable or write elsewhere."
        ) from None
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, mode)
        os.replace(handle.name, path)
    except BaseException as error:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputLocationError(f"cannot write {path}: {error.strerror or error}.") from None
        raise


def jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars converted)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_json(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + ``os.replace``)."""
    text = json.dumps(jsonable(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    path = Path(path)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
    return path


__all__ = [
    "OutputLocationError",
    "atomic_write",
    "check_removable_tree",
    "check_writable_file",
    "check_writable_folder",
    "jsonable",
    "new_file_mode",
    "write_json",
]
