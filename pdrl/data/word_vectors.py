"""Paired word vectors of two modalities (PD paper Application III): audio (speech2vec) and text (word2vec).

Files are in the word2vec text format, as published in github ``iamyuanchung/speech2vec-pretrained-vectors``::

    N D
    word v1 v2 ... vD        (N such lines, values separated by white space)

The two files are aligned by word (the words present in both, in the audio file's order), a held-out set of
test words is chosen by a seed (the paper holds out 5000 of 37605) or read from a file, and the rest is for
training. Evaluation is the paper's 1:5 matching: each test audio vector against its own text vector and 4
other test words' text vectors, drawn once by a seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pdrl import distributed
from pdrl.data.resumable import ResumableDataLoader, per_device_batch_size
from pdrl.errors import ConfigError, DataFileError


class WordVectorFileError(DataFileError):
    """A word-vector file that does not follow the word2vec text format (names the file and line)."""


def read_word_vectors(path: str | os.PathLike) -> tuple[list[str], torch.Tensor]:
    """Read a word2vec text file into its words and an ``(N, D)`` float32 tensor.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        WordVectorFileError: for a malformed header or line, a line whose dimension is not D, a repeated word,
            or a number of vectors that differs from the header's N; the message names the file and line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Word-vector file {path} does not exist: give the path of a word2vec .vec text file (the paper's "
            "vectors: git clone https://github.com/iamyuanchung/speech2vec-pretrained-vectors)."
        )
    words: list[str] = []
    rows: list[list[float]] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as file:
        header = _decode(file.readline(), path, 1).split()
        if len(header) != 2 or not all(field.isdigit() for field in header) or int(header[1]) == 0:
            raise WordVectorFileError(
                f"{path}, line 1: expected the header 'N D' (number of words, dimension > 0), got {' '.join(header)!r}."
            )
        num_words, dim = int(header[0]), int(header[1])
        for line_number, raw in enumerate(file, start=2):
            fields = _decode(raw, path, line_number).split()
            if not fields:
                raise WordVectorFileError(
                    f"{path}, line {line_number}: empty line; every line must be 'word v1 ... vD'."
                )
            word, values = fields[0], fields[1:]
            if len(values) != dim:
                raise WordVectorFileError(
                    f"{path}, line {line_number}: word {word!r} has {len(values)} values; the header says D = {dim}."
                )
            try:
                vector = [float(value) for value in values]
            except ValueError as error:
                raise WordVectorFileError(
                    f"{path}, line {line_number}: word {word!r} has a value that is not a number ({error})."
                ) from None
            if not all(math.isfinite(value) for value in vector):
                raise WordVectorFileError(f"{path}, line {line_number}: word {word!r} has a non-finite value.")
            if word in seen:
                raise WordVectorFileError(
                    f"{path}, line {line_number}: word {word!r} repeats line {seen[word]}; each word must appear once."
                )
            seen[word] = line_number
            words.append(word)
            rows.append(vector)
    if len(words) != num_words:
        raise WordVectorFileError(
            f"{path}, line 1: the header announces N = {num_words} vectors but the file has {len(words)} "
            f"(last line {len(words) + 1}); fix the header or the file."
        )
    return words, torch.tensor(rows, dtype=torch.float32).reshape(num_words, dim)


def _decode(raw: bytes, path: str, line_number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WordVectorFileError(f"{path}, line {line_number}: not valid UTF-8 ({error}).") from None


def write_word_vectors(path: str | os.PathLike, words: Sequence[str], vectors: torch.Tensor) -> None:
    """Write words and an ``(N, D)`` tensor in the word2vec text format (the inverse of ``read_word_vectors``)."""
    if vectors.dim() != 2 or len(words) != vectors.shape[0]:
        raise ValueError(f"need one (D,) vector per word: {len(words)} words, vectors of shape {tuple(vectors.shape)}.")
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"{vectors.shape[0]} {vectors.shape[1]}\n")
        for word, vector in zip(words, vectors.tolist(), strict=True):
            file.write(word + " " + " ".join(repr(value) for value in vector) + "\n")


