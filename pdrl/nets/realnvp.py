"""Volume-preserving RealNVP flows: the invertible encoders of Tschannen et al.'s shallow task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pdrl.errors import ConfigError
from pdrl.nets.mlp import MLP


class AdditiveCoupling(nn.Module):
    """One additive coupling layer (NICE / RealNVP without scale, so the Jacobian determinant is 1)::

        y[:k] = x[:k]
        y[k:] = x[k:] + shift(x[:k])          with k = dim // 2

    ``shift`` is an MLP whose weights start near zero (normal, std ``init_std``; zero biases), so the
    layer starts close to the identity.

    Args:
        dim: input (and output) size, at least 2.
        hidden_dims: hidden widths of the shift MLP (Tschannen et al.: (512, 512)).
        init_std: standard deviation of the initial weights of the shift MLP.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int], init_std: float) -> None:
        super().__init__()
        self.split = dim // 2
        self.shift = MLP(self.split, list(hidden_dims), dim - self.split)
        for module in self.shift.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=init_std)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, moved = x[:, : self.split], x[:, self.split :]
        return torch.cat([kept, moved + self.shift(kept)], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        kept, moved = y[:, : self.split], y[:, self.split :]
        return torch.cat([kept, moved - self.shift(kept)], dim=1)


class RealNVP(nn.Module):
    """A stack of additive couplings, each followed by a fixed random permutation of the coordinates.

    The shallow task of Tschannen et al. (2020, Sec. 3.1; PD paper Sec. 5.2) uses 30 couplings with
    shift MLPs 512-512 (ReLU) initialised with std 1e-4. The representation has the input's size and the
    map is invertible (``inverse``), so any gain of a linear probe comes from re-arranging information,
    not from adding or dropping any.

    Args:
        dim: input size (e.g. 392 for half an MNIST image, 1536 for half a CIFAR10 image).
        num_couplings: number of coupling layers.
        hidden_dims: hidden widths of each coupling's shift MLP.
        init_std: standard deviation of the shift MLPs' initial weights.
        seed: seed of the fixed permutations (use different seeds for the two encoders F and G).
    """

    def __init__(
        self,
        dim: int,
        num_couplings: int = 30,
        hidden_dims: Sequence[int] = (512, 512),
        init_std: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 2:
            raise ConfigError(f"RealNVP(dim={dim!r}) must be an integer >= 2 (a coupling splits the input in two).")
        if not isinstance(num_couplings, int) or num_couplings < 1:
            raise ConfigError(f"RealNVP(num_couplings={num_couplings!r}) must be a positive integer, e.g. 30.")
        if not init_std >= 0:
            raise ConfigError(f"RealNVP(init_std={init_std!r}) must be >= 0, e.g. 1e-4.")
        self.dim = dim
        self.couplings = nn.ModuleList(AdditiveCoupling(dim, hidden_dims, init_std) for _ in range(num_couplings))
        generator = torch.Generator().manual_seed(seed)
        permutations = torch.stack([torch.randperm(dim, generator=generator) for _ in range(num_couplings)])
        self.register_buffer("permutations", permutations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"RealNVP(dim={self.dim}) expects inputs of shape (n, {self.dim}), got {tuple(x.shape)}.")
        for coupling, permutation in zip(self.couplings, self.permutations, strict=True):
            x = coupling(x)[:, permutation]
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input that ``forward`` maps to ``y``."""
        for coupling, permutation in zip(reversed(self.couplings), reversed(self.permutations), strict=True):
            y = coupling.inverse(y[:, torch.argsort(permutation)])
        return y
