"""Image folders that cannot mislabel: every bad input ends in one line naming the path (exit 2 through pdrl.fit),
decoding happens once through the decode cache, and the two CIFAR-10 layouts give the same views."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pdrl import fit
from pdrl.data import decode_cache, image_folder
from pdrl.data.image_folder import list_images, read_image_folder
from pdrl.data.images import CIFAR10_CLASSES, CIFAR10DataModule, ImageFolderDataModule
from pdrl.errors import ConfigError, DataFileError, MissingDataError, run_command
from tests.tiny_run import tiny_config, write_config

CLASSES = ("ant", "bee")


def grey(value: int, size: tuple[int, int] = (8, 8)) -> Image.Image:
    return Image.fromarray(np.full(size[::-1], value, dtype=np.uint8), mode="L")


def good_folder(root: Path, per_class: int = 4) -> Path:
    """train/{ant,bee} and test/{ant,bee}: 8x8 grey PNGs whose every pixel is 10 * class + index."""
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                grey(10 * label + index).save(folder / f"{index}.png")
    return root


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def remove_classes(split: str):
    def remove(root: Path) -> None:
        for path in root.glob(f"{split}/*/*"):
            path.unlink()
        for path in root.glob(f"{split}/*"):
            path.rmdir()

    return remove


# (case, how to spoil a good folder at root, text the error must contain ({root}: the folder), error class)
BAD_FOLDERS = [
    (
        "symlink loop in a class",
        lambda r: (r / "train/ant/loop").symlink_to(".."),
        "train/ant/loop is a link to a folder",
        DataFileError,
    ),
    (
        "class folder is a link",
        lambda r: (r / "train/cow").symlink_to(r / "train/ant"),
        "train/cow is a link to a folder",
        DataFileError,
    ),
    (
        "file link out of its class",
        lambda r: (r / "train/ant/x.png").symlink_to(r / "train/bee/0.png"),
        "train/ant/x.png is a link that leads out of its class folder",
        DataFileError,
    ),
    (
        "link to a file of the same class",
        lambda r: (r / "train/ant/x.png").symlink_to("0.png"),
        "is the same file as",
        DataFileError,
    ),
    (
        "hard link",
        lambda r: os.link(r / "train/ant/0.png", r / "train/ant/x.png"),
        "is the same file as",
        DataFileError,
    ),
    (
        "broken link",
        lambda r: (r / "train/ant/x.png").symlink_to("nothing.png"),
        "train/ant/x.png cannot be read",
        DataFileError,
    ),
    (
        "truncated image",
        lambda r: truncate(r / "train/bee/2.png"),
        "train/bee/2.png is a truncated or corrupt image",
        DataFileError,
    ),
    (
        "garbage image",
        lambda r: (r / "train/bee/2.png").write_bytes(b"not a png" * 20),
        "train/bee/2.png is a truncated or corrupt image (not an image PIL can read)",
        DataFileError,
    ),
    (
        "zero-byte image",
        lambda r: (r / "test/bee/1.png").write_bytes(b""),
        "test/bee/1.png is empty (0 bytes)",
        DataFileError,
    ),
    (
        "non-image file in a class",
        lambda r: (r / "train/ant/notes.txt").write_text("hi"),
        "train/ant/notes.txt is not an image file",
        DataFileError,
    ),
    (
        "image outside the class folders",
        lambda r: grey(0).save(r / "train/stray.png"),
        "train/stray.png lies directly in",
        DataFileError,
    ),
    ("empty class folder", lambda r: (r / "train/cow").mkdir(), "train/cow holds no images", DataFileError),
    ("test class unknown to train", lambda r: (r / "test/cow").mkdir(), "has classes ['cow'] that", ConfigError),
    ("mixed sizes", lambda r: grey(0, (9, 8)).save(r / "train/bee/1.png"), "train/bee/1.png is 9x8 but", ConfigError),
    ("no class folders", remove_classes("train"), "train has no class folders", DataFileError),
    (
        "missing test split",
        lambda r: remove_classes("test")(r) or (r / "test").rmdir(),
        "test does not exist",
        MissingDataError,
    ),
]


def read_both_splits(root: Path) -> None:
    for split in ("train", "test"):
        read_image_folder(root, split, "L")


@pytest.mark.parametrize(("spoil", "expected", "error"), [c[1:] for c in BAD_FOLDERS], ids=[c[0] for c in BAD_FOLDERS])
def test_a_bad_folder_is_refused_naming_the_path(tmp_path, spoil, expected, error) -> None:
    root = good_folder(tmp_path / "images")
    read_both_splits(root)  # good as made, and now in the decode cache
    spoil(root)
    with pytest.raises(error) as raised:
        read_both_splits(root)
    assert expected in str(raised.value), raised.value
    assert "\n" not in str(raised.value)


def test_a_missing_root_and_a_root_that_is_a_file(tmp_path) -> None:
    with pytest.raises(MissingDataError, match=f"The image folder {tmp_path / 'none'} does not exist: give the"):
        list_images(tmp_path / "none", "train")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=f"The image folder {tmp_path / 'file'} is a file, not a folder"):
        list_images(tmp_path / "file", "train")


def test_an_unreadable_image_is_named(tmp_path, monkeypatch) -> None:
    """Root reads every file whatever its mode bits, so the refusal is simulated where PIL opens the file."""
    root = good_folder(tmp_path)

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(DataFileError, match=r"train/ant/0.png cannot be read \(permission denied\)"):
        read_image_folder(root, "train", "L", cache=False)


def test_hidden_files_are_skipped_and_a_train_class_absent_from_test_keeps_its_label(tmp_path) -> None:
    root = good_folder(tmp_path)
    (root / "train/ant/.DS_Store").write_bytes(b"\0\1")
    (root / "train/notes.txt").write_text("not in a class folder, not an image: ignored")
    for path in (root / "test/ant").iterdir():
        path.unlink()
    (root / "test/ant").rmdir()
    images, labels = read_image_folder(root, "train", "L")
    assert images.shape == (8, 8, 8) and labels.tolist() == [0] * 4 + [1] * 4
    with pytest.warns(UserWarning, match=r"has no images of classes \['ant'\]"):
        images, labels = read_image_folder(root, "test", "L")
    assert labels.tolist() == [1] * 4 and images[:, 0, 0].tolist() == [10, 11, 12, 13]


def test_mixed_modes_are_converted(tmp_path) -> None:
    """RGBA drops its alpha channel and grey is repeated over RGB, as documented; mode L makes every image grey."""
    root = good_folder(tmp_path)
    Image.fromarray(np.full((8, 8, 4), (200, 100, 50, 7), dtype=np.uint8), mode="RGBA").save(root / "train/ant/0.png")
    images, _ = read_image_folder(root, "train", "RGB")
    assert images.shape == (8, 8, 8, 3)
    assert images[0, 0, 0].tolist() == [200, 100, 50] and images[1, 0, 0].tolist() == [1, 1, 1]
    assert read_image_folder(root, "train", "L")[0].shape == (8, 8, 8)
    with pytest.raises(ConfigError, match="mode='CMYK' is unknown"):
        read_image_folder(root, "train", "CMYK")


def test_decoding_happens_once_and_a_changed_folder_is_decoded_afresh(tmp_path, monkeypatch, capsys) -> None:
    root = good_folder(tmp_path / "images")
    monkeypatch.setenv("PDRL_CACHE_DIR", str(tmp_path / "cache"))
    first, labels = read_image_folder(root, "train", "L")
    assert "decoded 8 images of" in capsys.readouterr().err and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    decoded = []
    monkeypatch.setattr(image_folder, "decode_image", lambda *args: decoded.append(args) or np.zeros((8, 8), np.uint8))
    again, again_labels = read_image_folder(root, "train", "L")
    assert not decoded and "from the decode cache" in capsys.readouterr().err
    assert torch.equal(again, first) and torch.equal(again_labels, labels)
    read_image_folder(root, "train", "RGB")  # other settings: another entry
    assert len(decoded) == 8
    monkeypatch.undo()
    monkeypatch.setenv("PDRL_CACHE_DIR", str(tmp_path / "cache"))
    grey(99).save(root / "train/bee/3.png")  # rewritten: its size or time changes, so the key does
    os.utime(root / "train/bee/3.png", ns=(1, 1))
    changed, _ = read_image_folder(root, "train", "L")
    assert changed[-1, 0, 0] == 99 and torch.equal(changed[:-1], first[:-1])
    (root / "train/bee/3.png").rename(root / "train/ant/9.png")  # moved to another class: relabelled, new key
    assert read_image_folder(root, "train", "L")[1].tolist() == [0] * 5 + [1] * 3


def test_a_bad_file_is_never_cached_and_a_bad_cache_entry_is_decoded_again(tmp_path, monkeypatch) -> None:
    root = good_folder(tmp_path / "images")
    cache = tmp_path / "cache"
    monkeypatch.setenv("PDRL_CACHE_DIR", str(cache))
    good = (root / "train/bee/2.png").read_bytes()
    truncate(root / "train/bee/2.png")
    with pytest.raises(DataFileError):
        read_image_folder(root, "train", "L")
    assert not list(cache.glob("*")) if cache.exists() else True
    (root / "train/bee/2.png").write_bytes(good)
    images, _ = read_image_folder(root, "train", "L")
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(b"spoilt")
    with pytest.warns(UserWarning, match="is unreadable"):
        assert torch.equal(read_image_folder(root, "train", "L")[0], images)
    monkeypatch.setenv("PDRL_CACHE_DIR", "off")
    assert decode_cache.folder() is None and torch.equal(read_image_folder(root, "train", "L")[0], images)


def write_cifar(root: Path, per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The same random 32x32 RGB pixels as torchvision's python batches and as a PNG image folder (lossless)."""
    generator = np.random.default_rng(0)
    n = per_class * len(CIFAR10_CLASSES)
    labels = np.repeat(np.arange(len(CIFAR10_CLASSES)), per_class)
    generator.shuffle(labels)
    images = generator.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    batches = root / "batches" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        some = name in ("data_batch_1", "test_batch")  # every image once in train (in its first batch) and in test
        with open(batches / name, "wb") as file:
            pickle.dump({"data": rows[: n if some else 0], "labels": labels.tolist() if some else []}, file)
    for split in ("train", "test"):
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / "folder" / split / CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:04d}.png")
    return images, labels


