"""Half-image datamodules: views, labelled probe splits, on-disk formats and missing-data errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from pdrl.data.images import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    half_views,
)


def test_half_views_split_rows_in_hwc_order():
    images = torch.arange(2 * 4 * 2 * 3, dtype=torch.uint8).reshape(2, 4, 2, 3)
    top, bottom = half_views(images, max_value=255.0)
    assert top.shape == bottom.shape == (2, 2 * 2 * 3)
    torch.testing.assert_close(top[1], images[1, :2].flatten().float() / 255)
    torch.testing.assert_close(bottom[0], images[0, 2:].flatten().float() / 255)


def test_digits_views_and_probe_splits():
    datamodule = DigitsDataModule(batch_size=64)
    assert datamodule.view_dims == (32, 32)
    train, test = datamodule.probe_dataset("train"), datamodule.probe_dataset("test")
    assert len(train) + len(test) == 1797 and len(test) == 450
    inputs, labels = train.tensors
    assert inputs.min() >= 0 and inputs.max() <= 1 and set(labels.tolist()) == set(range(10))
    top, bottom = next(iter(datamodule.train_dataloader()))
    assert top.shape == bottom.shape == (64, 32)
    with pytest.raises(ValueError, match="split='val' is unknown"):
        datamodule.probe_dataset("val")


@pytest.mark.parametrize("module, name", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_idx_datamodules_read_torchvision_layout(tmp_path, fake_data, module, name):
    fake_data.mnist(tmp_path, name)
    datamodule = module(root=str(tmp_path), download=False, batch_size=8)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.view_dims == (392, 392)
    assert len(datamodule.probe_dataset("train")) == 40 and len(datamodule.probe_dataset("test")) == 20
    assert len(datamodule.train_dataloader()) == 5


def test_missing_mnist_names_the_files(tmp_path):
    datamodule = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match="MNIST/raw/train-images-idx3-ubyte") as error:
        datamodule.prepare_data()
    assert "t10k-labels-idx1-ubyte" in str(error.value)


def test_cifar10_reads_python_batches(tmp_path, fake_data):
    fake_data.cifar10(tmp_path)
    datamodule = CIFAR10DataModule(root=str(tmp_path), download=False, batch_size=4)
    datamodule.setup("fit")
    assert datamodule.view_dims == (1536, 1536)
    assert len(datamodule.probe_dataset("train")) == 40 and len(datamodule.probe_dataset("test")) == 16
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as file:
        first = np.asarray(pickle.load(file)["data"][0]).reshape(3, 32, 32)
    expected_top = torch.from_numpy(first.transpose(1, 2, 0)[:16].flatten().astype(np.float32) / 255)
    torch.testing.assert_close(datamodule.probe_dataset("test").tensors[0][0], expected_top)


def test_cifar10_missing_and_malformed_files(tmp_path, fake_data):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        CIFAR10DataModule(root=str(tmp_path), download=False).prepare_data()
    fake_data.cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="is not a CIFAR10 python batch"):
        CIFAR10DataModule(root=str(tmp_path), download=False).setup()


def test_image_folder(tmp_path):
    from PIL import Image

    generator = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = generator.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    datamodule = ImageFolderDataModule(root=str(tmp_path), image_size=4, mode="L", batch_size=2)
    assert datamodule.view_dims == (8, 8)
    assert datamodule.probe_dataset("test").tensors[1].tolist() == [0, 0, 1, 1]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "nowhere")).setup()


def test_batch_size_is_the_global_batch_split_over_the_processes(monkeypatch):
    """A config states the global batch, so it means the same objective on 1 process and on k."""
    from pdrl import distributed
    from pdrl.errors import ConfigError

    datamodule = DigitsDataModule(batch_size=128)
    assert datamodule.train_dataloader().batch_size == 128
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert datamodule.train_dataloader().batch_size == 32
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ConfigError, match=r"batch_size=128 is the global batch .* 3 processes: use 126 or 129"):
        datamodule.train_dataloader()


def noisy_batches(datamodule, batch, rank=0, world_size=1, training=True):
    from types import SimpleNamespace

    datamodule.trainer = SimpleNamespace(training=training, global_rank=rank, world_size=world_size)
    return datamodule.on_after_batch_transfer(batch, dataloader_idx=0)


def test_view_noise_is_fresh_gaussian_noise_on_training_views_only():
    clean = next(iter(DigitsDataModule(batch_size=512).train_dataloader()))
    datamodule = DigitsDataModule(batch_size=512, view_noise_std=0.25)
    noisy = noisy_batches(datamodule, clean)
    for view, clean_view in zip(noisy, clean, strict=True):
        noise = view - clean_view
        assert abs(noise.std().item() - 0.25) < 0.01 and abs(noise.mean().item()) < 0.01
    assert not torch.allclose(noisy[0] - clean[0], noisy[1] - clean[1])  # each view its own noise
    again = datamodule.on_after_batch_transfer(clean, dataloader_idx=0)
    assert not torch.allclose(again[0], noisy[0])  # fresh at every step
    assert noisy_batches(datamodule, clean, training=False) is clean  # the probe and validation see clean images
    assert noisy_batches(DigitsDataModule(batch_size=512), clean) is clean  # the default: none
    probe_images = datamodule.probe_dataset("train").tensors[0]
    assert torch.equal(probe_images, DigitsDataModule().probe_dataset("train").tensors[0])


def test_view_noise_is_one_global_draw_that_each_rank_slices():
    """1 process with batch 8 and 2 ranks with 4 each (fresh processes, same seed) add the same noise to each pair."""
    torch.manual_seed(0)
    whole = noisy_batches(DigitsDataModule(view_noise_std=1.0), tuple(torch.zeros(8, 3) for _ in range(2)))
    ranks = [
        noisy_batches(DigitsDataModule(view_noise_std=1.0), tuple(torch.zeros(4, 3) for _ in range(2)), rank, 2)
        for rank in (0, 1)
    ]
    assert not torch.allclose(ranks[0][0], ranks[1][0])  # no two pairs of the global batch share noise
    for view in (0, 1):
        torch.testing.assert_close(torch.cat([ranks[0][view], ranks[1][view]]), whole[view])


def test_view_noise_has_its_own_seeded_stream_that_a_checkpoint_restores():
    clean = tuple(torch.zeros(4, 3) for _ in range(2))
    torch.manual_seed(0)
    first = DigitsDataModule(view_noise_std=1.0)
    assert first.state_dict() == {}  # nothing drawn, nothing to keep
    noisy_batches(first, clean)
    state = {key: value.clone() for key, value in first.state_dict().items()}
    torch.randn(100)  # other random draws (dropout, augmentation, a probe) do not move the noise
    continued = noisy_batches(first, clean)
    resumed = DigitsDataModule(view_noise_std=1.0)
    resumed.load_state_dict(state)
    torch.testing.assert_close(noisy_batches(resumed, clean), continued)
    torch.manual_seed(0)
    assert not torch.allclose(noisy_batches(DigitsDataModule(view_noise_std=1.0), clean)[0], torch.randn(4, 3))


@pytest.mark.parametrize("std", [-0.1, float("nan"), float("inf"), True, "0.2"])
def test_view_noise_std_must_be_a_finite_non_negative_number(std):
    from pdrl.errors import ConfigError

    with pytest.raises(ConfigError, match="view_noise_std=.* must be a finite number >= 0"):
        DigitsDataModule(view_noise_std=std)
