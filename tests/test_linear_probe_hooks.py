"""The linear probe as a callback: when it evaluates, what it logs and prints, and its DDP gathering.

``tests/test_linear_probe.py`` checks the protocol's numbers and one real 2-rank gloo run (slow, outside the
mutation check). These tests drive the hooks with a stand-in trainer and simulate the collectives of other ranks
in-process, so every line of the callback is reached by a fast test.
"""

from __future__ import annotations

import re
import types

import pytest
import torch
from pytorch_lightning.loggers import WandbLogger
from torch.utils.data import TensorDataset

from pdrl.callbacks import linear_probe
from pdrl.callbacks.linear_probe import LinearProbe, gather_shards
from pdrl.probe_solvers import fit_logistic_regression, linear_probe_accuracy


class Recorder(WandbLogger):
    """A W&B logger that records instead of talking to W&B (the probe checks ``isinstance(logger, WandbLogger)``)."""

    def __init__(self) -> None:  # deliberately no super().__init__: nothing of W&B is started
        self.metrics: list[tuple[int, dict]] = []
        self.tables: list[dict] = []

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_table(self, key: str, columns: list[str], data: list[list]) -> None:
        self.tables.append({"key": key, "columns": columns, "data": data})


class Encoder(torch.nn.Module):
    """F: a fixed map that records the batches it is given and the mode it was in."""

    def __init__(self, output_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 4)
        self.output_dtype = output_dtype
        self.calls: list[tuple[int, bool, bool]] = []
        self.device = torch.device("cpu")

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls.append((inputs.shape[0], self.training, torch.is_inference_mode_enabled()))
        return torch.tanh(self.linear(inputs)).to(self.output_dtype)


class Data:
    def __init__(self, n_train: int = 90, n_test: int = 31) -> None:
        generator = torch.Generator().manual_seed(0)
        labels = torch.arange(n_train + n_test) % 3
        inputs = torch.randn(n_train + n_test, 6, generator=generator) + labels[:, None].float()
        self.splits = {
            "train": TensorDataset(inputs[:n_train], labels[:n_train]),
            "test": TensorDataset(inputs[n_train:], labels[n_train:]),
        }

    def probe_dataset(self, split: str) -> TensorDataset:
        return self.splits[split]


def make_trainer(step: int = 0, max_steps: int = -1, global_zero: bool = True) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        datamodule=Data(), loggers=[Recorder()], global_step=step, max_steps=max_steps, is_global_zero=global_zero
    )


def probe_steps(probe: LinearProbe) -> list[int]:
    return [entry["step"] for entry in probe.history]


def test_evaluation_schedule_start_every_n_max_steps_and_end():
    probe, trainer, encoder = LinearProbe(every_n_steps=4, solver="lbfgs"), make_trainer(max_steps=10), Encoder()
    probe.on_train_start(trainer, encoder)
    for step in range(1, 11):
        trainer.global_step = step
        probe.on_train_batch_end(trainer, encoder, None, None, step - 1)
    probe.on_train_end(trainer, encoder)
    assert probe_steps(probe) == [0, 4, 8, 10]  # the untrained encoder, every 4, the last step; none twice
    trainer.global_step = 13  # a run that stopped between evaluations is evaluated at its end
    probe.on_train_end(trainer, encoder)
    assert probe_steps(probe) == [0, 4, 8, 10, 13]


def test_no_start_evaluation_when_switched_off_or_resumed():
    encoder = Encoder()
    off = LinearProbe(every_n_steps=4, at_start=False, solver="lbfgs")
    off.on_train_start(make_trainer(), encoder)
    resumed = LinearProbe(every_n_steps=4, solver="lbfgs")
    resumed.on_train_start(make_trainer(step=5), encoder)
    assert off.history == [] and resumed.history == []
    again = LinearProbe(every_n_steps=4, solver="lbfgs")
    again.history = [{"step": 0, "accuracy": 0.5, "seconds": 1.0}]  # restored from a step-0 checkpoint
    again.on_train_start(make_trainer(), encoder)
    assert probe_steps(again) == [0]


