"""Linear evaluation of a frozen representation during training (Tschannen et al. 2020; PD paper Sec. 5.2).

The protocol: embed the *full* train and test splits with the encoder F (once per split, eval mode, no
gradient), then ``pdrl.probe_solvers.linear_probe_accuracy`` on the features: min-max scale them with the train
split's range, fit a multinomial logistic regression from scratch on the train features (``solver="saga"``,
scikit-learn's, the paper's protocol exactly; or ``"lbfgs"``, full-batch L-BFGS in PyTorch to the optimum),
report accuracy on the test features. The solvers and their equations are in ``pdrl.probe_solvers``.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from pytorch_lightning import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset, Subset

from pdrl import distributed
from pdrl.errors import ConfigError
from pdrl.probe_solvers import SOLVERS, linear_probe_accuracy
from pdrl.wandb_setup import wandb_loggers


def gather_shards(shard: torch.Tensor) -> torch.Tensor:
    """Rebuild a full tensor from each rank's rows ``rank::world_size`` (shards may differ in size by one).

    Pads every shard to the largest size, all-gathers, trims, and interleaves the rows back into their
    original order, so no row is lost or counted twice. Identity on one process.
    """
    if not distributed.is_distributed():
        return shard
    world = distributed.world_size()
    size = torch.tensor([shard.shape[0]], device=shard.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    padded = shard.new_zeros((max(sizes), *shard.shape[1:]))
    padded[: shard.shape[0]] = shard
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    full = shard.new_zeros((sum(sizes), *shard.shape[1:]))
    for rank, (part, part_size) in enumerate(zip(gathered, sizes, strict=True)):
        full[rank::world] = part[:part_size]
    return full


def _broadcast_from_rank_zero(value: float, device: torch.device) -> float:
    if not distributed.is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.item()


class LinearProbe(Callback):
    """Linear evaluation of ``pl_module.embed`` at the start (the untrained encoder), every ``every_n_steps`` training
    steps, and at the end.

    Needs the datamodule to provide ``probe_dataset("train")`` and ``probe_dataset("test")`` (datasets of
    ``(input, label)`` over the full splits) and the task to provide ``embed(inputs) -> features``.

    Each evaluation runs the encoder once over each split, in inference mode (the task's ``embed`` chooses its
    precision). Under DDP every rank embeds the disjoint shard ``rank::world_size`` (no padding, so no image counts
    twice), the features are gathered in their original order, and rank 0's accuracy is broadcast, so every rank logs
    the same number, equal to a single-process run's. Logs ``probe/accuracy`` (step 0 is the untrained encoder, the
    honest baseline of every learned curve) and, once, ``probe/raw_pixel_accuracy`` (the same protocol on the raw
    inputs). Each evaluation prints one line per phase (embedding, fitting). The history survives a resume.

    Args:
        every_n_steps: evaluate when the global step is a multiple of this (the paper: 1000).
        C: inverse L2 strength of the logistic regression (the paper: 10).
        max_iter: L-BFGS iterations at most.
        batch_size: images per encoder call while embedding.
        raw_pixel_baseline: also evaluate the raw inputs once.
        solver: ``"saga"``: scikit-learn's ``LogisticRegression(C, solver="saga", tol=0.1)``, the paper's protocol
            exactly, on the CPU (all 60000 MNIST train images in about 2.5 s); ``"lbfgs"``: pdrl's full-batch L-BFGS
            to the optimum on the features' own device (fast on a GPU; about 50 s for MNIST on 2 CPU cores).
        at_start: also evaluate the untrained encoder when training starts from step 0.
    """

    def __init__(
        self,
        every_n_steps: int = 1000,
        C: float = 10.0,
        max_iter: int = 500,
        batch_size: int = 10000,
        raw_pixel_baseline: bool = True,
        solver: str = "saga",
        at_start: bool = True,
    ) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ConfigError(f"LinearProbe(every_n_steps={every_n_steps!r}) must be a positive integer, e.g. 1000.")
        if not C > 0:
            raise ConfigError(f"LinearProbe(C={C!r}) must be > 0, e.g. 10.")
        if solver not in SOLVERS:
            raise ConfigError(f"LinearProbe(solver={solver!r}) is unknown: choose one of {SOLVERS}.")
        self.every_n_steps = every_n_steps
        self.C = C
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.raw_pixel_baseline = raw_pixel_baseline
        self.solver = solver
        self.at_start = at_start
        self.history: list[dict[str, float]] = []
        self.raw_pixel_accuracy: float | None = None

    def state_dict(self) -> dict:
        return {"history": [dict(entry) for entry in self.history], "raw_pixel_accuracy": self.raw_pixel_accuracy}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [dict(entry) for entry in state_dict["history"]]
        self.raw_pixel_accuracy = state_dict["raw_pixel_accuracy"]

    def _datasets(self, trainer: Trainer) -> tuple[Dataset, Dataset]:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "probe_dataset"):
            raise ConfigError(
                f"LinearProbe needs a datamodule with probe_dataset('train'/'test'), got {type(datamodule).__name__}."
            )
        return datamodule.probe_dataset("train"), datamodule.probe_dataset("test")

    def _embed(self, pl_module: LightningModule, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        shard = Subset(dataset, range(distributed.rank(), len(dataset), distributed.world_size()))
        features, labels = [], []
        for inputs, targets in DataLoader(shard, batch_size=self.batch_size, shuffle=False):
            features.append(pl_module.embed(inputs.to(pl_module.device)).float())
            labels.append(targets.to(pl_module.device))
        return gather_shards(torch.cat(features)), gather_shards(torch.cat(labels))

    def _raw_inputs(self, dataset: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = zip(*DataLoader(dataset, batch_size=len(dataset), shuffle=False), strict=True)
        return inputs[0].flatten(1).to(device), labels[0].to(device)

    def _log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def _say(self, trainer: Trainer, text: str) -> None:
        if trainer.is_global_zero:
            print(f"probe at step {trainer.global_step}: {text}", flush=True)

    def _accuracy(self, trainer: Trainer, device: torch.device, train: tuple, test: tuple) -> float:
        started = time.perf_counter()
        accuracy = linear_probe_accuracy(*train, *test, self.C, self.max_iter, self.solver)
        self._say(trainer, f"fitted {self.solver} on {len(train[0])} x {train[0].shape[1]} in "
                  f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        return _broadcast_from_rank_zero(accuracy, device)

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> float:
        """Run the protocol now, record and log the accuracy, and return it."""
        started = time.perf_counter()
        train_set, test_set = self._datasets(trainer)
        device = pl_module.device
        if self.raw_pixel_baseline and self.raw_pixel_accuracy is None:
            raw_train, raw_test = self._raw_inputs(train_set, device), self._raw_inputs(test_set, device)
            self.raw_pixel_accuracy = self._accuracy(trainer, device, raw_train, raw_test)
            self._log(trainer, {"probe/raw_pixel_accuracy": self.raw_pixel_accuracy})
            self._say(trainer, f"raw-pixel baseline {self.raw_pixel_accuracy:.4f}")
        was_training = pl_module.training
        pl_module.eval()
        embedding_started = time.perf_counter()
        try:
            with torch.inference_mode():
                train = self._embed(pl_module, train_set)
                test = self._embed(pl_module, test_set)
        finally:
            pl_module.train(was_training)
        train, test = (tuple(tensor.clone() for tensor in split) for split in (train, test))  # normal tensors again
        self._say(trainer, f"embedded {len(train_set)} + {len(test_set)} images in "
                  f"{time.perf_counter() - embedding_started:.1f} s")  # fmt: skip
        accuracy = self._accuracy(trainer, device, train, test)
        seconds = time.perf_counter() - started
        self.history.append({"step": trainer.global_step, "accuracy": accuracy, "seconds": seconds})
        self._log(trainer, {"probe/accuracy": accuracy})
        baseline = f" (raw-pixel baseline {self.raw_pixel_accuracy:.4f})" if self.raw_pixel_accuracy else ""
        untrained = " (untrained encoder)" if trainer.global_step == 0 else ""
        self._say(trainer, f"accuracy {accuracy:.4f}{untrained}{baseline} [{seconds:.1f} s]")
        return accuracy

    def _evaluated_now(self, trainer: Trainer) -> bool:
        return bool(self.history) and self.history[-1]["step"] == trainer.global_step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_start and trainer.global_step == 0 and not self._evaluated_now(trainer):
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        at_max_steps = trainer.max_steps is not None and 0 < trainer.max_steps <= step
        if (step % self.every_n_steps == 0 or at_max_steps) and not self._evaluated_now(trainer):
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._evaluated_now(trainer):
            self.evaluate(trainer, pl_module)
        rows = [[entry["step"], entry["accuracy"]] for entry in self.history]
        for logger in wandb_loggers(trainer, include_disabled=True) if rows else []:
            logger.log_table(key="probe/accuracy_curve", columns=["step", "accuracy"], data=rows)
