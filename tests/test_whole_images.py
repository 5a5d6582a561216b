"""Whole-image batches for the deep task, read from the real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pdrl.data.whole_images import WholeImageDataModule


def test_cifar10_whole_images_keep_channels_first_uint8(tmp_path, fake_data) -> None:
    fake_data.cifar10(tmp_path)
    datamodule = WholeImageDataModule("cifar10", root=str(tmp_path), download=False, batch_size=4)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.val_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.long
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as file:
        first = np.asarray(pickle.load(file)["data"][0]).reshape(3, 32, 32)
    torch.testing.assert_close(images[0], torch.from_numpy(first))
    assert len(datamodule.split(train=True)) == 40 and len(datamodule.split(train=False)) == 16
    assert sum(len(batch[0]) for batch in datamodule.train_dataloader()) == 40  # 10 full batches of 4


def test_mnist_is_padded_to_32x32_with_the_grey_channel_repeated(tmp_path, fake_data) -> None:
    fake_data.mnist(tmp_path)
    datamodule = WholeImageDataModule("mnist", root=str(tmp_path), download=False, batch_size=8)
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    original = datamodule.reader.load_split(True)[0]
    first = datamodule.split(train=True).tensors[0][0]
    for channel in range(3):
        torch.testing.assert_close(first[channel, 2:30, 2:30], original[0])
    assert first[:, :2].sum() == 0 and first[:, 30:].sum() == 0 and first[:, :, :2].sum() == 0


def write_image_folder(root: Path) -> None:
    """train/{cat,dog,eel} and test/{cat,eel}: RGB 32x32 PNGs, a grey 28x28 PNG and a 40x40 JPEG."""
    generator = np.random.default_rng(0)
    for split, classes in (("train", ("cat", "dog", "eel")), ("test", ("cat", "eel"))):
        for name in classes:
            index = ("cat", "dog", "eel").index(name)
            folder = root / split / name
            folder.mkdir(parents=True)
            for image_index in range(3):
                pixels = np.full((32, 32, 3), 40 * index + image_index, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{image_index}.png")
            Image.fromarray(generator.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(folder / "grey.png")
            Image.fromarray(generator.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "big.jpg")
        (root / split / "notes.txt").write_text("not an image folder")


def test_any_image_folder_with_the_class_map_of_train(tmp_path) -> None:
    write_image_folder(tmp_path)
    datamodule = WholeImageDataModule("folder", root=str(tmp_path), batch_size=4)
    train, test = datamodule.split(train=True), datamodule.split(train=False)
    assert train.tensors[0].shape == (15, 3, 32, 32) and train.tensors[0].dtype == torch.uint8
    assert test.tensors[0].shape == (10, 3, 32, 32)
    assert sorted(train.tensors[1].tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    assert sorted(test.tensors[1].tolist()) == [0] * 5 + [2] * 5  # eel keeps its train index 2 though dog is missing
    eel_first = test.tensors[0][test.tensors[1] == 2][0]  # eel/0.png: pixel 40 * 2
    assert torch.all(eel_first == 80)
    images, labels = next(iter(datamodule.val_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.long


def test_a_test_class_unknown_to_train_and_a_missing_split_fail_clearly(tmp_path) -> None:
    write_image_folder(tmp_path)
    (tmp_path / "test" / "fox").mkdir()
    with pytest.raises(ValueError, match=r"has classes \['fox'\] that .*train does not have"):
        WholeImageDataModule("folder", root=str(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match="nowhere does not exist: give the folder that holds train/<class>/"):
        WholeImageDataModule("folder", root=str(tmp_path / "nowhere")).setup()


def test_probe_dataset_is_the_splits_with_an_optional_train_subset(tmp_path, fake_data) -> None:
    fake_data.mnist(tmp_path)
    full = WholeImageDataModule("mnist", root=str(tmp_path), download=False)
    subset = WholeImageDataModule("mnist", root=str(tmp_path), download=False, probe_train_size=10)
    assert len(full.probe_dataset("train")) == 40 and len(full.probe_dataset("test")) == 20
    images, labels = subset.probe_dataset("train").tensors
    assert images.shape == (10, 3, 32, 32) and len(subset.probe_dataset("test")) == 20
    rows = {tuple(image.flatten().tolist()): label for image, label in zip(*full.split(True).tensors, strict=True)}
    assert all(rows[tuple(image.flatten().tolist())] == label for image, label in zip(images, labels, strict=True))
    with pytest.raises(ValueError, match="probe_train_size"):
        WholeImageDataModule("mnist", probe_train_size=0)


def test_pinned_memory_follows_cuda_unless_set(tmp_path, fake_data) -> None:
    fake_data.mnist(tmp_path)
    auto = WholeImageDataModule("mnist", root=str(tmp_path), download=False, batch_size=8)
    assert auto.pin_memory == torch.cuda.is_available()
    assert auto.train_dataloader().pin_memory == auto.val_dataloader().pin_memory == torch.cuda.is_available()
    pinned = WholeImageDataModule("mnist", root=str(tmp_path), download=False, batch_size=8, pin_memory=True)
    assert pinned.train_dataloader().pin_memory and pinned.val_dataloader().pin_memory


def test_bad_names_and_missing_files_fail_clearly(tmp_path) -> None:
    with pytest.raises(ValueError, match="'cifar100': choose one of cifar10, mnist, fashion_mnist, folder"):
        WholeImageDataModule("cifar100")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        WholeImageDataModule("cifar10", root=str(tmp_path), download=False).prepare_data()
