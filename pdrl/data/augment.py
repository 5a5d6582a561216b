"""The PD paper's CIFAR10 augmentation (AMDIM's), done on whole batches on the training device.

Per image, two views: a horizontal flip shared by both views, then per view independently

1. random translation by up to ``translate`` pixels with reflection padding (probability ``translate_prob``),
2. colour jitter, brightness/contrast/saturation factors in ``[1 - s, 1 + s]`` and a hue shift in
   ``[-hue, hue]`` of a turn, applied in that fixed order (probability ``jitter_prob``),
3. grayscale (probability ``grayscale_prob``),
4. normalisation by the dataset mean and standard deviation.

Everything is one batched torch op per step on ``(B, C, H, W)`` tensors, so a GPU is never starved by
per-image CPU work. Two choices differ from torchvision's per-image transforms and are stated here:
the four jitter operations run in a fixed order (torchvision draws an order per image), and the hue
shift is a rotation of the chroma plane in YIQ space (torchvision goes through HSV).

The random draws are made for the *global* batch (``world_size * B`` images) and each rank keeps its own
slice, so with the same seed on every rank a run on several devices augments each image exactly as a
run on one device with the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdrl import distributed
from pdrl.errors import ConfigError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def uniform_for_global_batch(n: int, columns: int, device: torch.device) -> torch.Tensor:
    """``(n, columns)`` uniform numbers: this rank's slice of a draw for the whole global batch."""
    world, rank = distributed.world_size(), distributed.rank()
    return torch.rand(n * world, columns, device=device)[rank * n : (rank + 1) * n]


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]; float images are taken to be in [0, 1] already and kept as they are."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (0-255) or float (0-1) tensors, got dtype {images.dtype}.")
    return images


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` as a ``(B, 1, H, W)`` tensor."""
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * images + (1 - factor) * other``, clamped to [0, 1] (torchvision's ``_blend``)."""
    return (factor * images + (1.0 - factor) * other).clamp(0.0, 1.0)


def rotate_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) plane of YIQ by ``2 pi turns`` per image; luma is unchanged."""
    to_yiq = images.new_tensor(RGB_TO_YIQ)
    angle = 2.0 * math.pi * turns
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rotation = torch.stack(
        [torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1), torch.stack([zero, sin, cos], -1)], -2
    )
    transform = torch.linalg.inv(to_yiq) @ rotation @ to_yiq
    return torch.einsum("bij,bjhw->bihw", transform, images).clamp(0.0, 1.0)


def translate(images: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor, padding: int) -> torch.Tensor:
    """Shift each image by integer ``(shift_y, shift_x)`` in ``[-padding, padding]``, reflecting at the borders."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    rows = (padding + shift_y)[:, None] + torch.arange(height, device=images.device)
    cols = (padding + shift_x)[:, None] + torch.arange(width, device=images.device)
    index = torch.arange(batch, device=images.device)[:, None, None]
    return padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class PairAugmentation(nn.Module):
    """Two augmented, normalised views of a batch of images (see the module docstring).

    Example::

        augment = PairAugmentation()                    # the paper's CIFAR10 settings
        view1, view2 = augment(images)                  # images: (B, 3, 32, 32) uint8 or float in [0, 1]
        inputs = augment.normalise(images)              # evaluation: normalisation only

    Args:
        translate: largest shift in pixels (reflection padding of that width); 0 disables it.
        translate_prob: probability of translating a view.
        brightness, contrast, saturation: jitter strength s in [0, 1): factors drawn in ``[1 - s, 1 + s]``.
        hue: hue shift in ``[0, 0.5]`` of a turn, drawn in ``[-hue, hue]``.
        jitter_prob: probability of colour-jittering a view.
        grayscale_prob: probability of turning a view to grayscale.
        mean, std: per-channel normalisation (CIFAR10's by default).
    """

    def __init__(
        self,
        translate: int = 4,
        translate_prob: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.2,
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.25,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        if not isinstance(translate, int) or translate < 0:
            raise ConfigError(f"PairAugmentation(translate={translate!r}) must be a non-negative number of pixels.")
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"PairAugmentation({name}={value}) must be in [0, 1), e.g. 0.4.")
        if not 0.0 <= hue <= 0.5:
            raise ConfigError(f"PairAugmentation(hue={hue}) must be in [0, 0.5], e.g. 0.2.")
        for name, value in (
            ("translate_prob", translate_prob),
            ("jitter_prob", jitter_prob),
            ("grayscale_prob", grayscale_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"PairAugmentation({name}={value}) is a probability: it must be in [0, 1].")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ConfigError(f"PairAugmentation needs 3 means and 3 positive stds (RGB), got mean={mean}, std={std}.")
        self.translate, self.translate_prob = translate, translate_prob
        self.jitter = (brightness, contrast, saturation, hue)
        self.jitter_prob, self.grayscale_prob = jitter_prob, grayscale_prob
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` images -> two ``(B, 3, H, W)`` float views, normalised."""
        images = self._check(images)
        flip = uniform_for_global_batch(images.shape[0], 1, images.device)[:, 0] < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return self._view(images), self._view(images)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation input: the images in [0, 1], normalised, not augmented."""
        return (self._check(images) - self.mean) / self.std

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"PairAugmentation needs (B, 3, H, W) RGB image batches, got shape {tuple(images.shape)}.")
        return to_unit_range(images)

    def _view(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        draws = uniform_for_global_batch(batch, 9, images.device)
        apply_translate, apply_jitter, apply_gray = (draws[:, :3] < images.new_tensor(self._probs())).unbind(1)
        if self.translate > 0:
            shifts = (draws[:, 3:5] * (2 * self.translate + 1)).floor().long().clamp(max=2 * self.translate)
            shifts = (shifts - self.translate) * apply_translate[:, None]
            images = translate(images, shifts[:, 0], shifts[:, 1], self.translate)
        jittered = self._colour_jitter(images, draws[:, 5:9])
        images = torch.where(apply_jitter[:, None, None, None], jittered, images)
        images = torch.where(apply_gray[:, None, None, None], grayscale(images).expand_as(images), images)
        return (images - self.mean) / self.std

    def _probs(self) -> tuple[float, float, float]:
        return (self.translate_prob, self.jitter_prob, self.grayscale_prob)

    def _colour_jitter(self, images: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        brightness, contrast, saturation, hue = self.jitter
        spans = images.new_tensor([brightness, contrast, saturation, hue])
        factors = (2.0 * uniforms - 1.0) * spans  # in [-span, span]
        per_image = factors[:, :3, None, None, None] + 1.0  # (B, 3, 1, 1, 1): brightness, contrast, saturation
        images = (images * per_image[:, 0]).clamp(0.0, 1.0)
        images = blend(images, grayscale(images).mean(dim=(1, 2, 3), keepdim=True), per_image[:, 1])
        images = blend(images, grayscale(images), per_image[:, 2])
        return rotate_hue(images, factors[:, 3])
