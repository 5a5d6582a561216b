"""The paired-view vectors of ``bench/retrieval_real.py``: each image of MNIST or CIFAR-10 is a "word", its top half
the "audio" vector and its bottom half the "text" vector, each reduced to ``dim`` values by a PCA fitted on the
selected train images only, written as two word2vec-format ``.vec`` files, a test-words file and a manifest of the
settings (the files are reused while the settings are the same). ``shuffle_pairs`` permutes the bottom halves by a
derangement within each split: the chance-level control.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "cifar10")
PAPER_NUM_TRAIN, PAPER_NUM_TEST = 32605, 5000  # 37605 aligned words, 5000 held out
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")
SPLITS = ("train", "test")
FORMAT_VERSION = 1  # bump when the written vectors change for the same settings
SHUFFLED = "_shuffled"


# ----------------------------------------------------------------------------------------------------------------------
# Images


def mnist_images(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """MNIST's two splits, uint8 ``(N, 28, 28, 1)``, read by torchvision from ``root/MNIST/raw`` (no download)."""
    from torchvision.datasets import MNIST

    images = {}
    for split in SPLITS:
        try:
            dataset = MNIST(os.fspath(root), train=split == "train", download=False)
        except RuntimeError as error:
            raise SystemExit(
                f"retrieval_real: no MNIST under {root} ({error}); --root must hold MNIST/raw/ with the idx files."
            ) from None
        images[split] = dataset.data.numpy()[..., None]
    return images


