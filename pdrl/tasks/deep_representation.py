"""The PD paper's deep task: AMDIM-style self-supervised learning on CIFAR10 with any pdrl objective.

One training step (Bachman et al. 2019; PD paper Sec. 5.2)::

    images --PairAugmentation--> view1, view2 --AMDIMEncoder--> (global, map5, map7) per view
    scores of  1->5, 1->7 and 5->5 (a random 5x5 location as source), both directions,
    by MultiLocationCritic:  (n, m, L) per direction, one score matrix per target location l
    loss = sum over the 3 pairings of  0.5 * (direction 1 + direction 2)
           with direction = (1 / L) * sum_l objective(scores[:, :, l])
         + score_penalty * mean(scores ** 2)   (averaged over the 6 directions)
         + cross-entropy of an online linear probe on the detached global vector of view 1

Reduction over locations: every target location l gives its own score matrix (source vector i against
location l of image j), on which the objective runs as on any score matrix; the location losses are
averaged. This is AMDIM's per-location NCE with the negatives taken at the same location (AMDIM pools the
negatives of all locations into one softmax, which only the CPC loss could express), and it lets every
objective of ``pdrl.losses`` (CPC, PCC, D-RFC, ...) train the deep model unchanged. An objective with
state (MINE's moving average) updates it once per location matrix. The cost is one objective call per
location, 2 * (25 + 49 + 25) = 198 per step; each score tensor itself is one einsum.

Across devices (Lightning DDP) the critic gathers the target maps of every rank with gradients, the
objectives and the penalty average over the global batch, and all random draws (augmentation, 5x5 source
locations) are made for the global batch and sliced per rank, and the encoder's batch norm uses the global
batch's statistics; so 2 ranks with half the batch each take the same step as 1 device with the whole batch
(``tests/test_distributed.py``). The probe's accuracy is a torchmetrics metric, its counts summed over ranks.

Data: any datamodule yielding ``(images, labels)`` with images ``(B, 3, 32, 32)`` uint8 (0-255) or float
(0-1), not normalised and not augmented (augmentation happens here, on the training device).
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
from pdrl.errors import ConfigError
from pdrl.heads import MultiLocationCritic
from pdrl.losses import build_objective
from pdrl.nets.amdim import AMDIMEncoder, AMDIMFeatures

PAIRINGS = ("1to5", "1to7", "5to5")


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
        score_penalty: weight of the L2 penalty on the scores (AMDIM: 0.05); 0 disables it.
        augmentation_args: keyword arguments of ``pdrl.data.augment.PairAugmentation``.
        num_classes: classes of the online linear probe.
        lr, betas, weight_decay: Adam (PD paper: 2e-4, (0.8, 0.999), 1e-5).
        warmup_steps: linear learning-rate warm-up from ``lr / warmup_steps`` (0: none).
        lr_milestones, lr_gamma: multiply the learning rate by ``lr_gamma`` at these epochs.
    """

    def __init__(
        self,
        objective: str = "drfc",
        objective_args: dict[str, Any] | None = None,
        ndf: int = 192,
        n_rkhs: int = 1536,
        depth: int = 8,
        batch_norm: bool = True,
        score_clip: float | None = 20.0,
        score_penalty: float = 0.05,
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
        self.objective = build_objective(objective, **(objective_args or {}))
        self.augmentation = PairAugmentation(**(augmentation_args or {}))
        self.encoder = AMDIMEncoder(3, ndf, n_rkhs, depth, batch_norm)
        self.critic = MultiLocationCritic(clip=score_clip, gather_distributed=True)
        self.probe = nn.Linear(n_rkhs, num_classes)
        self.train_probe_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_probe_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The representation: the global vector of the normalised, un-augmented images, ``(n, n_rkhs)``."""
        return self.encoder(self.augmentation.normalise(images)).global_vector

    def location_loss(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and MI readout of ``(n, m, L)`` scores, each averaged over the L location score matrices."""
        # one unbind (a single backward node) rather than L slices, each of whose backward writes a full-size gradient
        per_location = scores.permute(2, 0, 1).contiguous().unbind(0)
        loss = sum(self.objective(location_scores) for location_scores in per_location) / len(per_location)
        mi = sum(self.objective.mi(location_scores) for location_scores in per_location) / len(per_location)
        return loss, mi

    def score_pairings(self, first: AMDIMFeatures, second: AMDIMFeatures) -> dict[str, list[torch.Tensor]]:
        """The six ``(n, m, L)`` score tensors: 1->5, 1->7, 5->5, each in both directions."""
        return {
            "1to5": [self.critic(first.global_vector, second.map5), self.critic(second.global_vector, first.map5)],
            "1to7": [self.critic(first.global_vector, second.map7), self.critic(second.global_vector, first.map7)],
            "5to5": [
                self.critic(random_locations(first.map5), second.map5),
                self.critic(random_locations(second.map5), first.map5),
            ],
        }

    def score_l2(self, scores: torch.Tensor) -> torch.Tensor:
        """Mean of the squared scores over the global batch (summed over ranks)."""
        return distributed.sum_over_ranks(scores.square().sum()) / (scores.numel() * distributed.world_size())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        view1, view2 = self.augmentation(images)
        features = self.encoder(torch.cat([view1, view2]))
        first, second = (AMDIMFeatures(*halves) for halves in zip(*(f.chunk(2) for f in features), strict=True))
        scores = self.score_pairings(first, second)

        dependency_loss, penalty, mis = 0.0, 0.0, []
        for pairing in PAIRINGS:
            for direction in scores[pairing]:
                loss, mi = self.location_loss(direction)
                dependency_loss = dependency_loss + 0.5 * loss
                penalty = penalty + self.score_l2(direction) / (2 * len(PAIRINGS))
                mis.append(mi)
            self.log(f"train/mi_{pairing}", (mis[-1] + mis[-2]) / 2)

        logits = self.probe(first.global_vector.detach())
        probe_loss = F.cross_entropy(logits, labels)
        self.train_probe_accuracy(logits, labels)
        total = dependency_loss + self.hparams.score_penalty * penalty + probe_loss
        self.log_dict(
            {
                "train/loss": dependency_loss,
                "train/mi": torch.stack(mis).mean(),
                "train/score_l2": penalty,
                "train/probe_loss": probe_loss,
            },
            prog_bar=True,
        )
        self.log("train/probe_acc", self.train_probe_accuracy, on_step=False, on_epoch=True)
        return total

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self.probe(self(images))
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