def align_by_word(
    audio: tuple[list[str], torch.Tensor],
    text: tuple[list[str], torch.Tensor],
    audio_path: str = "audio file",
    text_path: str = "text file",
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The words present in both files, in the audio file's order, with their audio and text vectors.

    Raises:
        ValueError: when the two files share no word (naming both files).
    """
    (audio_words, audio_vectors), (text_words, text_vectors) = audio, text
    text_row = {word: row for row, word in enumerate(text_words)}
    audio_rows = [row for row, word in enumerate(audio_words) if word in text_row]
    if not audio_rows:
        raise ConfigError(
            f"{audio_path} and {text_path} share no word (first words {audio_words[:3]} and {text_words[:3]}): "
            "give the audio and text vectors of the same vocabulary."
        )
    words = [audio_words[row] for row in audio_rows]
    return words, audio_vectors[audio_rows], text_vectors[[text_row[word] for word in words]]


def split_test_words(
    words: Sequence[str], num_test_words: int, seed: int, test_words_file: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and the held-out test words.

    The test words are ``num_test_words`` drawn by ``seed``, or, when ``test_words_file`` is given, the words
    it lists (one per line; ``num_test_words`` and ``seed`` are then unused).
    """
    if test_words_file is None:
        if not 0 < num_test_words < len(words):
            raise ConfigError(
                f"num_test_words={num_test_words} must be between 1 and {len(words) - 1} "
                f"(there are {len(words)} aligned words); the paper holds out 5000 of 37605."
            )
        order = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed))
        return order[num_test_words:].sort().values, order[:num_test_words].sort().values
    index = {word: row for row, word in enumerate(words)}
    test_rows = []
    with open(test_words_file, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            word = line.strip()
            if word not in index:
                raise WordVectorFileError(
                    f"{test_words_file}, line {line_number}: test word {word!r} is not among the aligned words."
                )
            test_rows.append(index[word])
    is_test = torch.zeros(len(words), dtype=torch.bool)
    is_test[test_rows] = True
    if is_test.all():
        raise ConfigError(f"{test_words_file} lists every aligned word as a test word; leave some for training.")
    return torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()


def matching_candidates(num_words: int, num_candidates: int, seed: int) -> torch.Tensor:
    """``(num_words, num_candidates)`` indices for 1:k matching: column 0 is the word itself, the others are
    distinct other words, drawn uniformly by ``seed``."""
    if not 2 <= num_candidates <= num_words:
        raise ConfigError(
            f"num_candidates={num_candidates} must be between 2 and the number of test words ({num_words})."
        )
    generator = torch.Generator().manual_seed(seed)
    candidates = torch.empty(num_words, num_candidates, dtype=torch.long)
    for word in range(num_words):
        others = torch.randperm(num_words - 1, generator=generator)[: num_candidates - 1]
        candidates[word, 0] = word
        candidates[word, 1:] = others + (others >= word).long()
    return candidates


def synthetic_word_vectors(
    num_words: int, dim: int = 100, noise: float = 0.5, seed: int = 0
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """A stand-in for the real vectors with a known dependency: ``text = W2 tanh(W1 audio) + noise * eps``.

    audio ~ N(0, I_dim); W1, W2 are fixed random Gaussian matrices scaled to keep unit variance; eps ~ N(0, I).
    The larger ``noise``, the weaker the dependency. Words are ``w000000``, ``w000001``, ...
    """
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(dim, dim, generator=generator) / math.sqrt(dim)
    second = torch.randn(dim, dim, generator=generator) / math.sqrt(dim)
    audio = torch.randn(num_words, dim, generator=generator)
    hidden = torch.tanh(2.0 * audio @ first.T)
    text = hidden @ second.T / hidden.std() + noise * torch.randn(num_words, dim, generator=generator)
    return [f"w{index:06d}" for index in range(num_words)], audio, text


class MatchingTrials(Dataset):
    """1:k matching trials: item i is (audio_i, the candidates' text vectors (k, D), the candidates' indices)."""

    def __init__(self, audio: torch.Tensor, text: torch.Tensor, candidates: torch.Tensor) -> None:
        self.audio, self.text, self.candidates = audio, text, candidates

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.audio[index], self.text[self.candidates[index]], self.candidates[index]


class WordVectorDataModule(LightningDataModule):
    """Aligned (audio, text) word vectors: training pairs, and the 1:k matching trials on the test words.

    Attributes after ``setup``: ``words`` (all aligned words), ``train_rows`` / ``test_rows`` (indices into
    ``words``), ``test_words`` and ``candidates`` (``(num_test, k)`` indices into ``test_words``; column 0
    is the true match).

    Args:
        audio_path: word2vec text file of the audio vectors (speech2vec).
        text_path: word2vec text file of the text vectors (word2vec).
        num_test_words: held-out words (5000 in the paper).
        split_seed: seeds the held-out draw.
        test_words_file: optional file listing the test words, one per line (overrides the seeded draw).
        num_candidates: text candidates per trial (5: 1:5 matching).
        candidates_seed: seeds the 4 other candidates of every trial.
        batch_size: training pairs per step (512 in the paper); every other pair is a negative.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        audio_path: str,
        text_path: str,
        num_test_words: int = 5000,
        split_seed: int = 0,
        test_words_file: str | None = None,
        num_candidates: int = 5,
        candidates_seed: int = 0,
        batch_size: int = 512,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ConfigError(f"batch_size must be an integer >= 2 (512 in the paper), got {batch_size!r}.")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "words"):
            return
        hp = self.hparams
        audio = read_word_vectors(hp.audio_path)
        text = read_word_vectors(hp.text_path)
        if audio[1].shape[1] != text[1].shape[1]:
            # Different sizes are fine for two encoders, but the task is built for one input size.
            raise WordVectorFileError(
                f"{hp.audio_path} has dimension {audio[1].shape[1]} and {hp.text_path} has {text[1].shape[1]} "
                "(header line 1): use vectors of the same dimension (100 in the paper)."
            )
        self.words, self.audio, self.text = align_by_word(audio, text, hp.audio_path, hp.text_path)
        self.train_rows, self.test_rows = split_test_words(
            self.words, hp.num_test_words, hp.split_seed, hp.test_words_file
        )
        if len(self.train_rows) < hp.batch_size:
            raise ConfigError(
                f"only {len(self.train_rows)} training words remain after holding out {len(self.test_rows)}, fewer "
                f"than batch_size={hp.batch_size}: lower the batch size or the number of test words."
            )
        self.test_words = [self.words[row] for row in self.test_rows.tolist()]
        self.candidates = matching_candidates(len(self.test_rows), hp.num_candidates, hp.candidates_seed)

    def train_dataloader(self) -> DataLoader:
        pairs = TensorDataset(self.audio[self.train_rows], self.text[self.train_rows])
        return ResumableDataLoader(  # shuffled; a run resumed mid-epoch sees the same batches
            pairs,
            batch_size=per_device_batch_size(self.hparams.batch_size),
            drop_last=True,
            num_workers=self.hparams.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        """The test trials; under DDP each rank gets its share, unpadded, so no trial is counted twice."""
        trials = MatchingTrials(self.audio[self.test_rows], self.text[self.test_rows], self.candidates)
        sampler = distributed.UnpaddedDistributedSampler(trials) if distributed.is_distributed() else None
        return DataLoader(
            trials, batch_size=self.hparams.batch_size, sampler=sampler, num_workers=self.hparams.num_workers
        )
