"""Checks of downloaded data files: each failure is one line that names the file, says what is wrong and what to do.

torchvision's idx datasets (MNIST, FashionMNIST) keep four files in ``root/<Name>/raw``: the images and the labels of
the train and the test split, each an idx file (a big-endian header, magic number 0x803 for images or 0x801 for
labels, then one uint32 per dimension, then the uint8 data) that torchvision extracts from a ``.gz`` whose md5 it
lists in ``<Name>.resources``. ``check_idx_dataset`` tells apart

- a file that is missing (neither it nor its ``.gz`` is there): ``MissingDataError`` listing only those files;
- an idx file that is truncated, too long, or not an idx file: ``DataFileError``;
- a ``.gz`` that is not a readable gzip file (a cut download): ``DataFileError``;
- a readable ``.gz`` whose md5 is not torchvision's (another dataset's file, or a re-compressed one): ``DataFileError``,

and extracts a ``.gz`` with torchvision's md5 when the idx file is missing, locally, as torchvision's download would.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
import zlib
from pathlib import Path

from pdrl.errors import DataFileError, MissingDataError

IDX_DIMENSIONS = {0x801: 1, 0x803: 3}  # unsigned-byte idx files: labels (N,), images (N, H, W)
DOWNLOAD_HINT = "or run once with download=True on a machine with internet access"


def missing_data_error(name: str, root: str, missing: list[str], total: int, cause: Exception | None = None):
    """The error for the files of ``name`` under ``root`` that are not there (``missing``, of ``total``)."""
    reason = f" and downloading failed ({type(cause).__name__}: {str(cause).strip().splitlines()[0]})" if cause else ""
    where = ", ".join(os.path.join(root, file) for file in missing)
    whole = (
        f"{name} is not under root={root!r}"
        if len(missing) == total
        else (f"{name} under root={root!r} lacks {len(missing)} of its {total} files")
    )
    error = MissingDataError(f"{whole}{reason}. Put these files there ({DOWNLOAD_HINT}): {where}")
    error.files = missing
    return error


def idx_shape(path: Path) -> tuple[int, ...]:
    """The shape an idx file's header declares, after checking that the file holds exactly that much data."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) >= 4 and struct.unpack(">I", head[:4])[0] in IDX_DIMENSIONS:
            head += file.read(4 * IDX_DIMENSIONS[struct.unpack(">I", head[:4])[0]] - 4)
    fix = "delete it and put the complete file (or its .gz) there, " + DOWNLOAD_HINT
    if len(head) < 4:
        raise DataFileError(f"{path} is truncated: {size} bytes, shorter than an idx header; {fix}.")
    magic = struct.unpack(">I", head[:4])[0]
    if magic not in IDX_DIMENSIONS:
        raise DataFileError(
            f"{path} is not an idx file: its magic number is {magic:#x}, not 0x803 (images) or 0x801 (labels) "
            f"(a .gz renamed, or another format?); {fix}."
        )
    dimensions = IDX_DIMENSIONS[magic]
    if len(head) < 4 + 4 * dimensions:
        raise DataFileError(f"{path} is truncated: {size} bytes, shorter than its idx header; {fix}.")
    shape = struct.unpack(f">{dimensions}I", head[4 : 4 + 4 * dimensions])
    expected = 4 + 4 * dimensions + math.prod(shape)
    if size < expected:
        raise DataFileError(
            f"{path} is truncated: its header declares shape {shape} ({expected} bytes) but it has {size} bytes; {fix}."
        )
    if size > expected:
        raise DataFileError(
            f"{path} is {size - expected} bytes longer than its header's shape {shape} ({expected} bytes): "
            f"it is damaged; {fix}."
        )
    return shape


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_gz(path: Path, expected_md5: str, name: str) -> None:
    """Raise ``DataFileError`` unless the ``.gz`` has torchvision's md5; says whether it is corrupt or another file."""
    actual = md5(path)
    if actual == expected_md5:
        return
    fix = f"delete it and run once with download=True, or put the official {path.name} there"
    try:
        with gzip.open(path, "rb") as file:
            while file.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(
            f"{path} is not a readable gzip file ({type(error).__name__}: {error}): the download was cut short or "
            f"the file is damaged; {fix}."
        ) from error
    raise DataFileError(
        f"{path} has md5 {actual}, not the {expected_md5} that torchvision lists for {name}: it is another file "
        f"(another dataset's, or re-compressed); {fix}."
    )


def extract_gz(path: Path, target: Path) -> None:
    """Decompress ``path`` to ``target`` through a temporary file, so that a killed extraction leaves no half file."""
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with gzip.open(path, "rb") as source, open(temporary, "wb") as destination:
        shutil.copyfileobj(source, destination, 1 << 20)
    os.replace(temporary, target)


def check_idx_dataset(dataset_class: type, root: str) -> None:
    """Check (and extract from verified ``.gz`` files) the idx files of a torchvision dataset class under ``root``.

    Raises ``DataFileError`` for the first file that is there but unusable, then ``MissingDataError`` listing the
    files that are missing (a file counts as there when either it or its ``.gz`` is).
    """
    name = dataset_class.__name__
    raw = Path(root) / name / "raw"
    missing, shapes = [], {}
    for gz_name, expected_md5 in dataset_class.resources:
        file = raw / gz_name.removesuffix(".gz")
        if not file.is_file():
            gz = raw / gz_name
            if not gz.is_file():
                missing.append(f"{name}/raw/{file.name}")
                continue
            check_gz(gz, expected_md5, name)
            extract_gz(gz, file)
        shapes[file.name] = idx_shape(file)
    if missing:
        raise missing_data_error(name, root, missing, len(dataset_class.resources))
    for images, labels in ((f, f.replace("-images-idx3-", "-labels-idx1-")) for f in shapes if "-images-" in f):
        if labels in shapes and shapes[images][0] != shapes[labels][0]:
            raise DataFileError(
                f"{raw / images} has {shapes[images][0]} images but {raw / labels} has {shapes[labels][0]} labels: "
                f"the two files are from different downloads; replace both ({DOWNLOAD_HINT})."
            )
