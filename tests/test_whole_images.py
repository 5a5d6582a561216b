"""Whole-image batches for the deep task, read from the real on-disk formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

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


def test_grayscale_images_get_one_channel(tmp_path, fake_data) -> None:
    fake_data.mnist(tmp_path)
    datamodule = WholeImageDataModule("mnist", root=str(tmp_path), download=False, batch_size=8)
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 1, 28, 28)


def test_bad_names_and_missing_files_fail_clearly(tmp_path) -> None:
    with pytest.raises(ValueError, match="Unknown dataset 'cifar100': choose one of cifar10, mnist, fashion_mnist"):
        WholeImageDataModule("cifar100")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        WholeImageDataModule("cifar10", root=str(tmp_path), download=False).prepare_data()
