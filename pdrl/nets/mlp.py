"""A plain multi-layer perceptron with an optional spectral-norm constraint (MICE)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from pdrl.errors import ConfigError

SPECTRAL_NORM_CHOICES = ("none", "last", "all")


def constrain(layer: nn.Linear, spectral_norm: bool) -> nn.Module:
    """The layer itself, or the layer with its weight divided by its largest singular value."""
    return apply_spectral_norm(layer) if spectral_norm else layer


class MLP(nn.Sequential):
    """Linear -> ReLU -> ... -> Linear.

    Args:
        in_dim: input features.
        hidden_dims: width of each hidden layer (may be empty: a single linear map).
        out_dim: output features.
        spectral_norm: ``"none"``, ``"last"`` (the MICE critic) or ``"all"`` linear layers normalised.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, spectral_norm: str = "none") -> None:
        if spectral_norm not in SPECTRAL_NORM_CHOICES:
            raise ConfigError(
                f"MLP(spectral_norm={spectral_norm!r}) is unknown: choose one of {SPECTRAL_NORM_CHOICES}."
            )
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), *(("hidden_dims", h) for h in hidden_dims)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"MLP({name}) must be positive integers, got {value!r}.")
        widths = [in_dim, *hidden_dims, out_dim]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            is_last = index == len(widths) - 2
            normalised = spectral_norm == "all" or (is_last and spectral_norm == "last")
            layers.append(constrain(nn.Linear(width_in, width_out), normalised))
            if not is_last:
                layers.append(nn.ReLU())
        super().__init__(*layers)
