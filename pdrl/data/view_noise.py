"""Gaussian noise on the views of training pairs, the same on 1 process and on k ranks, resumable from a checkpoint."""

from __future__ import annotations

import torch

from pdrl.errors import ConfigError

SEED_MIX = 0x5EED_0F_B1EE  # the noise's own stream: the run's seed XOR this, never the weights' initial draws


class ViewNoise:
    """``view + std * N(0, I)`` on every view of a training batch, from a generator of its own.

    The generator lives on the CPU and is seeded from the run's seed (``torch.initial_seed()``, which
    ``seed_everything`` sets on every rank). Each rank draws the noise of the whole global batch and keeps its own rows,
    ``[rank * n, (rank + 1) * n)``, so no two pairs of a global batch share noise, 1 process and k ranks add the same
    noise to the same pair, and no other random draw (dropout, augmentation, a probe) moves it. ``state_dict`` holds
    the generator's state, so a datamodule that returns it from its own ``state_dict`` (Lightning keeps that in every
    checkpoint) resumes the noise exactly.

    Args:
        std: standard deviation of the noise, in the views' units (pixels in [0, 1]); 0: no noise.
    """

    def __init__(self, std: float = 0.0) -> None:
        number = isinstance(std, int | float) and not isinstance(std, bool)
        if not (number and 0.0 <= std < float("inf")):
            raise ConfigError(f"view_noise_std={std!r} must be a finite number >= 0, e.g. 0 (none) or 0.25.")
        self.std = float(std)
        self._generator: torch.Generator | None = None
        self._restored_state: torch.Tensor | None = None  # from a checkpoint, until the generator is made

    def __call__(self, views: tuple[torch.Tensor, ...], rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
        if self.std == 0.0:
            return views
        generator = self._the_generator()
        noisy = []
        for view in views:
            rows = view.shape[0]
            noise = torch.randn((world_size * rows, *view.shape[1:]), generator=generator, dtype=view.dtype)
            noisy.append(view + self.std * noise[rank * rows : (rank + 1) * rows].to(view.device))
        return tuple(noisy)

    def _the_generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(torch.initial_seed() ^ SEED_MIX)
            if self._restored_state is not None:
                self._generator.set_state(self._restored_state)
        return self._generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator's state once it has drawn; empty before."""
        return {} if self._generator is None else {"view_noise_generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self._restored_state = state_dict.get("view_noise_generator")
        self._generator = None  # made again from the restored state at the next draw
