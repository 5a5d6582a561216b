"""The PD paper's deep task: AMDIM-style self-supervised learning on 32x32 images with any pdrl objective.

One training step (Bachman et al. 2019; PD paper Sec. 5.2)::

    images --PairAugmentation--> view1, view2 --AMDIMEncoder--> (global, map5, map7) per view
    raw scores of 1->5, 1->7 and 5->5 (a random 5x5 location as source), both directions, by
    MultiLocationCritic: r = <a_i, b_j[:, l]> / sqrt(d), (n, m, L) per direction; scores = c tanh(r / c)
    loss = sum over the 3 pairings of  0.5 * (direction 1 + direction 2)
           with direction = (1 / L) * sum_l loss_l(scores)
         + score_penalty * 0.5 * sum over the 6 directions of mean(r ** 2)      (AMDIM's penalty)
         + cross-entropy of an online linear probe on the detached global vector of view 1

The penalty is AMDIM's (``costs.py``): ``0.05 * mean(r^2)`` per direction on the scaled, *unclipped* scores,
summed over the six directions and halved (an effective 0.15 on the mean over directions at 0.05).

Location losses, one objective call per step: the six score tensors are stacked into one ``(n, m, 198)``
tensor (25 + 25 + 49 + 49 + 25 + 25 locations) and the objective runs once on it
(``pdrl.losses.locations.LocationScoreMatrix``: every mean of the objective keeps the location axis), which
gives the 198 location losses ``loss_l`` at once. ``batched_loss=False`` calls the objective once per location
matrix instead (198 calls, the same numbers; kept to measure the difference, ``bench/deep_throughput.py``). An
objective with state (MINE's moving average) always takes the per-location calls, updating its state once per
location matrix.

CPC negatives (``cpc_negatives``): ``"pooled"`` (default) is AMDIM's NCE: each positive (i, l) gets one softmax
over itself and the ``(m - 1) * L`` scores of every other image at every location of its direction
(``pdrl.losses.locations.PooledCPCLoss``). ``"per_location"`` treats each location as its own score matrix, a
softmax over the m images at that location only. Every other objective is per location; for PCC and D-RFC,
linear in their means, pooling would change nothing.

Across devices (Lightning DDP) the critic gathers the target maps of every rank with gradients, the
objectives and the penalty average over the global batch, and all random draws (augmentation, 5x5 source
locations) are made for the global batch and sliced per rank, and the encoder's batch norm uses the global
batch's statistics; so 2 ranks with half the batch each take the same step as 1 device with the whole batch
(``tests/test_distributed.py``). The probe's accuracy is a torchmetrics metric, its counts summed over ranks.

The representation (``embed``, the ``pdrl.contracts.Embedder`` contract) is the global vector of the
normalised, un-augmented images.

Data: any datamodule yielding ``(images, labels)`` with images ``(B, 3, 32, 32)`` uint8 (0-255) or float
(0-1), not normalised and not augmented (augmentation happens here, on the training device);
``pdrl.data.whole_images.WholeImageDataModule`` reads CIFAR10, MNIST (padded, grey repeated) or any image folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from pdrl import distributed
from pdrl.data.augment import PairAugmentation
from pdrl.data.images import HalfImageDataModule
from pdrl.errors import ConfigError
from pdrl.heads import MultiLocationCritic
from pdrl.losses import build_objective
from pdrl.losses.contrastive import CPCLoss
from pdrl.losses.locations import PooledCPCLoss, location_losses, location_mis
from pdrl.nets.amdim import AMDIMEncoder, AMDIMFeatures
from pdrl.tasks.names import ObjectiveName

PAIRINGS = ("1to5", "1to7", "5to5")
CPC_NEGATIVES = ("pooled", "per_location")


def random_locations(maps: torch.Tensor) -> torch.Tensor:
    """One vector per image from a random location of ``(n, d, H, W)`` maps: ``(n, d)``.

    The locations are drawn for the global batch and sliced per rank (see the module docstring).
    """
    n, _, height, width = maps.shape
    world, rank = distributed.world_size(), distributed.rank()
    locations = torch.randint(height * width, (n * world,), device=maps.device)[rank * n : (rank + 1) * n]
    return maps.flatten(2)[torch.arange(n, device=maps.device), :, locations]


class DeepRepresentation(pl.LightningModule):
    """AMDIM-style self-supervised learning with a point-wise dependency objective.

    Args:
        objective: registry name of the loss (``cpc``, ``pcc``, ``drfc``, ...; see ``pdrl.losses``).
        objective_args: keyword arguments of the loss (``{alpha: 0.01}`` for the paper's D-RFC).
        ndf, n_rkhs, depth, batch_norm: the encoder (``pdrl.nets.amdim.AMDIMEncoder``).
        score_clip: soft clip ``c tanh(s / c)`` of the scores (AMDIM: 20), None for none.
        score_penalty: weight of AMDIM's L2 penalty on the unclipped scores (AMDIM: 0.05); 0 disables it.
        cpc_negatives: ``"pooled"`` (AMDIM's NCE) or ``"per_location"``, for the CPC objective only.
        batched_loss: evaluate the objective on all 198 location matrices in one call (False: one call each).
        augmentation_args: keyword arguments of ``pdrl.data.augment.PairAugmentation``.
        num_classes: classes of the online linear probe.
        lr, betas, weight_decay: Adam (PD paper: 2e-4, (0.8, 0.999), 1e-5).
        warmup_steps: linear learning-rate warm-up from ``lr / warmup_steps`` (0: none).
        lr_milestones, lr_gamma: multiply the learning rate by ``lr_gamma`` at these epochs.
    """

    def __init__(
        self,
        objective: ObjectiveName = "drfc",
        objective_args: dict[str, Any] | None = None,
        ndf: int = 192,
        n_rkhs: int = 1536,
        depth: int = 8,
        batch_norm: bool = True,
        score_clip: float | None = 20.0,
        score_penalty: float = 0.05,
        cpc_negatives: str = "pooled",
        batched_loss: bool = True,
        augmentation_args: dict[str, Any] | None = None,
        num_classes: int = 10,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.8, 0.999),
        weight_decay: float = 1e-5,
        warmup_steps: int = 500,
        lr_milestones: Sequence[int] = (250, 280),
        lr_gamma: float = 0.2,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if score_penalty < 0:
            raise ConfigError(f"DeepRepresentation(score_penalty={score_penalty}) must be >= 0 (AMDIM uses 0.05).")
        if warmup_steps < 0:
            raise ConfigError(f"DeepRepresentation(warmup_steps={warmup_steps}) must be >= 0.")
        if cpc_negatives not in CPC_NEGATIVES:
            raise ConfigError(
                f"DeepRepresentation(cpc_negatives={cpc_negatives!r}) is unknown: choose one of {CPC_NEGATIVES}."
            )
        self.objective = build_objective(objective, **(objective_args or {}))
        if type(self.objective) is CPCLoss and cpc_negatives == "pooled":
            self.objective = PooledCPCLoss()
        pooled = isinstance(self.objective, PooledCPCLoss)
        if pooled and cpc_negatives == "per_location":
            raise ConfigError(
                f"DeepRepresentation(objective={objective!r}) pools the negatives, which contradicts "
                "cpc_negatives='per_location': use objective 'cpc' for the per-location softmax."
            )
        if pooled and not batched_loss:
            raise ConfigError(
                "DeepRepresentation(batched_loss=False) scores each location matrix on its own, which cannot pool "
                "negatives across locations: use batched_loss=True or cpc_negatives='per_location'."
            )
        # an objective with state (MINE's moving average) cannot average over stacked locations at once
        self.batched_loss = batched_loss and next(self.objective.buffers(), None) is None
        self.augmentation = PairAugmentation(**(augmentation_args or {}))
        self.encoder = AMDIMEncoder(3, ndf, n_rkhs, depth, batch_norm)
        self.critic = MultiLocationCritic(clip=score_clip, gather_distributed=True)
        self.probe = nn.Linear(n_rkhs, num_classes)
        self.train_probe_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_probe_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if isinstance(datamodule, HalfImageDataModule):
            raise ConfigError(
                f"DeepRepresentation trains on whole images, but the datamodule {type(datamodule).__name__} cuts them "
                "into half-image views: use data.class_path pdrl.data.whole_images.WholeImageDataModule with dataset "
                "cifar10, mnist, fashion_mnist or folder (any image folder root/train/<class>, root/test/<class>)."
            )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The representation: the global vector of the normalised, un-augmented images, ``(n, n_rkhs)``."""
        return self.encoder(self.augmentation.normalise(images)).global_vector

    @property
    def objective_name(self) -> str:
        """The objective's registry name, as the config gives it (``pdrl.contracts.NamesObjective``)."""
        return self.hparams.objective

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The representation, ``embed(images)``."""
        return self.embed(images)

    def raw_score_pairings(self, first: AMDIMFeatures, second: AMDIMFeatures) -> dict[str, list[torch.Tensor]]:
        """The six unclipped ``(n, m, L)`` score tensors: 1->5, 1->7, 5->5, each in both directions."""
        raw = self.critic.raw_scores
        return {
            "1to5": [raw(first.global_vector, second.map5), raw(second.global_vector, first.map5)],
            "1to7": [raw(first.global_vector, second.map7), raw(second.global_vector, first.map7)],
            "5to5": [
                raw(random_locations(first.map5), second.map5),
                raw(random_locations(second.map5), first.map5),
            ],
        }

    def score_pairings(self, first: AMDIMFeatures, second: AMDIMFeatures) -> dict[str, list[torch.Tensor]]:
        """The six soft-clipped ``(n, m, L)`` score tensors, as the objectives see them."""
        pairings = self.raw_score_pairings(first, second)
        return {name: [self.critic.soft_clip(raw) for raw in pair] for name, pair in pairings.items()}

    def score_penalty_term(self, raw: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """AMDIM's penalty before its weight: ``0.5 * sum over directions of mean(raw ** 2)`` (global batch).

        ``raw`` is the stacked ``(n, m, K)`` unclipped scores, ``groups`` the direction of each location.
        """
        n_groups = int(groups.max()) + 1
        sums = (raw if raw.dtype == torch.float64 else raw.float()).square().sum(dim=(0, 1))
        per_direction = torch.zeros(n_groups, dtype=sums.dtype, device=sums.device).index_add(0, groups, sums)
        counts = torch.bincount(groups, minlength=n_groups) * raw.shape[0] * raw.shape[1]
        return 0.5 * distributed.mean_over_ranks(per_direction, counts).sum()

    def location_losses(self, scores: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and MI readout of every location matrix of stacked ``(n, m, K)`` scores: two ``(K,)`` vectors."""
        if self.batched_loss:
            return location_losses(self.objective, scores, groups), location_mis(self.objective, scores, groups)
        # one unbind (a single backward node) rather than K slices, each of whose backward writes a full-size gradient
        per_location = scores.permute(2, 0, 1).contiguous().unbind(0)
        losses = torch.stack([self.objective(location_scores) for location_scores in per_location])
        mis = torch.stack([self.objective.mi(location_scores) for location_scores in per_location])
        return losses, mis

    def dependency_loss(self, pairings: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The loss of the module docstring from the six raw score tensors, its penalty term and MI readouts."""
        directions = [raw for pairing in PAIRINGS for raw in pairings[pairing]]
        sizes = torch.tensor([raw.shape[2] for raw in directions], device=directions[0].device)
        groups = torch.repeat_interleave(torch.arange(len(directions), device=sizes.device), sizes)
        raw = torch.cat(directions, dim=2)
        losses, mis = self.location_losses(self.critic.soft_clip(raw), groups)
        weights = 0.5 / sizes[groups]  # the mean over a direction's locations, half of each direction
        mi_per_direction = torch.zeros(len(directions), device=mis.device).index_add(0, groups, mis.float())
        mi_per_pairing = (mi_per_direction / sizes).view(len(PAIRINGS), 2).mean(dim=1)
        return {
            "loss": (weights * losses).sum(),
            "penalty": self.score_penalty_term(raw, groups),
            **{f"mi_{pairing}": mi for pairing, mi in zip(PAIRINGS, mi_per_pairing, strict=True)},
        }

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        view1, view2 = self.augmentation(images)
        features = self.encoder(torch.cat([view1, view2]))
        first, second = (AMDIMFeatures(*halves) for halves in zip(*(f.chunk(2) for f in features), strict=True))
        terms = self.dependency_loss(self.raw_score_pairings(first, second))

        logits = self.probe(first.global_vector.detach())
        probe_loss = F.cross_entropy(logits, labels)
        self.train_probe_accuracy(logits, labels)
        total = terms["loss"] + self.hparams.score_penalty * terms["penalty"] + probe_loss
        self.log_dict({f"train/mi_{pairing}": terms[f"mi_{pairing}"] for pairing in PAIRINGS})
        self.log_dict(
            {
                "train/loss": terms["loss"],
                "train/mi": torch.stack([terms[f"mi_{pairing}"] for pairing in PAIRINGS]).mean(),
                "train/score_l2": terms["penalty"],
                "train/probe_loss": probe_loss,
            },
            prog_bar=True,
        )
        self.log("train/probe_acc", self.train_probe_accuracy, on_step=False, on_epoch=True)
        return total

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self.probe(self.embed(images))
        self.val_probe_accuracy.update(logits, labels)
        self.log("val/probe_loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val/probe_acc", self.val_probe_accuracy, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        schedulers = [
            {
                "scheduler": torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.lr_milestones), hp.lr_gamma),
                "interval": "epoch",
            }
        ]
        if hp.warmup_steps > 0:
            warmup = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0 / hp.warmup_steps, total_iters=hp.warmup_steps)
            schedulers.insert(0, {"scheduler": warmup, "interval": "step"})
        return [optimizer], schedulers
