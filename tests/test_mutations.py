"""One test per mutation that a mutation check of issue 14 found surviving the suite.

Each test's docstring names the mutation it kills; each was checked by applying that mutation by hand and watching
the test fail. All run in the test process on tiny tensors (a few seconds in all).
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
from pytorch_lightning import LightningModule
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler
from torch.utils.data import TensorDataset

from pdrl.callbacks.linear_probe import LinearProbe
from pdrl.data.word_vectors import WordVectorDataModule, synthetic_word_vectors, write_word_vectors
from pdrl.losses import MINELoss, SMILELoss
from pdrl.nets.amdim import AMDIMFeatures
from pdrl.probe_solvers import linear_probe_accuracy
from pdrl.tasks.deep_representation import DeepRepresentation

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def off_diagonal(scores: torch.Tensor) -> torch.Tensor:
    return scores[~torch.eye(len(scores), dtype=torch.bool)]


def test_smile_readout_clips_the_partition_at_tau():
    """Kills: SMILE ignoring tau (the readout's partition term computed on the unclipped scores)."""
    scores = 3.0 * torch.randn(6, 6, dtype=torch.float64)
    for tau in (0.5, 1.0, 5.0):
        clipped = off_diagonal(scores).clamp(-tau, tau)
        expected = scores.diagonal().mean() - (clipped.exp().mean()).log()
        torch.testing.assert_close(SMILELoss(tau=tau).mi(scores), expected)
    dv = scores.diagonal().mean() - off_diagonal(scores).exp().mean().log()
    torch.testing.assert_close(SMILELoss(tau=math.inf).mi(scores), dv)
    assert (SMILELoss(tau=1.0).mi(scores) - dv).abs() > 0.1, "the case must tell a clip from no clip"


def test_mine_gradient_is_divided_by_the_moving_average():
    """Kills: MINE's moving-average gradient replaced by the plain DV gradient.

    On the second batch the partition term's gradient is ``exp(t - log_ema) * grad t`` with t = log E_Q[e^f] of this
    batch and ``log_ema = log(m e^t1 + (1 - m) e^t2)``; the plain DV gradient is ``grad t``.
    """
    momentum, n = 0.9, 5
    mine = MINELoss(momentum=momentum).train()
    first = torch.randn(n, n, dtype=torch.float64) + 2.0  # a large partition, then a small one
    mine(first)
    second = (torch.randn(n, n, dtype=torch.float64) - 1.0).requires_grad_()
    mine(second).backward()

    def log_partition(scores: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(off_diagonal(scores), dim=0) - math.log(n * (n - 1))

    t1, t2 = log_partition(first), log_partition(second.detach())
    log_ema = torch.log(momentum * t1.exp() + (1 - momentum) * t2.exp())
    weight = torch.exp(t2 - log_ema)
    assert weight < 0.5, "the case must tell the moving average from the batch's own partition"
    expected_scores = second.detach().clone().requires_grad_()
    (-expected_scores.diagonal().mean() + weight * log_partition(expected_scores)).backward()
    torch.testing.assert_close(second.grad, expected_scores.grad)
    torch.testing.assert_close(mine.log_ema.double(), log_ema)


def test_retrieval_trains_on_the_training_words_only(tmp_path):
    """Kills: retrieval training on its test words (the train loader built from the held-out rows)."""
    words, audio, text = synthetic_word_vectors(30, dim=4, seed=3)
    write_word_vectors(tmp_path / "audio.vec", words, audio)
    write_word_vectors(tmp_path / "text.vec", words, text)
    datamodule = WordVectorDataModule(
        str(tmp_path / "audio.vec"), str(tmp_path / "text.vec"), num_test_words=10, batch_size=5
    )
    datamodule.setup("fit")
    test_words = set(datamodule.test_words)
    train_words = set(words) - test_words
    assert len(test_words) == 10 and len(train_words) == 20
    row_of = {tuple(vector.tolist()): row for row, vector in enumerate(datamodule.audio)}
    seen = []
    for batch_audio, batch_text in datamodule.train_dataloader():
        for audio_vector, text_vector in zip(batch_audio, batch_text, strict=True):
            row = row_of[tuple(audio_vector.tolist())]
            torch.testing.assert_close(text_vector, datamodule.text[row])  # pairs stay aligned
            seen.append(datamodule.words[row])
    assert sorted(seen) == sorted(train_words), "one epoch must show every training word once, and no test word"
    trial_words = {
        datamodule.test_words[int(index)] for _, _, indices in datamodule.val_dataloader() for index in indices[:, 0]
    }
    assert trial_words == test_words


def test_probe_scaler_is_fitted_on_train():
    """Kills: the probe's min-max scaler fitted on the test features (``minmax_scale(test, train)`` or on both).

    One feature carries the label; one test point lies far outside the train range. Scaled by the train range, the
    probe separates the classes; scaled by the test range, the train feature shrinks to ~1e-6 and the L2 penalty
    flattens the classifier.
    """
    generator = torch.Generator().manual_seed(0)
    train_labels, test_labels = torch.arange(200) % 2, torch.arange(100) % 2
    train = torch.stack(
        [train_labels + 0.1 * torch.randn(200, generator=generator), torch.randn(200, generator=generator)], 1
    )
    test = torch.stack(
        [test_labels + 0.1 * torch.randn(100, generator=generator), torch.randn(100, generator=generator)], 1
    )
    test[1, 0] = 1e6  # a label-1 point far out
    scaler = MinMaxScaler().fit(train.double().numpy())
    reference = LogisticRegression(C=10.0, solver="saga", tol=0.1, random_state=0)
    reference.fit(scaler.transform(train.double().numpy()), train_labels.numpy())
    expected = float(np.mean(reference.predict(scaler.transform(test.double().numpy())) == test_labels.numpy()))
    assert expected > 0.95
    assert linear_probe_accuracy(train, train_labels, test, test_labels, solver="saga") == pytest.approx(expected)
    assert linear_probe_accuracy(train, train_labels, test, test_labels, solver="lbfgs") > 0.95


class DropoutEncoder(LightningModule):
    """An encoder whose features depend on its mode (dropout); records the mode of every ``embed`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5))
        self.modes: list[bool] = []

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.net(inputs)


class ProbeData:
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        labels = torch.arange(120) % 3
        inputs = torch.randn(120, 8, generator=generator) + labels[:, None].float()
        self.splits = {
            "train": TensorDataset(inputs[:80], labels[:80]),
            "test": TensorDataset(inputs[80:], labels[80:]),
        }

    def probe_dataset(self, split: str) -> TensorDataset:
        return self.splits[split]


def test_probe_embeds_in_eval_mode_and_restores_train_mode():
    """Kills: the encoder left in train mode during the probe (``pl_module.eval()`` dropped)."""
    encoder = DropoutEncoder().train()
    trainer = types.SimpleNamespace(datamodule=ProbeData(), loggers=[], global_step=3, is_global_zero=True)
    probe = LinearProbe(every_n_steps=1, batch_size=32, raw_pixel_baseline=False)
    accuracies = [probe.evaluate(trainer, encoder) for _ in range(2)]
    assert encoder.modes and not any(encoder.modes), "every embed call must see eval mode"
    assert encoder.training, "the module must be back in train mode after the probe"
    assert accuracies[0] == accuracies[1], "eval mode makes the features, hence the accuracy, deterministic"


def source_vectors(scores: torch.Tensor, target_map: torch.Tensor) -> torch.Tensor:
    """Recover the (n, d) source vectors of ``scores[i, j, l] = <source_i, target_j[:, l]> / sqrt(d)``."""
    d = target_map.shape[1]
    targets = target_map.permute(0, 2, 3, 1).reshape(-1, d)  # (n * L, d), rows in (j, l) order
    rows = scores.reshape(scores.shape[0], -1).T * math.sqrt(d)  # (n * L, n)
    return torch.linalg.lstsq(targets, rows).solution.T


def is_a_location_of(vectors: torch.Tensor, maps: torch.Tensor) -> bool:
    """Whether vector i is one of the locations of maps[i] (the same image, the same map)."""
    locations = maps.flatten(2)  # (n, d, L)
    distances = (locations - vectors[:, :, None]).abs().amax(dim=1).amin(dim=1)
    return bool((distances < 1e-6).all())


def test_deep_task_5to5_source_is_a_location_of_the_other_views_map5():
    """Kills: the deep task's 5->5 source taken from the wrong map (map7, or the target view's own map5).

    Direction 1 scores a random 5x5 location of view 1 against every location of view 2's 5x5 map; direction 2
    the other way round.
    """
    model = DeepRepresentation(ndf=4, n_rkhs=16, depth=1)
    n, d = 3, 16
    first, second = (
        AMDIMFeatures(torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, 5, 5, dtype=torch.float64),
                      torch.randn(n, d, 7, 7, dtype=torch.float64))
        for _ in range(2)
    )  # fmt: skip
    forward, backward = model.raw_score_pairings(first, second)["5to5"]
    assert forward.shape == backward.shape == (n, n, 25)
    assert is_a_location_of(source_vectors(forward, second.map5), first.map5)
    assert is_a_location_of(source_vectors(backward, first.map5), second.map5)


def test_validation_embeds_the_unaugmented_images():
    """Kills: validation on augmented views (the probe head fed an augmented view instead of ``embed(images)``)."""
    model = DeepRepresentation(ndf=4, n_rkhs=16, depth=1).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(4) % 10
    probe_inputs = []
    model.probe.register_forward_hook(lambda module, inputs, output: probe_inputs.append(inputs[0].detach()))
    with torch.no_grad():
        for seed in (1, 2):
            torch.manual_seed(seed)  # a different augmentation draw each time
            model.validation_step((images, labels), 0)
        expected = model.embed(images)
    assert len(probe_inputs) == 2
    torch.testing.assert_close(probe_inputs[0], expected)
    torch.testing.assert_close(probe_inputs[1], expected)