def cifar_folder(root: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """The CIFAR-10 image folder: ``folder`` when given, else ``root/CIFAR-10-images``, else ``root`` itself."""
    candidates = [Path(folder)] if folder is not None else [Path(root) / "CIFAR-10-images", Path(root)]
    for candidate in candidates:
        if all((candidate / split).is_dir() for split in SPLITS):
            return candidate
    raise SystemExit(
        f"retrieval_real: no CIFAR-10 image folder ({' or '.join(map(str, candidates))} with train/<class>/ and "
        "test/<class>/); give --root holding CIFAR-10-images/, or --cifar-folder."
    )


def image_files(folder: Path, split: str) -> list[Path]:
    """The image files of ``folder/split/<class>/``: classes sorted, then file names sorted; a file's position in
    this list is its index (the number in its word)."""
    split_folder = folder / split
    files = []
    for class_folder in sorted(p for p in split_folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files += sorted(
            p for p in class_folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )  # fmt: skip
    if not files:
        raise SystemExit(f"retrieval_real: {split_folder} has no images in class folders.")
    return files


def decode(files: list[Path]) -> np.ndarray:
    """The RGB images of ``files`` as uint8 ``(N, H, W, 3)``; all must have the size of the first."""
    from PIL import Image

    images = []
    for path in files:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        if images and array.shape != images[0].shape:
            raise SystemExit(f"retrieval_real: {path} is {array.shape}, the first image {images[0].shape}.")
        images.append(array)
    return np.stack(images)


def select(num_images: int, number: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``number`` of ``num_images`` images drawn by ``seed`` (all when ``number`` is None or
    not smaller)."""
    import torch

    if number is None or number >= num_images:
        return np.arange(num_images)
    if number < 1:
        raise SystemExit(f"retrieval_real: cannot select {number} images.")
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))[:number]
    return np.sort(order.numpy())


def halves(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom halves of uint8 ``(N, H, W, C)`` images as float32 ``(N, H/2 * W * C)``, pixels / 255."""
    height = images.shape[1]
    if height % 2:
        raise SystemExit(f"retrieval_real: images of odd height {height} have no two equal halves.")
    scaled = images.astype(np.float32) / 255.0
    top, bottom = scaled[:, : height // 2], scaled[:, height // 2 :]
    return top.reshape(len(images), -1), bottom.reshape(len(images), -1)


def pca_vectors(train: np.ndarray, test: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``dim``-d PCA coordinates of the train and the test rows, the PCA fitted on the train rows only."""
    from sklearn.decomposition import PCA

    if dim > min(train.shape):
        raise SystemExit(f"retrieval_real: a {dim}-d PCA needs at least {dim} train rows and columns: {train.shape}.")
    pca = PCA(n_components=dim, svd_solver="full").fit(train)
    return pca.transform(train).astype(np.float32), pca.transform(test).astype(np.float32)


def derangement(num: int, seed: int) -> np.ndarray:
    """A permutation ``p`` of ``range(num)`` with ``p[i] != i`` for every i: one random cycle over all of them."""
    import torch

    if num < 2:
        raise SystemExit(f"retrieval_real: {num} vector(s) cannot be shuffled so that every pair breaks.")
    order = torch.randperm(num, generator=torch.Generator().manual_seed(seed)).numpy()
    permutation = np.empty(num, dtype=np.int64)
    permutation[order] = np.roll(order, -1)  # order[k] takes the vector of order[k + 1]
    return permutation


# ----------------------------------------------------------------------------------------------------------------------
# The .vec files


def word(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def write_vector_files(
    root: str | os.PathLike,
    data: str,
    out: str | os.PathLike,
    *,
    dim: int = 100,
    num_train: int | None = PAPER_NUM_TRAIN,
    num_test: int | None = PAPER_NUM_TEST,
    subset_seed: int = 0,
    shuffle_pairs: bool = False,
    shuffle_seed: int = 0,
    cifar_folder_path: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Write ``top.vec`` ("audio"), ``bottom.vec`` ("text") and ``test_words.txt`` into ``out`` (reused when its
    ``manifest.json`` has the same settings); return their paths and the manifest's path.

    Words are listed train images first, then test images, each in index order. With ``shuffle_pairs`` the bottom
    vectors are permuted by a derangement within the train words and within the test words.
    """
    from pdrl.data.word_vectors import write_word_vectors

    out = Path(out)
    if data not in DATASETS:
        raise SystemExit(f"retrieval_real: --data {data!r} is not one of {DATASETS}.")
    settings = {
        "format_version": FORMAT_VERSION, "data": data, "dim": dim, "num_train": num_train, "num_test": num_test,
        "subset_seed": subset_seed, "shuffle_pairs": shuffle_pairs, "shuffle_seed": shuffle_seed if shuffle_pairs
        else None,
    }  # fmt: skip
    if data == "cifar10":
        settings["source"] = str(cifar_folder(root, cifar_folder_path).resolve())
    else:
        settings["source"] = str((Path(root) / "MNIST" / "raw").resolve())
    paths = {
        "audio": str(out / "top.vec"), "text": str(out / "bottom.vec"), "test_words": str(out / "test_words.txt"),
        "manifest": str(out / "manifest.json"),
    }  # fmt: skip
    if Path(paths["manifest"]).is_file() and all(Path(p).is_file() for p in paths.values()):
        if json.loads(Path(paths["manifest"]).read_text()).get("settings") == settings:
            print(f"retrieval_real: reusing the vector files in {out}", flush=True)
            return paths

    start = time.time()
    if data == "mnist":
        images = mnist_images(root)
        chosen = {
            "train": select(len(images["train"]), num_train, subset_seed),
            "test": select(len(images["test"]), num_test, subset_seed),
        }
        pixels = {split: images[split][chosen[split]] for split in SPLITS}
    else:
        folder = cifar_folder(root, cifar_folder_path)
        files = {split: image_files(folder, split) for split in SPLITS}
        chosen = {
            "train": select(len(files["train"]), num_train, subset_seed),
            "test": select(len(files["test"]), num_test, subset_seed),
        }
        print(f"retrieval_real: decoding {sum(map(len, chosen.values()))} images of {folder}", flush=True)
        pixels = {split: decode([files[split][i] for i in chosen[split]]) for split in SPLITS}

    top, bottom = {}, {}
    for split in SPLITS:
        top[split], bottom[split] = halves(pixels[split])
    top["train"], top["test"] = pca_vectors(top["train"], top["test"], dim)
    bottom["train"], bottom["test"] = pca_vectors(bottom["train"], bottom["test"], dim)
    if shuffle_pairs:
        for offset, split in enumerate(SPLITS):
            bottom[split] = bottom[split][derangement(len(bottom[split]), shuffle_seed + offset)]

    import torch

    words = [word(split, int(index)) for split in SPLITS for index in chosen[split]]
    out.mkdir(parents=True, exist_ok=True)
    Path(paths["manifest"]).unlink(missing_ok=True)  # half-written files are never reused
    write_word_vectors(paths["audio"], words, torch.from_numpy(np.concatenate([top["train"], top["test"]])))
    write_word_vectors(paths["text"], words, torch.from_numpy(np.concatenate([bottom["train"], bottom["test"]])))
    Path(paths["test_words"]).write_text("".join(word("test", int(i)) + "\n" for i in chosen["test"]))
    manifest = {
        "settings": settings, "num_train_words": len(chosen["train"]), "num_test_words": len(chosen["test"]),
        "half_pixels": int(pixels["train"][0].size // 2), "seconds": round(time.time() - start, 1),
    }  # fmt: skip
    Path(paths["manifest"]).write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"retrieval_real: wrote {len(words)} words x {dim} to {out} in {manifest['seconds']} s", flush=True)
    return paths
