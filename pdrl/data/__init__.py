"""LightningDataModules and view makers."""

from pdrl.data.images import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    HalfImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "HalfImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
]
