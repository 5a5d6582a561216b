"""Correlated Gaussians with a known point-wise dependency: the MI estimation benchmark's data.

PD paper, Application I (after Poole et al. 2019 and Song & Ermon 2020)::

    x, eps ~ N(0, I_d),   y = rho x + sqrt(1 - rho^2) eps          I(X; Y) = -(d/2) log(1 - rho^2)

and the Cubic task, which observes ``y^3`` instead of ``y`` (an invertible map of y, so the MI is unchanged).
Per dimension (x, y) is a standard bivariate normal with correlation rho, so the point-wise dependency is
closed form::

    log r(x, y) = log p(x, y) / (p(x) p(y))
                = -(d/2) log(1 - rho^2) - (rho^2 |x|^2 + rho^2 |y|^2 - 2 rho x.y) / (2 (1 - rho^2))

Under the joint its mean is the MI and its variance is exactly ``d rho^2``. For the Cubic task the Jacobian
of ``y -> y^3`` appears in p(x, y) and in p(y) alike and cancels: log r is the Gaussian one at the cube root.

MICE's extension correlates the samples *within* a batch: ``x_i = c x_{i-1} + sqrt(1 - c^2) e_i`` (an AR(1)
chain along the batch with x_0 ~ N(0, I), so every x_i is still N(0, I)), and y_i is drawn from x_i as above.
The MI of each pair is unchanged, but the off-diagonal pairs of a batch are no longer samples of P(X)P(Y).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from pdrl.data.resumable import batches_trained
from pdrl.errors import ConfigError

TASKS = ("gaussian", "cubic")


def rho_from_mi(mi: float, dim: int) -> float:
    """The per-dimension correlation that gives ``mi`` nats in ``dim`` dimensions: sqrt(1 - exp(-2 mi / d))."""
    if mi < 0 or dim <= 0:
        raise ConfigError(f"rho_from_mi needs mi >= 0 and dim > 0, got mi={mi}, dim={dim}.")
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def mi_from_rho(rho: float, dim: int) -> float:
    """The true MI in nats, -(d/2) log(1 - rho^2)."""
    if not 0.0 <= abs(rho) < 1.0:
        raise ValueError(f"mi_from_rho needs |rho| < 1, got {rho}.")
    return -0.5 * dim * math.log1p(-rho * rho)


def statistical_floor(mi: float, dim: int, batch_size: int) -> float:
    """``d rho^2 / n``: the variance of the mean of log r over n joint pairs (Var_P[log r] = d rho^2)."""
    return dim * rho_from_mi(mi, dim) ** 2 / batch_size


def cube_root(values: torch.Tensor) -> torch.Tensor:
    """The real cube root, sign preserved (inverse of the Cubic task's ``y -> y^3``)."""
    return torch.sign(values) * values.abs().pow(1.0 / 3.0)


def sample_pairs(
    batch_size: int,
    dim: int,
    rho: float,
    task: str = "gaussian",
    batch_correlation: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` joint pairs (x_i, y_i), each ``(batch_size, dim)``.

    Args:
        rho: per-dimension correlation of x and y.
        task: ``"gaussian"`` or ``"cubic"`` (y is observed as y^3).
        batch_correlation: c of MICE's within-batch chain x_i = c x_{i-1} + sqrt(1 - c^2) e_i (0: i.i.d.).
        generator: the random stream (a seeded ``torch.Generator`` for reproducible data).
    """
    if task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}: choose one of {TASKS}.")
    if not 0.0 <= batch_correlation < 1.0:
        raise ConfigError(f"batch_correlation must be in [0, 1), got {batch_correlation}.")
    noise_x = torch.randn(batch_size, dim, generator=generator)
    noise_y = torch.randn(batch_size, dim, generator=generator)
    x = noise_x if batch_correlation == 0.0 else _ar1_chain(noise_x, batch_correlation)
    y = rho * x + math.sqrt(1.0 - rho * rho) * noise_y
    return x, (y.pow(3) if task == "cubic" else y)


def _ar1_chain(noise: torch.Tensor, correlation: float) -> torch.Tensor:
    """x_0 = e_0, x_i = c x_{i-1} + sqrt(1 - c^2) e_i, as one matrix product ``x = A e``.

    ``A[i, k] = c^(i - k) * w_k`` for k <= i, with w_0 = 1 and w_k = sqrt(1 - c^2), so Var[x_i] = 1.
    """
    n = noise.shape[0]
    index = torch.arange(n, dtype=noise.dtype)
    lag = index[:, None] - index[None, :]
    weights = torch.full((n,), math.sqrt(1.0 - correlation**2), dtype=noise.dtype)
    weights[0] = 1.0
    chain = torch.where(lag >= 0, correlation ** lag.clamp(min=0), torch.zeros(())) * weights[None, :]
    return chain @ noise


def log_pd(x: torch.Tensor, y: torch.Tensor, rho: float, task: str = "gaussian") -> torch.Tensor:
    """True point-wise log-PD of the pairs (x_i, y_i), shape ``(n,)`` (the diagonal of :func:`log_pd_matrix`)."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: choose one of {TASKS}.")
    x = x.double()
    y = (cube_root(y) if task == "cubic" else y).double()
    one_minus = 1.0 - rho * rho
    quadratic = rho * rho * (x.square() + y.square()).sum(1) - 2.0 * rho * (x * y).sum(1)
    return -0.5 * x.shape[1] * math.log(one_minus) - quadratic / (2.0 * one_minus)


def log_pd_matrix(x: torch.Tensor, y: torch.Tensor, rho: float, task: str = "gaussian") -> torch.Tensor:
    """True point-wise log-PD of every pair: ``out[i, j] = log r(x_i, y_j)`` (joint pairs on the diagonal).

    The formula of the module docstring, in float64; for the Cubic task y is first mapped back by the cube root.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: choose one of {TASKS}.")
    x = x.double()
    y = (cube_root(y) if task == "cubic" else y).double()
    dim = x.shape[1]
    one_minus = 1.0 - rho * rho
    quadratic = rho * rho * (x.square().sum(1)[:, None] + y.square().sum(1)[None, :]) - 2.0 * rho * (x @ y.T)
    return -0.5 * dim * math.log(one_minus) - quadratic / (2.0 * one_minus)


@dataclass(frozen=True)
class StaircaseSettings:
    """What an MI staircase is: the one list of its settings, shared by :class:`MIStaircase`, the config keys
    of :class:`GaussianMIDataModule` and the MI benchmark's runs. Checked once, here, when built.

    Stage k lasts ``steps_per_level`` steps at true MI ``mi_levels[k]`` (PD paper: 2, 4, 6, 8, 10 nats,
    4000 steps each).

    Args:
        dim: dimension d of x and y (20 in the papers).
        batch_size: pairs per step n.
        mi_levels: true MI of each stage, in nats.
        steps_per_level: steps per stage.
        task: ``"gaussian"`` or ``"cubic"``.
        batch_correlation: MICE's within-batch chain correlation c in [0, 1); 0 gives i.i.d. pairs.
        batch_correlation_uniform: draw c ~ U[0, batch_correlation] afresh for every batch instead.
        heldout_batches: held-out batches for the point-wise check at the end of each stage (0: none).
        seed: seed of the training stream (the held-out stream uses ``seed + 1``).
    """

    dim: int = 20
    batch_size: int = 64
    mi_levels: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0)
    steps_per_level: int = 4000
    task: str = "gaussian"
    batch_correlation: float = 0.0
    batch_correlation_uniform: bool = False
    heldout_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"Unknown task {self.task!r}: choose one of {TASKS}.")
        if self.dim <= 0 or self.batch_size < 2 or self.steps_per_level <= 0 or self.heldout_batches < 0:
            raise ConfigError(
                "The MI staircase needs dim > 0, batch_size >= 2, steps_per_level > 0 and heldout_batches >= 0, "
                f"got dim={self.dim}, batch_size={self.batch_size}, steps_per_level={self.steps_per_level}, "
                f"heldout_batches={self.heldout_batches}."
            )
        if not self.mi_levels or any(level <= 0 for level in self.mi_levels):
            raise ConfigError(
                f"mi_levels must be a non-empty list of positive MI values in nats, got {self.mi_levels}."
            )
        if not 0.0 <= self.batch_correlation < 1.0:
            raise ConfigError(
                f"batch_correlation must be in [0, 1) (MICE uses 0.1 ... 0.5), got {self.batch_correlation}."
            )
        object.__setattr__(self, "mi_levels", tuple(float(level) for level in self.mi_levels))  # a copy: frozen
        object.__setattr__(self, "batch_correlation", float(self.batch_correlation))

    @property
    def total_steps(self) -> int:
        return len(self.mi_levels) * self.steps_per_level

    def true_mi(self, step: int) -> float:
        """The true MI at a (0-based) training step."""
        return self.mi_levels[min(step // self.steps_per_level, len(self.mi_levels) - 1)]


class MIStaircase(IterableDataset):
    """The benchmark's data stream: whole batches, one per training step, MI rising stage by stage.

    Made of ``settings`` (:class:`StaircaseSettings`). Each item is a dict with ``x``, ``y``
    (``(batch_size, dim)``), the true ``mi`` and ``rho`` (scalars) and the within-batch ``batch_correlation``
    used. On the last step of every stage it also holds ``heldout_x``, ``heldout_y``
    (``(heldout_batches, batch_size, dim)``: fresh i.i.d. batches at that stage's MI, from a separate random
    stream) and ``heldout_log_pd``, the true ``(heldout_batches, batch_size, batch_size)`` log-PD matrix of each
    held-out batch. Held-out pairs come in batches of the training size because some estimators' log-PD
    depends on the width of the score matrix (the imbalanced PC adds log(n - 1)).

    Use with ``DataLoader(stream, batch_size=None)``: no per-sample collation. Every iteration restarts
    the same seeded stream, at step ``start_step`` (0 unless ``load_state_dict`` set it; it applies to the next
    iteration only): the steps before it are drawn and dropped, so the batches from there on are exactly those
    of an uninterrupted pass.
    """

    def __init__(self, settings: StaircaseSettings = StaircaseSettings()) -> None:
        super().__init__()
        self.settings = settings
        self.start_step = 0

    def state_dict(self) -> dict[str, int]:
        """Where the next iteration starts (``{"start_step": k}``)."""
        return {"start_step": self.start_step}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.start_step = int(state_dict["start_step"])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        settings = self.settings
        generator = torch.Generator().manual_seed(settings.seed)
        heldout_generator = torch.Generator().manual_seed(settings.seed + 1)
        start, self.start_step = self.start_step % settings.total_steps, 0
        for step in range(settings.total_steps):
            mi = settings.true_mi(step)
            rho = rho_from_mi(mi, settings.dim)
            correlation = settings.batch_correlation
            if settings.batch_correlation_uniform:
                correlation = correlation * torch.rand((), generator=generator).item()
            x, y = sample_pairs(settings.batch_size, settings.dim, rho, settings.task, correlation, generator)
            stage_ends = settings.heldout_batches > 0 and (step + 1) % settings.steps_per_level == 0
            if step < start:  # already trained on before a resume: advance both streams exactly, yield nothing
                if stage_ends:
                    for _ in range(settings.heldout_batches):
                        sample_pairs(settings.batch_size, settings.dim, rho, settings.task, 0.0, heldout_generator)
                continue
            batch = {
                "x": x,
                "y": y,
                "mi": torch.tensor(mi),
                "rho": torch.tensor(rho),
                "batch_correlation": torch.tensor(correlation),
            }
            if stage_ends:
                batch.update(self.heldout(rho, heldout_generator))
            yield batch

    def heldout(self, rho: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``heldout_batches`` i.i.d. batches and the true log-PD matrix of each."""
        settings = self.settings
        pairs = [
            sample_pairs(settings.batch_size, settings.dim, rho, settings.task, 0.0, generator)
            for _ in range(settings.heldout_batches)
        ]
        return {
            "heldout_x": torch.stack([x for x, _ in pairs]),
            "heldout_y": torch.stack([y for _, y in pairs]),
            "heldout_log_pd": torch.stack([log_pd_matrix(x, y, rho, settings.task) for x, y in pairs]).float(),
        }


class GaussianMIDataModule(LightningDataModule):
    """LightningDataModule around :class:`MIStaircase`; one epoch is the whole staircase.

    Its keyword arguments are the fields of :class:`StaircaseSettings` (``dim``, ``batch_size``, ``mi_levels``,
    ``steps_per_level``, ``task``, ``batch_correlation``, ``batch_correlation_uniform``, ``heldout_batches``,
    ``seed``): the config keys of ``data.init_args``, which ``python -m pdrl.fit`` reads from that dataclass.

    Its ``state_dict`` (saved by Lightning in every checkpoint) holds the number of steps already trained on, so
    a resumed run continues the staircase where it stopped; see :func:`pdrl.data.resumable.batches_trained`.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.stream = MIStaircase(StaircaseSettings(**settings))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.stream, batch_size=None, num_workers=0)

    def state_dict(self) -> dict[str, int]:
        return {"start_step": batches_trained(self.trainer) % self.stream.settings.total_steps}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.stream.load_state_dict(state_dict)
