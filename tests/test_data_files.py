"""Data-file failures of the idx datasets (MNIST, FashionMNIST), each told apart in one line naming the file and
the fix: missing, truncated idx, corrupt .gz, wrong md5; and the .gz files alone accepted offline.

Every file is generated here (tiny idx files with the real magic numbers), so nothing depends on a real download.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import torchvision.datasets

from pdrl.data.images import FashionMNISTDataModule, MNISTDataModule
from pdrl.errors import DataFileError, MissingDataError, is_user_error, one_sentence

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def gzip_all(raw: Path) -> None:
    """Replace every idx file in ``raw`` by its .gz, as the files come from the download mirrors."""
    for name in FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes(), mtime=0))
        (raw / name).unlink()


def trust_these_gz(monkeypatch, dataset_class, raw: Path) -> None:
    """Make torchvision's resources list the md5 of the generated .gz files (real ones would match the real list)."""
    resources = [(f"{name}.gz", hashlib.md5((raw / f"{name}.gz").read_bytes()).hexdigest()) for name in FILES]
    monkeypatch.setattr(dataset_class, "resources", resources)


def failure(datamodule) -> DataFileError:
    with pytest.raises(DataFileError) as caught:
        datamodule.prepare_data()
    error = caught.value
    assert is_user_error(error) and "\n" not in one_sentence(error) and "\n" not in str(error)
    return error


@pytest.mark.parametrize("module, name", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_gz_files_alone_are_extracted_offline(tmp_path, fake_data, monkeypatch, module, name):
    fake_data.mnist(tmp_path, name)
    raw = tmp_path / name / "raw"
    originals = {file: (raw / file).read_bytes() for file in FILES}
    gzip_all(raw)
    trust_these_gz(monkeypatch, getattr(torchvision.datasets, name), raw)
    datamodule = module(root=str(tmp_path), download=False, batch_size=8)
    datamodule.prepare_data()
    assert {file: (raw / file).read_bytes() for file in FILES} == originals
    assert len(datamodule.probe_dataset("train")) == 40 and len(datamodule.probe_dataset("test")) == 20
    assert not list(raw.glob(".*tmp*")), "the extraction left a temporary file"


def test_only_the_missing_files_are_listed(tmp_path, fake_data, monkeypatch):
    fake_data.mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    gzip_all(raw)
    trust_these_gz(monkeypatch, torchvision.datasets.MNIST, raw)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "train-images-idx3-ubyte.gz").unlink()
    error = failure(MNISTDataModule(root=str(tmp_path), download=False))
    assert isinstance(error, MissingDataError) and isinstance(error, FileNotFoundError)
    message = str(error)
    assert "lacks 2 of its 4 files" in message and "download=True" in message
    assert "MNIST/raw/t10k-labels-idx1-ubyte" in message and "MNIST/raw/train-images-idx3-ubyte" in message
    assert "train-labels" not in message and "t10k-images" not in message


def test_nothing_there_lists_every_file(tmp_path):
    error = failure(MNISTDataModule(root=str(tmp_path), download=False))
    assert isinstance(error, MissingDataError)
    assert str(error).startswith(f"MNIST is not under root={str(tmp_path)!r}. Put these files there")
    assert all(f"MNIST/raw/{file}" in str(error) for file in FILES)


@pytest.mark.parametrize("keep", [0, 10, 16 + 28 * 28 * 3])
def test_a_truncated_idx_file_is_called_truncated(tmp_path, fake_data, keep):
    fake_data.mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:keep])
    error = failure(MNISTDataModule(root=str(tmp_path), download=False))
    assert not isinstance(error, MissingDataError)
    assert str(error).startswith(f"{path} is truncated") and "delete it" in str(error)
    if keep > 16:
        assert "(40, 28, 28)" in str(error) and f"it has {keep} bytes" in str(error)


def test_a_file_that_is_not_idx_or_too_long(tmp_path, fake_data):
    fake_data.mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    original = path.read_bytes()
    path.write_bytes(gzip.compress(original))  # a .gz saved under the idx name
    assert "is not an idx file: its magic number is 0x1f8b" in str(failure(MNISTDataModule(str(tmp_path), False)))
    path.write_bytes(original + b"\0\0\0")
    assert "is 3 bytes longer than its header's shape (20,)" in str(failure(MNISTDataModule(str(tmp_path), False)))


def test_images_and_labels_of_different_downloads(tmp_path, fake_data):
    fake_data.mnist(tmp_path, n_train=40)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    fake_data.mnist(tmp_path / "other", n_train=30)
    shutil.copy(tmp_path / "other" / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
    assert "has 40 images but" in str(failure(MNISTDataModule(str(tmp_path), False)))


def test_a_corrupt_gz_is_called_corrupt(tmp_path, fake_data, monkeypatch):
    fake_data.mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    gzip_all(raw)
    trust_these_gz(monkeypatch, torchvision.datasets.MNIST, raw)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a cut download
    error = failure(MNISTDataModule(root=str(tmp_path), download=False))
    assert str(error).startswith(f"{path} is not a readable gzip file") and "download=True" in str(error)
    assert not (raw / "train-images-idx3-ubyte").exists(), "a corrupt .gz must not be extracted"


def test_a_gz_with_the_wrong_md5_is_called_another_file(tmp_path, fake_data):
    fake_data.mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    gzip_all(raw)  # valid gzip files, but not the md5s torchvision lists for MNIST
    error = failure(MNISTDataModule(root=str(tmp_path), download=False))
    path, (gz_name, expected) = raw / "train-images-idx3-ubyte.gz", torchvision.datasets.MNIST.resources[0]
    assert gz_name == path.name
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    assert str(error).startswith(f"{path} has md5 {actual}, not the {expected} that torchvision lists for MNIST")


def test_a_failed_download_keeps_the_real_problem(tmp_path, fake_data, monkeypatch):
    fake_data.mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    gzip_all(raw)

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    error = failure(MNISTDataModule(root=str(tmp_path), download=True))
    assert "has md5" in str(error) and "Downloading a fresh copy failed too (RuntimeError)" in str(error)
    for file in raw.iterdir():
        file.unlink()
    error = failure(MNISTDataModule(root=str(tmp_path), download=True))
    assert isinstance(error, MissingDataError) and "downloading failed (RuntimeError: Error downloading" in str(error)


def test_the_views_are_the_extracted_pixels(tmp_path, fake_data, monkeypatch):
    fake_data.mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    images = torch.frombuffer(bytearray((raw / "t10k-images-idx3-ubyte").read_bytes()[16:]), dtype=torch.uint8)
    gzip_all(raw)
    trust_these_gz(monkeypatch, torchvision.datasets.MNIST, raw)
    top = MNISTDataModule(root=str(tmp_path), download=False).probe_dataset("test").tensors[0]
    torch.testing.assert_close(top[0], images.reshape(20, 28, 28)[0, :14].flatten().float() / 255)