def test_max_steps_unset_or_not_reached_does_not_evaluate_off_schedule():
    probe, encoder = LinearProbe(every_n_steps=4, solver="lbfgs"), Encoder()
    for max_steps in (-1, 0, 20):
        probe.on_train_batch_end(make_trainer(step=7, max_steps=max_steps), encoder, None, None, 6)
    assert probe.history == []
    probe.on_train_batch_end(make_trainer(step=7, max_steps=7), encoder, None, None, 6)
    assert probe_steps(probe) == [7]


def test_logged_metrics_history_and_wandb_table():
    probe, trainer, encoder = LinearProbe(every_n_steps=2, solver="lbfgs"), make_trainer(), Encoder()
    first = probe.evaluate(trainer, encoder)
    trainer.global_step = 2
    second = probe.evaluate(trainer, encoder)
    logger = trainer.loggers[0]
    raw = probe.raw_pixel_accuracy
    assert 0.0 < raw <= 1.0
    assert logger.metrics == [
        (0, {"probe/raw_pixel_accuracy": raw}),  # once, before the first evaluation
        (0, {"probe/accuracy": first}),
        (2, {"probe/accuracy": second}),
    ]
    assert [(entry["step"], entry["accuracy"]) for entry in probe.history] == [(0, first), (2, second)]
    assert all(entry["seconds"] > 0 for entry in probe.history)
    probe.on_train_end(trainer, encoder)
    assert logger.tables == [
        {"key": "probe/accuracy_curve", "columns": ["step", "accuracy"], "data": [[0, first], [2, second]]}
    ]


def test_without_raw_pixel_baseline_nothing_raw_is_fitted_or_logged():
    probe, trainer = LinearProbe(raw_pixel_baseline=False, solver="lbfgs"), make_trainer()
    probe.evaluate(trainer, Encoder())
    assert probe.raw_pixel_accuracy is None
    assert [list(metrics) for _, metrics in trainer.loggers[0].metrics] == [["probe/accuracy"]]


def test_raw_pixel_baseline_is_the_protocol_on_the_flattened_inputs():
    probe, trainer = LinearProbe(solver="lbfgs"), make_trainer()
    probe.evaluate(trainer, Encoder())
    data = trainer.datamodule
    (train_x, train_y), (test_x, test_y) = (data.probe_dataset(split).tensors for split in ("train", "test"))
    expected = linear_probe_accuracy(train_x, train_y, test_x, test_y, solver="lbfgs")
    assert probe.raw_pixel_accuracy == expected


def test_printed_progress_lines(capsys):
    probe, trainer = LinearProbe(solver="lbfgs"), make_trainer()
    accuracy = probe.evaluate(trainer, Encoder())
    lines = capsys.readouterr().out.splitlines()
    raw = probe.raw_pixel_accuracy
    patterns = [
        r"probe at step 0: fitted lbfgs on 90 x 6 in \d+\.\d s",
        rf"probe at step 0: raw-pixel baseline {raw:.4f}",
        r"probe at step 0: embedded 90 \+ 31 images in \d+\.\d s",
        r"probe at step 0: fitted lbfgs on 90 x 4 in \d+\.\d s",
        rf"probe at step 0: accuracy {accuracy:.4f} \(untrained encoder\) \(raw-pixel baseline {raw:.4f}\) "
        r"\[\d+\.\d s\]",
    ]
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    trainer.global_step = 3
    probe.raw_pixel_baseline = False
    probe.raw_pixel_accuracy = None
    accuracy = probe.evaluate(trainer, Encoder())
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(rf"probe at step 3: accuracy {accuracy:.4f} \[\d+\.\d s\]", last), last


def test_only_rank_zero_prints(capsys):
    LinearProbe(solver="lbfgs").evaluate(make_trainer(global_zero=False), Encoder())
    assert capsys.readouterr().out == ""


