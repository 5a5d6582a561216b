"""The 25-Gaussians benchmark of GAN mode collapse: a 5 x 5 grid of isotropic Gaussians.

The modes sit at ``spacing * (i - (grid_size - 1) / 2, j - (grid_size - 1) / 2)``; with the defaults
(grid 5, spacing 2, std 0.05) the centres are {-4, -2, 0, 2, 4}^2 and every mode has the same weight.

Its metrics (modes covered, high-quality share) are ``pdrl.metrics.grid_metrics``.
"""

from __future__ import annotations

import torch
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from pdrl.data.resumable import batches_trained
from pdrl.errors import ConfigError


def grid_centres(grid_size: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """The ``(grid_size**2, 2)`` mode centres of a square grid centred on the origin."""
    if not isinstance(grid_size, int) or grid_size < 1:
        raise ConfigError(f"grid_size must be a positive integer (5 for 25 Gaussians), got {grid_size!r}.")
    if not spacing > 0:
        raise ConfigError(f"spacing must be > 0 (the distance between neighbouring modes, e.g. 2), got {spacing!r}.")
    offsets = (torch.arange(grid_size, dtype=torch.float32) - (grid_size - 1) / 2) * spacing
    rows, cols = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1)


def sample_grid(
    num_samples: int, centres: torch.Tensor, std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``num_samples`` points of the equal-weight mixture: a uniformly chosen centre plus N(0, std^2 I) noise."""
    modes = torch.randint(len(centres), (num_samples,), generator=generator)
    return centres[modes] + std * torch.randn(num_samples, centres.shape[1], generator=generator)


class GaussianGridBatches(IterableDataset):
    """``batches_per_epoch`` fresh batches of the mixture per epoch, from one persistent seeded generator.

    Its position is what the datamodule's ``state_dict`` saves: the batches trained on, which is behind what the
    stream yielded (Lightning fetches one batch ahead). ``load_state_dict({"batches_done": k})`` makes the next
    iteration continue an interrupted run: the generator is re-seeded and advanced by k batches exactly, and the
    epoch yields only its remaining ``batches_per_epoch - k % batches_per_epoch`` batches, so epoch ends (and the
    validations there) fall where they did.
    """

    def __init__(self, centres: torch.Tensor, std: float, batch_size: int, batches_per_epoch: int, seed: int) -> None:
        super().__init__()
        self.centres, self.std = centres, std
        self.batch_size, self.batches_per_epoch, self.seed = batch_size, batches_per_epoch, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.resume_at: int | None = None

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.resume_at = int(state_dict["batches_done"])

    def __iter__(self):
        first = 0
        if self.resume_at is not None:
            self.generator = torch.Generator().manual_seed(self.seed)
            for _ in range(self.resume_at):
                sample_grid(self.batch_size, self.centres, self.std, self.generator)
            first, self.resume_at = self.resume_at % self.batches_per_epoch, None
        for _ in range(first, self.batches_per_epoch):
            yield sample_grid(self.batch_size, self.centres, self.std, self.generator)


class GaussianGridDataModule(LightningDataModule):
    """Real samples of the grid mixture for a GAN: training batches, and one fixed evaluation batch.

    The evaluation batch (``num_eval_samples`` real points, fixed by ``seed``) is what the GAN's
    validation step compares against: it generates as many samples and scores them with ``pdrl.metrics.grid_metrics``.

    Args:
        grid_size: modes per side (5 gives the 25 Gaussians).
        spacing: distance between neighbouring centres.
        std: standard deviation of every mode.
        batch_size: real samples per training step.
        batches_per_epoch: training steps per epoch (the data is an endless stream; this sets the
            validation rhythm).
        num_eval_samples: real (and generated) points per evaluation; 2500 in VEEGAN/PacGAN.
        seed: seeds the training stream and the evaluation batch.
    """

    def __init__(
        self,
        grid_size: int = 5,
        spacing: float = 2.0,
        std: float = 0.05,
        batch_size: int = 256,
        batches_per_epoch: int = 500,
        num_eval_samples: int = 2500,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not std > 0:
            raise ConfigError(f"std must be > 0 (0.05 in the usual benchmark), got {std!r}.")
        for name, value in (
            ("batch_size", batch_size),
            ("batches_per_epoch", batches_per_epoch),
            ("num_eval_samples", num_eval_samples),
        ):
            if not isinstance(value, int) or value < 2:
                raise ConfigError(f"{name} must be an integer >= 2, got {value!r}.")
        self.save_hyperparameters()
        self._resume_state: dict[str, int] | None = None
        self.centres = grid_centres(grid_size, spacing)
        self.std = float(std)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        self.batches = GaussianGridBatches(self.centres, self.std, hp.batch_size, hp.batches_per_epoch, hp.seed)
        if self._resume_state is not None:
            self.batches.load_state_dict(self._resume_state)
        return DataLoader(self.batches, batch_size=None)

    def state_dict(self) -> dict[str, int]:
        """The batches trained on so far (Lightning saves this in every checkpoint; a resume continues there)."""
        return {"batches_done": batches_trained(self.trainer)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_state = dict(state_dict)
        if getattr(self, "batches", None) is not None:
            self.batches.load_state_dict(state_dict)

    def val_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams.seed + 1)
        eval_samples = sample_grid(self.hparams.num_eval_samples, self.centres, self.std, generator)
        return DataLoader([eval_samples], batch_size=None)
