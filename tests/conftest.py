"""Shared test set-up: W&B disabled for the whole session, every test seeded."""

from __future__ import annotations

import os
import pickle
import struct
import types
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["WANDB_MODE"] = "disabled"


@pytest.fixture(autouse=True, scope="session")
def decode_cache_of_the_session(tmp_path_factory) -> Path:
    """Decoded image folders go to a folder of this session (``pdrl.data.decode_cache``), never to ~/.cache."""
    folder = tmp_path_factory.mktemp("decode_cache")
    os.environ["PDRL_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread for the whole suite: its many small ops only lose to thread overhead on 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seed() -> int:
    """Seed torch (and Lightning's seeding reads the same generator) before every test."""
    torch.manual_seed(0)
    return 0


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's idx format (big-endian header, uint8 data), uncompressed, as torchvision keeps it in raw/."""
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, rows, cols) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def write_fake_mnist(root: Path, name: str = "MNIST", n_train: int = 40, n_test: int = 20) -> None:
    generator = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = generator.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / name / "raw", prefix, images, labels)


def write_fake_cifar10(root: Path, per_batch: int = 8, n_test: int = 16) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        batch = {"data": generator.integers(0, 256, size=(n, 3072), dtype=np.uint8), "labels": list(np.arange(n) % 10)}
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file)


@pytest.fixture
def fake_data() -> types.SimpleNamespace:
    """Writers of tiny datasets in their real on-disk formats: ``fake_data.mnist(root, name)``, ``.cifar10(root)``."""
    return types.SimpleNamespace(mnist=write_fake_mnist, cifar10=write_fake_cifar10)
