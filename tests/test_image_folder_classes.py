"""The class map of an image folder comes from its train split: a test split that lacks a class keeps the train
numbering (with a warning), a test split with a class train does not have is an error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pdrl.data.images import ImageFolderDataModule
from pdrl.errors import ConfigError


def write_folder(root, split: str, classes: list[str], count: int = 2) -> None:
    generator = np.random.default_rng(len(split))
    for label in classes:
        folder = root / split / label
        folder.mkdir(parents=True)
        for index in range(count):
            Image.fromarray(generator.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).save(folder / f"{index}.png")


def test_test_split_missing_a_class_keeps_the_train_numbering(tmp_path):
    write_folder(tmp_path, "train", ["ant", "bee", "cat"])
    write_folder(tmp_path, "test", ["ant", "cat"])  # no bee: alone, ImageFolder would number cat 1
    datamodule = ImageFolderDataModule(root=str(tmp_path), mode="L", batch_size=2)
    with pytest.warns(UserWarning, match=r"no images of classes \['bee'\]"):
        labels = datamodule.probe_dataset("test").tensors[1].tolist()
    assert labels == [0, 0, 2, 2]
    assert datamodule.probe_dataset("train").tensors[1].tolist() == [0, 0, 1, 1, 2, 2]


def test_test_split_with_an_unknown_class_is_an_error(tmp_path):
    write_folder(tmp_path, "train", ["ant", "cat"])
    write_folder(tmp_path, "test", ["ant", "bee", "cat"])
    with pytest.raises(ConfigError, match=r"has classes \['bee'\] that .*train does not have"):
        ImageFolderDataModule(root=str(tmp_path), mode="L", batch_size=2).setup()
