"""Whole images with labels, for tasks that make their own views on the device (the deep task).

The deep task (AMDIM-style, PD paper Sec. 5.2) augments each batch on the training device, so its data
are plain ``(uint8 images (B, 3, 32, 32), int64 labels)`` batches: neither normalised nor augmented.
Two kinds of source:

- ``cifar10``, ``mnist``, ``fashion_mnist``: read by the same code as the half-view datamodules
  (``pdrl.data.images``), so the on-disk layout, the download and the missing-file errors are the same.
- ``folder``: any image folder ``root/train/<class>/*.png|jpg|...`` and ``root/test/<class>/...``; the class
  indices are those of the sorted train class folders (a test class absent from train is an error, a train
  class absent from test is fine). Every image is converted to RGB and resized to 32x32 (bilinear) when it
  has another size.

Grey images get their channel repeated to RGB, and images smaller than 32x32 (MNIST's 28x28) are padded with
zeros, centred, to 32x32: the AMDIM encoder's input. ``probe_dataset`` gives the linear probe
(``pdrl.callbacks.linear_probe.LinearProbe``) the same uint8 images with labels, so its raw-pixel baseline
reads exactly what the encoder reads.

Validation uses an unpadded distributed sampler under DDP, so every test image is counted exactly once
however many devices run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from pdrl import distributed
from pdrl.data.image_folder import read_image_folder
from pdrl.data.images import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    HalfImageDataModule,
    MNISTDataModule,
    check_batch_size,
)
from pdrl.data.resumable import ResumableDataLoader, per_device_batch_size
from pdrl.errors import ConfigError

DATASETS: dict[str, type[HalfImageDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
}
FOLDER = "folder"
IMAGE_SIZE = 32
PROBE_SPLITS = ("train", "test")


def to_rgb32(images: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 -> ``(N, 3, 32, 32)``: grey repeated to RGB, smaller images zero-padded, centred."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"images need 1 (grey) or 3 (RGB) channels, got shape {tuple(images.shape)}.")
    height, width = images.shape[2:]
    if height > IMAGE_SIZE or width > IMAGE_SIZE:
        raise ValueError(f"images of {height}x{width} are larger than the encoder's {IMAGE_SIZE}x{IMAGE_SIZE} input.")
    top, left = (IMAGE_SIZE - height) // 2, (IMAGE_SIZE - width) // 2
    padding = (left, IMAGE_SIZE - width - left, top, IMAGE_SIZE - height - top)
    return F.pad(images, padding).contiguous()


class WholeImageDataModule(LightningDataModule):
    """Train batches of the train split, validation batches of the test split: ``(images, labels)``.

    Args:
        dataset: ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"`` or ``"folder"`` (see the module docstring).
        root: folder holding the dataset (torchvision's layout), or the image folder with ``train`` and ``test``.
        download: download the files when they are missing (not for ``folder``).
        batch_size: the global batch, split evenly over the devices (the paper: 480, e.g. 4 devices x 120).
        num_workers: DataLoader workers (the images live in memory; 0 is usually fastest).
        probe_train_size: images of the train split that ``probe_dataset("train")`` gives the linear probe (a
            seeded random subset, to keep the probe's fit short on a CPU); None for all of them.
        pin_memory: page-locked batches, so that the copy to a GPU can overlap compute (Lightning copies with
            ``non_blocking=True``); None: when CUDA is available.
    """

    def __init__(
        self,
        dataset: str = "cifar10",
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        probe_train_size: int | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        if dataset != FOLDER and dataset not in DATASETS:
            raise ConfigError(f"Unknown dataset {dataset!r}: choose one of {', '.join([*DATASETS, FOLDER])}.")
        if probe_train_size is not None and (not isinstance(probe_train_size, int) or probe_train_size < 1):
            raise ConfigError(f"probe_train_size={probe_train_size!r} must be a positive integer, or None for all.")
        self.dataset, self.root = dataset, str(root)
        self.reader = None
        if dataset in DATASETS:
            reader = DATASETS[dataset]
            self.reader = reader(root=root, download=download, batch_size=batch_size, num_workers=num_workers)
        self.batch_size, self.num_workers, self.probe_train_size = batch_size, num_workers, probe_train_size
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self._splits: dict[bool, TensorDataset] = {}

    def prepare_data(self) -> None:
        if self.reader is not None:
            self.reader.prepare_data()

    def _read(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reader is not None:
            images, labels = self.reader.load_split(train)
            images = torch.as_tensor(images)
            images = images.unsqueeze(-1) if images.dim() == 3 else images
            return images.permute(0, 3, 1, 2), torch.as_tensor(labels).long()
        images, labels = read_image_folder(self.root, "train" if train else "test", "RGB", IMAGE_SIZE)
        return images.permute(0, 3, 1, 2), labels

    def split(self, train: bool) -> TensorDataset:
        """The train or test split as ``(uint8 images (N, 3, 32, 32), int64 labels)``."""
        if train not in self._splits:
            images, labels = self._read(train)
            self._splits[train] = TensorDataset(to_rgb32(images), labels)
        return self._splits[train]

    def setup(self, stage: str | None = None) -> None:
        train = self.split(train=True)
        self.split(train=False)
        if stage == "fit":  # a batch must fit in the train split; embedding and probing need no batch
            check_batch_size(len(train), self.batch_size)

    def probe_dataset(self, split: str) -> TensorDataset:
        """``(uint8 image, label)`` of the ``"train"`` (``probe_train_size`` of them) or ``"test"`` split."""
        if split not in PROBE_SPLITS:
            raise ConfigError(f"split={split!r} is unknown: choose one of {PROBE_SPLITS}.")
        dataset = self.split(train=split == "train")
        if split == "test" or self.probe_train_size is None or self.probe_train_size >= len(dataset):
            return dataset
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[: self.probe_train_size]
        return TensorDataset(*(tensor[keep] for tensor in dataset.tensors))

    def train_dataloader(self) -> DataLoader:
        dataset = self.split(train=True)
        check_batch_size(len(dataset), self.batch_size)
        return ResumableDataLoader(  # shuffled; a run resumed mid-epoch sees the same batches
            dataset,
            batch_size=per_device_batch_size(self.batch_size),
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader:
        dataset = self.split(train=False)
        sampler = distributed.UnpaddedDistributedSampler(dataset) if distributed.is_distributed() else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
