"""Whole images with labels, for tasks that make their own views on the device (the deep task).

The deep task (AMDIM-style, PD paper Sec. 5.2) augments each batch on the training device, so its data
are plain ``(uint8 images (B, C, H, W), int64 labels)`` batches: neither normalised nor augmented. The
images are read by the same code as the half-view datamodules (``pdrl.data.images``), so the on-disk
layout, the download and the missing-file errors are the same.

Validation uses an unpadded distributed sampler under DDP, so every test image is counted exactly once
however many devices run.
"""

from __future__ import annotations

import torch.distributed as dist
from pytorch_lightning import LightningDataModule
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, TensorDataset

from pdrl.data.images import CIFAR10DataModule, FashionMNISTDataModule, HalfImageDataModule, MNISTDataModule
from pdrl.data.resumable import ResumableDataLoader
from pdrl.errors import ConfigError

DATASETS: dict[str, type[HalfImageDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
}


class WholeImageDataModule(LightningDataModule):
    """Train batches of the train split, validation batches of the test split: ``(images, labels)``.

    Args:
        dataset: ``"cifar10"`` (3 x 32 x 32, what the AMDIM encoder expects), ``"mnist"`` or ``"fashion_mnist"``.
        root: folder holding the dataset in torchvision's layout.
        download: download the files when they are missing.
        batch_size: images per batch on each device (4 devices x 120 = the paper's 480).
        num_workers: DataLoader workers (the images live in memory; 0 is usually fastest).
    """

    def __init__(
        self,
        dataset: str = "cifar10",
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ConfigError(f"Unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}.")
        self.reader = DATASETS[dataset](root=root, download=download, batch_size=batch_size, num_workers=num_workers)
        self.batch_size, self.num_workers = batch_size, num_workers
        self._splits: dict[bool, TensorDataset] = {}

    def prepare_data(self) -> None:
        self.reader.prepare_data()

    def split(self, train: bool) -> TensorDataset:
        """The train or test split as ``(uint8 images (N, C, H, W), int64 labels)``."""
        if train not in self._splits:
            images, labels = self.reader.load_split(train)
            images = images.unsqueeze(-1) if images.dim() == 3 else images
            self._splits[train] = TensorDataset(images.permute(0, 3, 1, 2).contiguous(), labels.long())
        return self._splits[train]

    def setup(self, stage: str | None = None) -> None:
        self.split(train=True)
        self.split(train=False)

    def train_dataloader(self) -> DataLoader:
        dataset = self.split(train=True)
        if len(dataset) < self.batch_size:
            raise ConfigError(f"The train split has {len(dataset)} images, fewer than batch_size={self.batch_size}.")
        return ResumableDataLoader(  # shuffled; a run resumed mid-epoch sees the same batches
            dataset, batch_size=self.batch_size, drop_last=True, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        dataset = self.split(train=False)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False) if distributed else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers)
