"""The critics of E estimators (same architecture, own weights) as one batched computation.

Used by the ensemble engine (:func:`bench.mi.mi_engines.train_ensemble`): slice e of every stacked
output equals what ``models[e]`` computes alone, so E estimators train in one set of ``bmm`` calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from pdrl.tasks.mi_estimation import MIEstimation


class StackedLinear(nn.Module):
    """The same ``nn.Linear`` layer of E models as one batched layer: ``(E, n, in) -> (E, n, out)``.

    Built from the models' own layers (weights copied), so every slice starts where its model starts.
    Where a model's layer is spectrally normalised, its slice is divided by sigma = u^T W v after one power
    iteration per forward, exactly as ``torch.nn.utils.parametrizations.spectral_norm`` does it. Layers
    without a bias (the joint critic's ``y`` half of its first layer) stay without one.
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        weights, normalised, left, right = [], [], [], []
        for layer in layers:
            if parametrize.is_parametrized(layer, "weight"):
                norm = layer.parametrizations.weight[0]
                weights.append(layer.parametrizations.weight.original.detach())
                normalised.append(True)
                left.append(norm._u.detach())
                right.append(norm._v.detach())
            else:
                weights.append(layer.weight.detach())
                normalised.append(False)
                left.append(torch.ones(layer.out_features))
                right.append(torch.ones(layer.in_features))
        self.weight = nn.Parameter(torch.stack(weights).clone())
        has_bias = [layer.bias is not None for layer in layers]
        if any(has_bias) and not all(has_bias):
            raise ValueError("StackedLinear needs layers that all have a bias or all have none.")
        self.bias = (
            nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).clone()) if all(has_bias) else None
        )
        self.register_buffer("normalised", torch.tensor(normalised))
        self.register_buffer("left", torch.stack(left).clone())
        self.register_buffer("right", torch.stack(right).clone())
        self.any_normalised = any(normalised)

    def normalised_weight(self) -> torch.Tensor:
        weight = self.weight
        if self.any_normalised:
            with torch.no_grad():
                self.left.copy_(F.normalize(torch.bmm(weight, self.right[:, :, None])[:, :, 0], dim=1, eps=1e-12))
                self.right.copy_(F.normalize(torch.bmm(self.left[:, None, :], weight)[:, 0, :], dim=1, eps=1e-12))
            sigma = torch.einsum("eo,eoi,ei->e", self.left.clone(), weight, self.right.clone())
            weight = weight / torch.where(self.normalised, sigma, torch.ones_like(sigma))[:, None, None]
        return weight

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.normalised_weight().transpose(1, 2)
        if self.bias is None:
            return torch.bmm(inputs, weight)
        return torch.baddbmm(self.bias[:, None, :], inputs, weight)


def _linear_layers(module: nn.Module) -> list[nn.Module]:
    """The linear layers of a critic MLP in order (ReLUs dropped; a spectrally normalised layer counts once)."""
    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


def _stack(per_model: list[list[nn.Module]]) -> nn.ModuleList:
    return nn.ModuleList(StackedLinear(list(layers)) for layers in zip(*per_model, strict=True))


def _mlp(layers: nn.ModuleList, hidden: torch.Tensor) -> torch.Tensor:
    for index, layer in enumerate(layers):
        if index:
            hidden = torch.relu(hidden)
        hidden = layer(hidden)
    return hidden


class StackedSeparableCritics(nn.Module):
    """The separable critics of E models: ``forward(x, y)`` gives ``(E, n, n)``, slice e = ``models[e](x, y)``."""

    def __init__(self, models: list[MIEstimation]) -> None:
        super().__init__()
        self.count = len(models)
        self.encoders = nn.ModuleList(
            _stack([_linear_layers(getattr(model, side)) for model in models]) for side in ("encoder_x", "encoder_y")
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        embed_x = _mlp(self.encoders[0], x.expand(self.count, *x.shape))
        embed_y = _mlp(self.encoders[1], y.expand(self.count, *y.shape))
        return torch.bmm(embed_x, embed_y.transpose(1, 2))


class StackedConcatCritics(nn.Module):
    """The joint (concat) critics of E models, ``(E, n, n)`` scores, slice e = ``models[e](x, y)``.

    As in :class:`pdrl.heads.ConcatCritic`, the first layer is split, ``W [x; y] = W_x x + W_y y``, and
    broadcast over the n^2 pairs; the rest of the MLP runs on all pairs of all E models in one ``bmm`` per layer.
    """

    def __init__(self, models: list[MIEstimation]) -> None:
        super().__init__()
        self.count = len(models)
        heads = [model.head for model in models]
        self.first_x = StackedLinear([head.first_a for head in heads])
        self.first_y = StackedLinear([head.first_b for head in heads])
        self.rest = _stack([_linear_layers(head.rest) for head in heads])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n_x, n_y = x.shape[0], y.shape[0]
        hidden_x = self.first_x(x.expand(self.count, *x.shape))
        hidden_y = self.first_y(y.expand(self.count, *y.shape))
        pairs = (hidden_x[:, :, None, :] + hidden_y[:, None, :, :]).reshape(self.count, n_x * n_y, -1)
        scores = _mlp(self.rest, torch.relu(pairs))
        return scores.reshape(self.count, n_x, n_y)


def stack_critics(models: list[MIEstimation]) -> nn.Module:
    """The stacked critics of ``models``, which must share one critic architecture."""
    kinds = {model.hparams.critic_name for model in models}
    shapes = {(tuple(model.hparams.hidden_dims), model.hparams.embed_dim) for model in models}
    if len(kinds) != 1 or len(shapes) != 1:
        raise ValueError(
            f"The ensemble engine stacks critics of one architecture, got {sorted(kinds)} with {sorted(shapes)}: "
            "run one sweep per critic."
        )
    return StackedSeparableCritics(models) if kinds == {"separable"} else StackedConcatCritics(models)
