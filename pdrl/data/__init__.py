"""LightningDataModules and view makers."""

from pdrl.data.augment import PairAugmentation
from pdrl.data.gaussian_grid import GaussianGridDataModule
from pdrl.data.gaussians import GaussianMIDataModule, MIStaircase, StaircaseSettings
from pdrl.data.images import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    HalfImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from pdrl.data.resumable import ResumableDataLoader
from pdrl.data.view_noise import ViewNoise
from pdrl.data.whole_images import WholeImageDataModule
from pdrl.data.word_vectors import WordVectorDataModule, WordVectorFileError

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "GaussianGridDataModule",
    "GaussianMIDataModule",
    "HalfImageDataModule",
    "ImageFolderDataModule",
    "MIStaircase",
    "MNISTDataModule",
    "PairAugmentation",
    "ResumableDataLoader",
    "StaircaseSettings",
    "ViewNoise",
    "WholeImageDataModule",
    "WordVectorDataModule",
    "WordVectorFileError",
]