def test_embedding_batches_mode_and_dtype():
    encoder = Encoder(output_dtype=torch.bfloat16)
    encoder.train()
    probe = LinearProbe(batch_size=40, raw_pixel_baseline=False, solver="lbfgs")
    probe.evaluate(make_trainer(), encoder)
    assert [size for size, _, _ in encoder.calls] == [40, 40, 10, 31]  # train split in batches of 40, then test
    assert all(not training and inference for _, training, inference in encoder.calls)
    assert encoder.training  # its mode is given back
    features, labels = probe._embed(encoder, Data().probe_dataset("train"))
    assert features.dtype == torch.float32 and features.shape == (90, 4)  # bf16 features are probed in float32
    assert torch.equal(labels, Data().probe_dataset("train").tensors[1])
    encoder.eval()
    probe.evaluate(make_trainer(step=1), encoder)
    assert not encoder.training


def test_embedding_on_a_rank_takes_its_interleaved_shard(monkeypatch):
    monkeypatch.setattr(linear_probe.distributed, "rank", lambda: 1)
    monkeypatch.setattr(linear_probe.distributed, "world_size", lambda: 3)
    monkeypatch.setattr(linear_probe, "gather_shards", lambda shard: shard)  # look at this rank's shard only
    dataset = Data().probe_dataset("train")
    _, labels = LinearProbe()._embed(Encoder(), dataset)
    assert torch.equal(labels, dataset.tensors[1][1::3])


class FakeCollectives:
    """``dist.all_gather`` / ``dist.broadcast`` of rank ``rank`` among ranks whose shards are ``full[r::world]``."""

    def __init__(self, full: torch.Tensor, world: int, rank: int, rank_zero_value: float = 0.0) -> None:
        self.shards = [full[r::world] for r in range(world)]
        self.rank, self.rank_zero_value = rank, rank_zero_value

    def all_gather(self, outputs: list[torch.Tensor], tensor: torch.Tensor) -> None:
        assert len(outputs) == len(self.shards)
        if tensor.shape == (1,):  # the sizes
            for output, shard in zip(outputs, self.shards, strict=True):
                output.copy_(torch.tensor([shard.shape[0]]))
            return
        assert tensor.shape[0] == max(shard.shape[0] for shard in self.shards)  # every rank sends the same size
        for output, shard in zip(outputs, self.shards, strict=True):
            output.zero_()
            output[: shard.shape[0]] = shard

    def broadcast(self, tensor: torch.Tensor, src: int) -> None:
        assert src == 0
        if self.rank != 0:
            tensor.fill_(self.rank_zero_value)


