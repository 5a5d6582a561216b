"""Read an image folder ``root/{train,test}/<class>/<image files>`` into memory, so that no input can mislabel.

``read_image_folder(root, split)`` returns ``(uint8 images (N, H, W[, C]), int64 labels (N,))``. The class
indices are those of the train split's sorted class folders (CIFAR-10's ten names sort into its official
numbering), for the test split too. What it refuses, each with one line that names the path and the fix:

- a root that does not exist or is a file, a missing split folder, a split folder with no class folders;
- a test class that train does not have, an empty class folder (a train class absent from test is allowed);
- a link to a folder (it could loop, or lead into another class), a link to a file outside its class folder, and a
  file seen twice in one split (two links to it, or hard links);
- a file in a class folder that is not an image (by its extension: ``IMAGE_EXTENSIONS``; hidden files such as
  ``.DS_Store`` are skipped), an image directly in a split folder (other files there are ignored),
  a zero-byte, truncated, corrupt or unreadable image;
- images of different sizes when no ``size`` is given.

Every image is converted to ``mode``: "RGB" (grey repeated, an alpha channel dropped) or "L" (grey). Decoding shows
progress and happens once: the decoded arrays are cached by ``pdrl.data.decode_cache``, keyed on every file's path,
size and modification time and on the settings, so a changed folder is decoded afresh. A bad file raises before
anything is cached.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pdrl.data import decode_cache
from pdrl.errors import ConfigError, DataFileError, MissingDataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
MODES = ("L", "RGB")


def check_root(root: str | os.PathLike, what: str = "The image folder") -> Path:
    """``root`` as a Path, or a one-line error when it does not exist or is a file."""
    path = Path(root).expanduser()
    if path.is_file():
        raise ConfigError(
            f"{what} {path} is a file, not a folder: give the folder that holds train/<class>/ and test/<class>/."
        )
    if not path.is_dir():
        raise MissingDataError(
            f"{what} {path} does not exist: give the folder that holds train/<class>/ and test/<class>/ "
            "(e.g. --data.root path/to/CIFAR-10-images)."
        )
    return path


def is_image_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` has the image-folder layout (a ``train`` folder beside a ``test`` folder)."""
    return all((Path(root) / split).is_dir() for split in SPLITS)


def class_names(root: str | os.PathLike) -> list[str]:
    """The sorted class folders of ``root/train``: their positions are the labels of both splits."""
    folder = _split_folder(check_root(root), "train")
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DataFileError(f"{folder} has no class folders: put each class's images in {folder}/<class name>/.")
    return names


def _split_folder(root: Path, split: str) -> Path:
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is unknown: choose one of {SPLITS}.")
    folder = root / split
    if not folder.is_dir():
        raise MissingDataError(
            f"{folder} does not exist: an image folder needs {root}/train/<class name>/<image files> and "
            f"{root}/test/<class name>/<image files>."
        )
    return folder


def list_images(root: str | os.PathLike, split: str) -> list[tuple[Path, int]]:
    """``(path, label)`` of every image in ``root/<split>/<class>/`` (sub-folders included), sorted by path."""
    root = check_root(root)
    names = class_names(root)
    folder = _split_folder(root, split)
    present = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise ConfigError(
            f"{folder} has classes {unknown} that {root / 'train'} does not have: the probe cannot be trained on "
            "them; add them to train or remove them from test."
        )
    for entry in os.scandir(folder):
        if not entry.is_dir() and entry.name.lower().endswith(IMAGE_EXTENSIONS):  # other files there are ignored
            raise DataFileError(
                f"{entry.path} lies directly in {folder}, outside every class folder, so it has no label: move it "
                f"into {folder}/<class name>/ or remove it."
            )
    absent = sorted(set(names) - set(present))
    if absent:
        warnings.warn(
            f"{folder} has no images of classes {absent}; its labels keep the train split's numbering.", stacklevel=3
        )
    samples: list[tuple[Path, int]] = []
    seen: dict[tuple[int, int], Path] = {}
    for label, name in enumerate(names):
        if name in present:
            samples += _class_images(folder / name, label, seen)
    return samples


