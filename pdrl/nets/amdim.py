"""AMDIM-style convolutional encoder (Bachman et al. 2019) for the PD paper's deep task on 32x32 images.

The encoder returns three views of one image, all embedded in the same ``n_rkhs``-dimensional space:

- ``global_vector`` ``(n, n_rkhs)``: the 1x1 feature map, the representation (a linear probe reads it);
- ``map5`` ``(n, n_rkhs, 5, 5)`` and ``map7`` ``(n, n_rkhs, 7, 7)``: local feature maps passed through
  1x1-convolution "RKHS" embedding heads, so that their inner products with ``global_vector`` are scores.

Spatial sizes for a 32x32 input (no padding anywhere, as in AMDIM)::

    conv 3x3 -> 30 -> block 1x1 -> 30 -> stage 4x4/2 -> 14 -> stage 2x2/2 -> 7 (map7)
    -> stage 3x3 -> 5 (map5) -> stage 3x3 -> 3 -> block 3x3 -> 1 (global_vector)

A stage is one strided residual block followed by ``depth - 1`` residual 1x1 blocks. The PD paper uses
AMDIM's ``ndf=192, n_rkhs=1536, depth=8``: 768 channels at 7x7 and 5x5, 1536 at 1x1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pdrl import distributed
from pdrl.errors import ConfigError

INPUT_SIZE = 32


class AMDIMFeatures(NamedTuple):
    """The encoder's outputs for a batch of n images (see the module docstring)."""

    global_vector: torch.Tensor
    map5: torch.Tensor
    map7: torch.Tensor


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of the global batch over every rank.

    In training under a process group, mean and (biased) variance per channel are sums over ranks with a
    differentiable all-reduce (``pdrl.distributed.sum_over_ranks``), so k ranks with B / k images each
    normalise, and back-propagate, exactly as one device with B images; the running estimates use the
    global unbiased variance. On one process it is ``nn.BatchNorm2d``. Unlike ``nn.SyncBatchNorm`` (CUDA only
    in torch) it also runs on CPU (gloo), which is what lets the exactness test cover the encoder as configured.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed.is_distributed()):
            return super().forward(x)
        count = x.numel() // x.shape[1] * distributed.world_size()
        mean = distributed.sum_over_ranks(x.sum(dim=(0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        variance = distributed.sum_over_ranks(centred.square().sum(dim=(0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(variance.detach() * count / max(count - 1, 1), momentum)
        normalised = centred * torch.rsqrt(variance + self.eps)[None, :, None, None]
        if self.affine:
            normalised = normalised * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return normalised


def batch_norm_or_identity(channels: int, batch_norm: bool) -> nn.Module:
    return GlobalBatchNorm2d(channels) if batch_norm else nn.Identity()


class StridedResidualBlock(nn.Module):
    """``conv kxk (stride s) -> ReLU -> conv 1x1`` plus a shortcut ``avg_pool kxk (stride s)``.

    The shortcut goes through a bias-free 1x1 convolution when the channel count changes (AMDIM's
    ConvResNxN pads channels instead; a projection serves the same purpose).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride)
        self.mix = nn.Conv2d(out_channels, out_channels, 1)
        self.project = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.avg_pool2d(x, self.kernel_size, self.stride) if self.kernel_size > 1 or self.stride > 1 else x
        if self.project is not None:
            shortcut = self.project(shortcut)
        return shortcut + self.mix(F.relu(self.conv(x)))


class PointwiseResidualBlock(nn.Module):
    """``x + conv1x1(ReLU(conv1x1(ReLU(x))))``: AMDIM's ConvResBNxN without batch norm (its default)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stage(in_channels: int, out_channels: int, kernel_size: int, stride: int, depth: int) -> nn.Sequential:
    """One strided residual block followed by ``depth - 1`` pointwise residual blocks."""
    blocks = [StridedResidualBlock(in_channels, out_channels, kernel_size, stride)]
    blocks += [PointwiseResidualBlock(out_channels) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class RKHSEmbedding(nn.Module):
    """AMDIM's "fake RKHS" head: a 1x1-convolution MLP with a linear shortcut, then batch norm::

        embed(x) = BN( W_s x + W_2 ReLU(W_1 x) )

    so that inner products of local features with the global vector behave like kernel evaluations.
    """

    def __init__(self, in_channels: int, n_rkhs: int, batch_norm: bool) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, n_rkhs, 1, bias=False)
        self.mlp = nn.Sequential(nn.Conv2d(in_channels, n_rkhs, 1), nn.ReLU(), nn.Conv2d(n_rkhs, n_rkhs, 1))
        self.norm = batch_norm_or_identity(n_rkhs, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.shortcut(x) + self.mlp(x))


class AMDIMEncoder(nn.Module):
    """AMDIM-style encoder of 32x32 images into 1x1, 5x5 and 7x7 embeddings (see the module docstring).

    Args:
        in_channels: image channels (3 for CIFAR10).
        ndf: base width; the 7x7 and 5x5 maps have ``4 * ndf`` channels before their RKHS heads.
        n_rkhs: embedding size shared by the global vector and the embedded local maps.
        depth: residual blocks per stage (>= 1).
        batch_norm: batch norm on the global vector and in the RKHS heads (AMDIM's outputs), with the
            statistics of the global batch under DDP (``GlobalBatchNorm2d``).
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 192, n_rkhs: int = 1536, depth: int = 8, batch_norm: bool = True
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("ndf", ndf), ("n_rkhs", n_rkhs), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"AMDIMEncoder({name}={value!r}) must be a positive integer.")
        self.in_channels, self.n_rkhs = in_channels, n_rkhs
        width7 = 4 * ndf
        self.to_map7 = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 3),
            nn.ReLU(),
            StridedResidualBlock(ndf, ndf, 1, 1),
            stage(ndf, 2 * ndf, 4, 2, depth),
            stage(2 * ndf, width7, 2, 2, depth),
        )
        self.to_map5 = stage(width7, width7, 3, 1, depth)
        self.to_global = nn.Sequential(
            stage(width7, width7, 3, 1, depth),
            StridedResidualBlock(width7, n_rkhs, 3, 1),
            batch_norm_or_identity(n_rkhs, batch_norm),
        )
        self.embed7 = RKHSEmbedding(width7, n_rkhs, batch_norm)
        self.embed5 = RKHSEmbedding(width7, n_rkhs, batch_norm)

    def forward(self, images: torch.Tensor) -> AMDIMFeatures:
        """Encode ``(n, in_channels, 32, 32)`` normalised images."""
        if images.dim() != 4 or images.shape[1] != self.in_channels or images.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"AMDIMEncoder needs (n, {self.in_channels}, {INPUT_SIZE}, {INPUT_SIZE}) images, "
                f"got shape {tuple(images.shape)}; resize or crop the images to {INPUT_SIZE}x{INPUT_SIZE}."
            )
        features7 = self.to_map7(images)
        features5 = self.to_map5(features7)
        global_vector = self.to_global(features5).flatten(1)
        return AMDIMFeatures(global_vector, self.embed5(features5), self.embed7(features7))
