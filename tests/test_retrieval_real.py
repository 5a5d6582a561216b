"""bench/retrieval_real.py on small images the tests make: the .vec files pdrl reads, a PCA fitted on the train
images only, a test split that shares no word with training, and a shuffled control that breaks every pair."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import retrieval_real as bench
from bench import retrieval_vectors as vectors
from pdrl.data.word_vectors import WordVectorDataModule, read_word_vectors, split_test_words

DIM = 10


def write_mnist(root: Path, train: np.ndarray, test: np.ndarray) -> None:
    """MNIST's uncompressed idx files in root/MNIST/raw, as torchvision reads them without a download."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, images in (("train", train), ("t10k", test)):
        n, rows, cols = images.shape
        header = struct.pack(">IIII", 0x803, n, rows, cols)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


@pytest.fixture
def mnist(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """150 train and 50 test 28x28 images; the test images are brighter (pixels 128..255, train 0..127), so a PCA
    fitted on all rows centres the train vectors away from 0."""
    generator = np.random.default_rng(0)
    train = generator.integers(0, 128, size=(150, 28, 28))
    test = generator.integers(128, 256, size=(50, 28, 28))
    write_mnist(tmp_path / "data", train, test)
    return tmp_path / "data", train.astype(np.uint8), test.astype(np.uint8)


def write(root: Path, out: Path, shuffle: bool = False, **kwargs) -> dict[str, str]:
    settings = {"dim": DIM, "num_train": 120, "num_test": 40, "subset_seed": 3, **kwargs}
    return vectors.write_vector_files(root, "mnist", out, shuffle_pairs=shuffle, **settings)


def expected_words(num_train_images: int, num_train: int, num_test_images: int, num_test: int) -> list[str]:
    train = vectors.select(num_train_images, num_train, 3)
    test = vectors.select(num_test_images, num_test, 3)
    return [f"train_{i:06d}" for i in train] + [f"test_{i:06d}" for i in test]


def test_mnist_files_parse_with_pdrls_loader_and_have_the_words_and_dims(mnist, tmp_path):
    root, _, _ = mnist
    paths = write(root, tmp_path / "vec")
    words = expected_words(150, 120, 50, 40)
    top_words, top = read_word_vectors(paths["audio"])
    bottom_words, bottom = read_word_vectors(paths["text"])
    assert top_words == bottom_words == words
    assert top.shape == bottom.shape == (160, DIM)
    assert Path(paths["test_words"]).read_text().split() == words[120:]
    assert len(set(words)) == 160 and words[0].startswith("train_") and words[-1].startswith("test_")


def test_cifar_image_folder_files_parse_with_pdrls_loader(tmp_path):
    generator = np.random.default_rng(1)
    folder = tmp_path / "CIFAR-10-images"
    for split, per_class in (("train", 40), ("test", 15)):
        for name in ("cat", "airplane"):
            (folder / split / name).mkdir(parents=True)
            for k in range(per_class):
                pixels = generator.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / name / f"{k:04d}.jpg")
    paths = vectors.write_vector_files(tmp_path, "cifar10", tmp_path / "vec", dim=DIM, num_train=None, num_test=None)
    words, top = read_word_vectors(paths["audio"])
    assert words == [f"train_{i:06d}" for i in range(80)] + [f"test_{i:06d}" for i in range(30)]
    assert top.shape == read_word_vectors(paths["text"])[1].shape == (110, DIM)
    files = vectors.image_files(folder, "train")  # index = position among sorted classes, then sorted names
    assert files[0].parts[-2:] == ("airplane", "0000.jpg") and files[40].parts[-2:] == ("cat", "0000.jpg")
    assert json.loads(Path(paths["manifest"]).read_text())["half_pixels"] == 16 * 32 * 3


def test_pca_is_fitted_on_the_train_images_only(mnist, tmp_path):
    root, train_images, test_images = mnist
    paths = write(root, tmp_path / "vec")
    train_rows = vectors.select(150, 120, 3)
    test_rows = vectors.select(50, 40, 3)
    for key, half in (("audio", 0), ("text", 1)):
        written = read_word_vectors(paths[key])[1].numpy().astype(np.float64)
        train_vectors = written[:120]
        # PCA coordinates of the rows it was fitted on are centred and uncorrelated: fitted on all rows, the brighter
        # test rows would make brightness the first component and put the train rows' mean far from 0 along it
        assert np.abs(train_vectors.mean(axis=0)).max() < 1e-4
        covariance = np.cov(train_vectors, rowvar=False)
        assert np.abs(covariance - np.diag(np.diag(covariance))).max() < 1e-4 * np.diag(covariance).max()
        # and they are what a PCA fitted on those train rows gives (up to each component's sign)
        pixels = {"train": train_images[train_rows][..., None], "test": test_images[test_rows][..., None]}
        train_half = vectors.halves(pixels["train"])[half].astype(np.float64)
        test_half = vectors.halves(pixels["test"])[half].astype(np.float64)
        mean = train_half.mean(axis=0)
        components = np.linalg.svd(train_half - mean, full_matrices=False)[2][:DIM]
        expected = (np.concatenate([train_half, test_half]) - mean) @ components.T
        signs = np.sign((expected * written).sum(axis=0))
        np.testing.assert_allclose(written, expected * signs, atol=1e-3)


