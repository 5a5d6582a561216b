"""Point-wise dependency objectives on a critic's score matrix: plain PyTorch, no Lightning.

``scores[i, j] = critic(x_i, y_j)`` plus a layout saying where the positives sit: joint pairs on the
diagonal by default, SimCLR's two views with ``TwoViewLayout()``, a MoCo queue with ``QueueLayout(K)``
(see ``pdrl.losses.layouts``; ``KeyQueue`` holds the queue's keys). Each loss module returns the training loss from
``forward(scores, layout)``, the MI readout from ``.mi(scores, layout)`` and the pointwise log-PD from ``.log_pd``.
"""

from pdrl.losses.base import DependencyLoss, ScoreMatrix
from pdrl.losses.classifier import PCCLoss
from pdrl.losses.contrastive import CPCLoss
from pdrl.losses.density_matching import DensityMatchingLagrangianLoss, DensityMatchingPenaltyLoss
from pdrl.losses.layouts import Layout, PairedLayout, QueueLayout, TwoViewLayout
from pdrl.losses.mice import MICELoss
from pdrl.losses.queue import KeyQueue
from pdrl.losses.ratio_fitting import DRFCLoss
from pdrl.losses.registry import OBJECTIVES, build_objective
from pdrl.losses.variational import DVLoss, JSLoss, MINELoss, NWJLoss, SMILELoss, VariationalBoundLoss

InfoNCELoss = CPCLoss

__all__ = [
    "CPCLoss",
    "DRFCLoss",
    "DVLoss",
    "DensityMatchingLagrangianLoss",
    "DensityMatchingPenaltyLoss",
    "DependencyLoss",
    "InfoNCELoss",
    "JSLoss",
    "KeyQueue",
    "Layout",
    "MICELoss",
    "MINELoss",
    "NWJLoss",
    "OBJECTIVES",
    "PCCLoss",
    "PairedLayout",
    "QueueLayout",
    "SMILELoss",
    "ScoreMatrix",
    "TwoViewLayout",
    "VariationalBoundLoss",
    "build_objective",
]
