"""A cache of decoded image folders, so that the second start of a run reads arrays instead of 60000 JPEGs.

One ``.npy`` file of uint8 images per decoded split, named by a hash of every file's path, size and modification
time, its label, and the decoding settings: a file added, removed, renamed, relabelled or rewritten gives another
key, so a changed folder is decoded afresh and never read stale. The folder is ``$PDRL_CACHE_DIR`` when set, else
``$XDG_CACHE_HOME/pdrl/decoded`` (``~/.cache/pdrl/decoded``); deleting it (or any file in it) is always safe.
``PDRL_CACHE_DIR=off`` turns the cache off. Files are written atomically (a temporary file, then a rename), so an
interrupted write never leaves a file that a later start would read.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

VERSION = 1  # part of every key: a change of the decoding code makes old entries unused


def folder() -> Path | None:
    """The cache folder, or None when ``PDRL_CACHE_DIR=off``."""
    configured = os.environ.get("PDRL_CACHE_DIR")
    if configured == "off":
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pdrl" / "decoded"


def key(samples: list[tuple[Path, int]], settings: dict) -> str | None:
    """The cache key of these ``(path, label)`` samples decoded with ``settings``; None when the cache is off."""
    if folder() is None:
        return None
    digest = hashlib.sha256(json.dumps({"version": VERSION, "settings": settings}, sort_keys=True).encode())
    for path, label in samples:
        status = path.stat()
        digest.update(f"{path.resolve()}\0{status.st_size}\0{status.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()[:32]


def _path(cache_key: str) -> Path:
    return folder() / f"{cache_key}.npy"


def load(cache_key: str, labels: np.ndarray) -> np.ndarray | None:
    """The cached images of ``cache_key``, or None when there are none (or the entry is unreadable: it is removed,
    with a warning, and the folder decoded again)."""
    path = _path(cache_key)
    if not path.is_file():
        return None
    try:
        images = np.load(path, allow_pickle=False)
        if images.dtype != np.uint8 or len(images) != len(labels):
            raise ValueError(f"holds {images.dtype} {images.shape}, expected {len(labels)} uint8 images")
        return images
    except (OSError, ValueError) as error:
        warnings.warn(f"The decode cache entry {path} is unreadable ({error}); removed, decoding again.", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def save(cache_key: str, images: np.ndarray, labels: np.ndarray) -> Path | None:
    """Write ``images`` under ``cache_key``; returns the file, or None (with a warning) when it cannot be written."""
    path = _path(cache_key)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            np.save(file, images, allow_pickle=False)
        os.replace(temporary, path)
        return path
    except OSError as error:
        temporary.unlink(missing_ok=True)
        warnings.warn(
            f"Could not write the decode cache {path} ({error.strerror}); the images will be decoded again next "
            "time. Set PDRL_CACHE_DIR to a writable folder (or to 'off').",
            stacklevel=2,
        )
        return None
