"""MICE, the Mutual Information Continuity-constrained Estimator (MICE paper Algorithm 1; Eq. 14 for the NWJ form)."""

from __future__ import annotations

import torch

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix
from pdrl.losses.variational import dv_value, nwj_value

FORMS = ("dv", "nwj")
PARTITION_GRADIENTS = ("full", "blocked")


class MICELoss(DependencyLoss):
    """MICE: a DV (or NWJ) bound on a critic whose last layer is spectrally normalised.

    Objective (MICE Algorithm 1, DV form; ``form="nwj"`` is the NWJ-type bound of the paper's Eq. 14,
    1 + E_P[f-1] - E_Q[e^(f-1)], instead)::

        I_MICE = E_P[f] - log E_Q[e^f]          readout: the same          log-PD = f

    The continuity constraint lives in the critic: build it with ``spectral_norm=True``
    (``pdrl.nets.MLP`` / ``pdrl.heads``). The loss only handles the partition gradient:

    - ``partition_gradient="blocked"``: Algorithm 1 read literally, the partition term contributes no
      gradient (it is detached), so training maximises E_P[f] alone while the readout stays DV. Only the
      Lipschitz bound of the critic limits how far scores can grow; with spectral norm on the last layer
      alone the scale can still drift, which the MI benchmark measures.
    - ``partition_gradient="full"`` (default): the gradient of the whole bound, as in DV/NWJ; the
      spectrally normalised critic is what tames it. MICE has no public code, so the default is the
      reading that trains a well-posed objective; both are measured in ``bench/results/``.

    Args:
        form: ``"dv"`` or ``"nwj"``.
        partition_gradient: ``"full"`` or ``"blocked"``.

    Example::

        criterion = MICELoss()  # with a spectrally normalised critic; used as every DependencyLoss
    """

    def __init__(self, form: str = "dv", partition_gradient: str = "full") -> None:
        super().__init__()
        if form not in FORMS:
            raise ConfigError(f"MICELoss(form={form!r}) is unknown: choose one of {FORMS}.")
        if partition_gradient not in PARTITION_GRADIENTS:
            raise ConfigError(
                f"MICELoss(partition_gradient={partition_gradient!r}) is unknown: choose one of {PARTITION_GRADIENTS}."
            )
        self.form, self.partition_gradient = form, partition_gradient

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        blocked = self.partition_gradient == "blocked"
        if self.form == "nwj":
            return nwj_value(matrix, block_partition_gradient=blocked)
        log_partition = matrix.marginal_logmeanexp(matrix.scores)
        return dv_value(matrix, log_partition.detach() if blocked else log_partition)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        """The objective's value, with the exact ``exp`` in the nwj form (the loss continues it linearly)."""
        return nwj_value(matrix, exact=True) if self.form == "nwj" else dv_value(matrix)

    def log_pd(
        self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return scores - 1.0 if self.form == "nwj" else scores

    def scores_from_log_pd(
        self, log_pd: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return log_pd + 1.0 if self.form == "nwj" else log_pd