@pytest.mark.parametrize(("rows", "world", "rank"), [(11, 2, 0), (11, 2, 1), (10, 3, 2), (7, 4, 3), (3, 4, 0)])
def test_gather_shards_rebuilds_the_rows_in_order(monkeypatch, rows, world, rank):
    full = torch.arange(rows * 2, dtype=torch.float32).reshape(rows, 2) + 1.0  # no row is all zeros, like padding
    fake = FakeCollectives(full, world, rank)
    monkeypatch.setattr(linear_probe.distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(linear_probe.distributed, "world_size", lambda: world)
    monkeypatch.setattr(linear_probe.dist, "all_gather", fake.all_gather)
    gathered = gather_shards(fake.shards[rank])
    assert torch.equal(gathered, full)


def test_gather_shards_is_the_identity_on_one_process():
    shard = torch.randn(5, 3)
    assert gather_shards(shard) is shard


def test_accuracy_is_rank_zeros_on_every_rank(monkeypatch):
    fake = FakeCollectives(torch.zeros(2, 1), world=2, rank=1, rank_zero_value=0.123456789012345)
    monkeypatch.setattr(linear_probe.distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(linear_probe.dist, "broadcast", fake.broadcast)
    assert linear_probe._broadcast_from_rank_zero(0.5, torch.device("cpu")) == 0.123456789012345  # float64 kept
    fake.rank = 0
    assert linear_probe._broadcast_from_rank_zero(0.987654321098765, torch.device("cpu")) == 0.987654321098765
    monkeypatch.setattr(linear_probe.distributed, "is_distributed", lambda: False)
    monkeypatch.setattr(linear_probe.dist, "broadcast", None)  # never called on one process
    assert linear_probe._broadcast_from_rank_zero(0.25, torch.device("cpu")) == 0.25


def test_lbfgs_fit_reaches_the_optimum_from_zero_and_counts_iterations():
    data = Data(n_train=120, n_test=1)
    features, labels = data.probe_dataset("train").tensors
    model, iterations = fit_logistic_regression(features.double(), labels, num_classes=3, C=10.0)
    assert model.weight.dtype == torch.float32 and model.weight.shape == (3, 6) and model.bias.shape == (3,)
    assert 1 < iterations < 500
    penalty = 1.0 / (2.0 * 10.0 * 120)
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(features), labels) + penalty * model.weight.square().sum()
    loss.backward()
    gradient = torch.cat([model.weight.grad.flatten(), model.bias.grad])
    assert gradient.abs().max() < 5e-5  # a stationary point of scikit-learn's objective (bias not penalised)
    stronger, _ = fit_logistic_regression(features, labels, num_classes=3, C=0.01)
    assert stronger.weight.norm() < 0.5 * model.weight.norm()  # C is the inverse strength
    one_step, one = fit_logistic_regression(features, labels, num_classes=3, C=10.0, max_iter=1)
    assert one == 1 and not torch.allclose(one_step.weight, model.weight, atol=1e-3)
    with pytest.raises(ValueError, match=r"C=0\.0 must be > 0"):
        fit_logistic_regression(features, labels, num_classes=3, C=0.0)


def test_lbfgs_probe_counts_classes_missing_from_train():
    features = torch.tensor([[0.0], [1.0], [0.1], [0.9]])
    accuracy = linear_probe_accuracy(
        features[:2], torch.tensor([0, 1]), features[2:], torch.tensor([0, 2]), solver="lbfgs"
    )
    assert accuracy == 0.5  # class 2 exists (test only) and is never right


def test_constructor_stores_its_settings_and_names_bad_values():
    probe = LinearProbe(every_n_steps=3, C=2.0, max_iter=7, batch_size=11, raw_pixel_baseline=False,
                        solver="lbfgs", at_start=False)  # fmt: skip
    assert (probe.every_n_steps, probe.C, probe.max_iter, probe.batch_size) == (3, 2.0, 7, 11)
    assert (probe.raw_pixel_baseline, probe.solver, probe.at_start) == (False, "lbfgs", False)
    assert (probe.history, probe.raw_pixel_accuracy) == ([], None)
    default = LinearProbe()
    assert (default.every_n_steps, default.C, default.max_iter, default.batch_size) == (1000, 10.0, 500, 10000)
    assert (default.raw_pixel_baseline, default.solver, default.at_start) == (True, "saga", True)
    for bad, message in [
        ({"every_n_steps": 2.5}, r"LinearProbe\(every_n_steps=2\.5\) must be a positive integer, e.g\. 1000\."),
        ({"every_n_steps": -1}, r"every_n_steps=-1\)"),
        ({"C": -1.0}, r"LinearProbe\(C=-1\.0\) must be > 0, e\.g\. 10\."),
        ({"solver": "adam"}, r"LinearProbe\(solver='adam'\) is unknown: choose one of \('lbfgs', 'saga'\)\."),
    ]:
        with pytest.raises(ValueError, match=message):
            LinearProbe(**bad)


def test_a_datamodule_without_probe_datasets_is_named():
    trainer = make_trainer()
    trainer.datamodule = object()
    with pytest.raises(ValueError, match=r"LinearProbe needs a datamodule with probe_dataset\('train'/'test'\), "
                       r"got object\."):  # fmt: skip
        LinearProbe().evaluate(trainer, Encoder())
    trainer.datamodule = None
    with pytest.raises(ValueError, match="got NoneType"):
        LinearProbe().evaluate(trainer, Encoder())