def _class_images(class_folder: Path, label: int, seen: dict[tuple[int, int], Path]) -> list[tuple[Path, int]]:
    real_class_folder = class_folder.resolve()
    if class_folder.is_symlink():
        raise DataFileError(_folder_link_message(class_folder))
    samples = []
    for folder, subfolders, files in os.walk(class_folder, followlinks=False):
        subfolders.sort()
        for subfolder in subfolders:
            if (Path(folder) / subfolder).is_symlink():
                raise DataFileError(_folder_link_message(Path(folder) / subfolder))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_class_folder):
                    raise DataFileError(
                        f"{path} is a link that leads out of its class folder {class_folder} (to {target}): the "
                        "image would be labelled as this class; copy the file here or remove the link."
                    )
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                raise DataFileError(
                    f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)}): move it out of the class folder "
                    "or remove it."
                )
            try:
                status = path.stat()
            except OSError as error:  # a link to nothing
                raise DataFileError(f"{path} cannot be read ({error.strerror}): fix or remove it.") from error
            identity = (status.st_dev, status.st_ino)
            if identity in seen:
                raise DataFileError(
                    f"{path} is the same file as {seen[identity]} (a link or a hard link): each image may be seen "
                    "once in a split; remove one of them."
                )
            seen[identity] = path
            samples.append((path, label))
    if not samples:
        raise DataFileError(f"{class_folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add some or remove it.")
    return samples


def _folder_link_message(path: Path) -> str:
    return (
        f"{path} is a link to a folder: pdrl does not follow folder links in an image folder (they can loop or lead "
        "into another class); replace it by the files themselves or remove it."
    )


def decode_image(path: Path, mode: str, size: int | None) -> np.ndarray:
    """One image file as a uint8 array in ``mode``, resized to ``size`` x ``size`` (bilinear) when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            raise DataFileError(f"{path} is empty (0 bytes): replace it with the real image or remove it.")
        with Image.open(path) as image:
            image.load()  # decodes the whole file: a truncated image fails here, not later
            image = image.convert(mode)
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except PermissionError as error:
        raise DataFileError(f"{path} cannot be read (permission denied): make it readable or remove it.") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DataFileError):
            raise
        reason = "not an image PIL can read" if isinstance(error, UnidentifiedImageError) else str(error)
        raise DataFileError(
            f"{path} is a truncated or corrupt image ({reason}): replace it with a good copy or remove it."
        ) from error


def decode_images(samples: list[tuple[Path, int]], mode: str, size: int | None, what: str) -> np.ndarray:
    """Every sample's image, stacked: all of one size (the first image's) unless ``size`` resizes them."""
    from tqdm.auto import tqdm

    images = []
    first: tuple[Path, tuple[int, ...]] | None = None
    for path, _ in tqdm(samples, desc=f"decoding {what}", unit="img", mininterval=1.0, file=sys.stderr, disable=None):
        image = decode_image(path, mode, size)
        if first is None:
            first = (path, image.shape)
        elif image.shape != first[1]:
            raise ConfigError(
                f"{path} is {_size(image.shape)} but {first[0]} is {_size(first[1])}: images of one folder must have "
                "one size; set image_size to resize them all, or remove the odd ones."
            )
        images.append(image)
    return np.stack(images)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" + (f"x{shape[2]}" if len(shape) == 3 else "")


def read_image_folder(
    root: str | os.PathLike, split: str, mode: str = "RGB", size: int | None = None, cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uint8 images (N, H, W) for "L" or (N, H, W, 3) for "RGB", int64 labels)`` of one split of an image
    folder (see the module docstring); decoded once, then read from ``pdrl.data.decode_cache``."""
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is unknown: choose 'L' (grey) or 'RGB'.")
    samples = list_images(root, split)
    labels = np.array([label for _, label in samples], dtype=np.int64)
    what = f"{len(samples)} images of {Path(root) / split}"
    key = decode_cache.key(samples, {"mode": mode, "size": size}) if cache else None
    started = time.perf_counter()
    images = decode_cache.load(key, labels) if key else None
    if images is not None:
        _say(f"read {what} from the decode cache in {time.perf_counter() - started:.1f} s")
    else:
        images = decode_images(samples, mode, size, what)
        saved = decode_cache.save(key, images, labels) if key else None
        _say(f"decoded {what} in {time.perf_counter() - started:.1f} s" + (f"; cached in {saved}" if saved else ""))
    return torch.from_numpy(images), torch.from_numpy(labels)


def _say(text: str) -> None:
    from pdrl import distributed

    if distributed.rank() == 0:
        print(f"pdrl: {text}", file=sys.stderr, flush=True)