def test_cifar10_batches_and_image_folder_give_identical_views(tmp_path) -> None:
    write_cifar(tmp_path)
    from_batches = CIFAR10DataModule(root=str(tmp_path / "batches"), download=False, batch_size=2)
    from_folder = CIFAR10DataModule(root=str(tmp_path / "folder"), download=False, batch_size=2)
    for split in ("train", "test"):
        top, bottom, labels = from_batches._split(split)
        order = np.lexsort((np.arange(len(labels)), labels.numpy()))  # the folder's order: by class, then file name
        folder_top, folder_bottom, folder_labels = from_folder._split(split)
        assert folder_top.shape == (30, 1536)
        assert torch.equal(folder_labels, labels[order])
        assert torch.equal(folder_top, top[order]) and torch.equal(folder_bottom, bottom[order])


def test_cifar10_refuses_a_folder_of_other_classes_or_sizes(tmp_path) -> None:
    root = good_folder(tmp_path / "images")
    with pytest.raises(ConfigError, match="not CIFAR-10's"):
        CIFAR10DataModule(root=str(root), download=False).setup()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        CIFAR10DataModule(root=str(tmp_path / "file"), download=True).prepare_data()


# through pdrl.fit: one line, exit 2, and nothing in the run folder that a resume would trust
FIT_CASES = ["symlink loop in a class", "truncated image", "empty class folder"]


@pytest.mark.parametrize("case", FIT_CASES)
def test_a_bad_folder_ends_a_fit_in_one_line(tmp_path, capsys, case) -> None:
    _, spoil, expected, _ = next(c for c in BAD_FOLDERS if c[0] == case)
    root = good_folder(tmp_path / "images")
    spoil(root)
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps=2, probe_every=100))
    data = ["--data", "pdrl.data.images.ImageFolderDataModule", "--data.root", str(root), "--data.mode", "L"]
    status = run_command(fit.main, ["--config", str(config), *data, "--data.batch_size", "4"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and lines[-1].startswith("pdrl: error: ") and expected in lines[-1], lines[-1:]
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_a_good_folder_trains_through_fit(tmp_path, capsys) -> None:
    root = good_folder(tmp_path / "images")
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps=2, probe_every=100))
    data = ["--data", "pdrl.data.images.ImageFolderDataModule", "--data.root", str(root), "--data.mode", "L"]
    assert run_command(fit.main, ["--config", str(config), *data, "--data.batch_size", "4"]) == 0
    assert ImageFolderDataModule(root=str(root), mode="L").view_dims == (32, 32)