def test_pdrls_split_holds_out_exactly_the_test_images(mnist, tmp_path):
    root, _, _ = mnist
    paths = write(root, tmp_path / "vec")
    datamodule = WordVectorDataModule(
        paths["audio"], paths["text"], num_test_words=5000, test_words_file=paths["test_words"], batch_size=8
    )
    datamodule.setup("fit")
    train_words = {datamodule.words[i] for i in datamodule.train_rows.tolist()}
    assert set(datamodule.test_words) == set(Path(paths["test_words"]).read_text().split())
    assert len(datamodule.test_words) == 40 and len(train_words) == 120
    assert not train_words & set(datamodule.test_words)
    assert all(w.startswith("train_") for w in train_words)
    assert all(w.startswith("test_") for w in datamodule.test_words)
    bench.check_split(datamodule.words, datamodule.train_rows, datamodule.test_rows, 40)
    # without the file, pdrl's seeded draw mixes train-split images into the test words: the check refuses it
    with pytest.raises(RuntimeError, match="not the 40 test-split images"):
        bench.check_split(datamodule.words, *split_test_words(datamodule.words, 40, 0), 40)


@pytest.mark.parametrize("num", [2, 3, 7, 100, 5000])
def test_derangement_is_a_permutation_without_fixed_points(num):
    for seed in range(5):
        permutation = vectors.derangement(num, seed)
        assert sorted(permutation.tolist()) == list(range(num))
        assert (permutation != np.arange(num)).all()
    assert not np.array_equal(vectors.derangement(num, 0), vectors.derangement(num, 1)) or num <= 3
    with pytest.raises(SystemExit):
        vectors.derangement(1, 0)


def test_the_shuffled_control_breaks_every_pair_within_each_split(mnist, tmp_path):
    root, _, _ = mnist
    paired = write(root, tmp_path / "paired")
    shuffled = write(root, tmp_path / "shuffled", shuffle=True)
    words, top = read_word_vectors(paired["audio"])
    shuffled_words, shuffled_top = read_word_vectors(shuffled["audio"])
    assert shuffled_words == words and torch.equal(shuffled_top, top)  # the "audio" side is untouched
    assert Path(shuffled["test_words"]).read_text() == Path(paired["test_words"]).read_text()
    bottom = read_word_vectors(paired["text"])[1]
    shuffled_bottom = read_word_vectors(shuffled["text"])[1]
    owner = {tuple(row): index for index, row in enumerate(bottom.tolist())}
    assert len(owner) == len(words)  # every bottom vector is distinct, so the mapping below is well defined
    source = np.array([owner[tuple(row)] for row in shuffled_bottom.tolist()])
    assert sorted(source.tolist()) == list(range(len(words)))  # a permutation of the words' own vectors
    assert (source != np.arange(len(words))).all()  # no word keeps its own bottom half
    split = np.array([w.split("_")[0] for w in words])
    assert (split[source] == split).all()  # test words get test images' bottom halves, train words train ones'


def test_the_runs_change_only_the_data_paths_epochs_seed_objective_and_plumbing(mnist, tmp_path, monkeypatch):
    from pdrl.fit import build_cli

    monkeypatch.setattr("sys.argv", ["pdrl.fit"])  # LightningCLI warns when pytest's own arguments are there too
    # the config only: 120 training words are fewer than one batch of 512, which a fit refuses before it starts
    monkeypatch.setattr("pdrl.fit.check_data", lambda datamodule: None)
    root, _, _ = mnist
    paths = write(root, tmp_path / "vec")
    arguments = bench.fit_args(paths, "pc", 2, 100, tmp_path / "run")
    keys = {a[2:] for a in arguments if a.startswith("--")} - {"config"}
    assert keys == {
        "data.audio_path", "data.text_path", "data.test_words_file", "trainer.max_epochs", "seed_everything",
        "model.objective", "model.objective_args", "trainer.logger", "trainer.enable_progress_bar",
        "trainer.default_root_dir",
    }  # fmt: skip
    config = build_cli(bench.fit_args(paths, "drf", 1, 100, tmp_path / "run"), save_config=False).config
    assert config.model.init_args.objective == "drfc" and config.data.init_args.batch_size == 512
    assert config.model.init_args.lr == 1e-3 and list(config.model.init_args.hidden_dims) == [512, 512]
    assert config.trainer.max_epochs == 100 and config.seed_everything == 1
    pc = build_cli(arguments, save_config=False).config.model.init_args
    assert pc.objective == "pcc" and pc.objective_args == {"balanced": False}


def test_the_report_answers_pc_against_drf_and_checks_the_control_against_chance(tmp_path):
    rows = [("mnist", "pc", 0, 0.93), ("mnist", "pc", 1, 0.95), ("mnist", "drf", 0, 0.97), ("mnist", "drf", 1, 0.96),
            ("mnist_shuffled", "pc", 0, 0.205), ("cifar10_shuffled", "drf", 0, 0.40)]  # fmt: skip
    lines = ["data,objective,seed,epochs,top1"] + [f"{d},{o},{s},100,{t}" for d, o, s, t in rows]
    (tmp_path / "retrieval_real.csv").write_text("\n".join(lines) + "\n")
    text = bench.report(tmp_path)
    assert "| mnist | pc | 100 | 0, 1 | 93.00%, 95.00% | 94.00% ± 1.41 | 96.24% |" in text
    assert (
        "- mnist, 100 epochs: No: D-RF beats PC, unlike the paper (94.00% vs 96.50%, 2 and 2 seeds; the gap, " in text
    )
    assert "2.50 points, is more than the larger seed standard deviation, 1.41)." in text
    assert "- mnist_shuffled, pc, 100 epochs: 20.50%: at chance" in text
    assert "- cifar10_shuffled, drf, 100 epochs: 40.00%: NOT at chance" in text
    assert (tmp_path / "retrieval_real.md").read_text() == text
