"""What an MI benchmark run depends on: the estimators, the named critics and data settings, :class:`Setting`.

The ground floor of the ``bench.mi.mi_*`` modules: it imports none of them, they all import it.

Named critics (``--critic``), each with the batch size and learning rate of the code it comes from:

- ``separable``: the SMILE reference code's default separable critic. Its ``mlp(dim, 256, 32, layers=2)``
  builds Linear(20, 256)-ReLU-[Linear(256, 256)-ReLU] x 2-Linear(256, 32): **three** hidden layers of 256
  (two branches, inner product of the 32-d embeddings); batch 64, Adam 5e-4.
- ``separable_2h``: the same with **two** hidden layers of 256 (20-256-256-32): the MICE paper's stated
  critic (its appendix: "two hidden layers of 256") and pdrl's default before round 2 of the benchmark.
- ``joint``: the PD paper's Figure 1 critic, one MLP on ``[x_i, y_j]`` for all n^2 pairs, two hidden layers
  of 512; batch 128, Adam 1e-3 (PD code). ``--hidden-dims`` narrows it where compute is short; the critic's
  label then says the width (``joint_128``...), so no table passes a narrow critic off as the paper's.

Named data settings (``--data``): ``standard`` (i.i.d. pairs, the PD/SMILE benchmark) and
``mice_extension`` (the MICE paper's Section 5.2 headline: samples chained within the batch with c = 0.1,
the staircase 2..10 nats at 4000 steps each, 20000 steps in all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from pdrl.data.gaussians import MIStaircase, StaircaseSettings
from pdrl.tasks.mi_estimation import MIEstimation


class Estimator(NamedTuple):
    """A benchmarked estimator: a registry objective, its arguments and the critic's spectral norm."""

    objective: str
    objective_args: dict[str, Any]
    spectral_norm: str = "none"


ESTIMATORS: dict[str, Estimator] = {
    "cpc": Estimator("cpc", {}),
    "pcc": Estimator("pcc", {"balanced": False}),
    "drfc": Estimator("drfc", {"readout": "plugin"}),
    "drfc_selfnorm": Estimator("drfc", {"readout": "self_normalized"}),
    "nwj": Estimator("nwj", {}),
    "js": Estimator("js", {}),
    "dv": Estimator("dv", {}),
    "mine": Estimator("mine", {}),
    "smile_tau1": Estimator("smile", {"tau": 1.0}),
    "smile_tau5": Estimator("smile", {"tau": 5.0}),
    "variational": Estimator("variational", {}),
    "dm1": Estimator("dm1", {}),
    "dm2": Estimator("dm2", {}),
    "mice": Estimator("mice", {"partition_gradient": "full"}, "last"),
    "mice_blocked": Estimator("mice", {"partition_gradient": "blocked"}, "last"),
}
# The estimators run with several seeds: CPC, PC, D-RF, SMILE(1), SMILE(5), variational, MICE.
HEADLINE = ["cpc", "pcc", "drfc", "smile_tau1", "smile_tau5", "variational", "mice"]


class CriticPreset(NamedTuple):
    """A named critic and the batch size / learning rate of the reference code that uses it."""

    critic: str
    hidden_dims: tuple[int, ...]
    embed_dim: int
    batch_size: int
    lr: float


CRITIC_PRESETS: dict[str, CriticPreset] = {
    "separable": CriticPreset("separable", (256, 256, 256), 32, 64, 5e-4),
    "separable_2h": CriticPreset("separable", (256, 256), 32, 64, 5e-4),
    "joint": CriticPreset("concat", (512, 512), 32, 128, 1e-3),
}
DATA_SETTINGS: dict[str, dict[str, Any]] = {
    "standard": {"batch_correlation": 0.0, "batch_correlation_uniform": False},
    "mice_extension": {"batch_correlation": 0.1, "batch_correlation_uniform": False},
}


def critic_label(critic: str, hidden_dims: list[int] | tuple[int, ...], embed_dim: int) -> str:
    """The name of a critic read from its architecture (never from a stored name), e.g. ``separable_2h``.

    A named critic gives its name; a joint critic of other widths ``joint_<widths>``, a separable one
    ``separable_<widths>_e<embed>``.
    """
    for name, preset in CRITIC_PRESETS.items():
        if critic == preset.critic and tuple(hidden_dims) == preset.hidden_dims:
            if critic == "concat" or embed_dim == preset.embed_dim:
                return name
    widths = "-".join(str(width) for width in hidden_dims)
    return f"joint_{widths}" if critic == "concat" else f"separable_{widths}_e{embed_dim}"


@dataclass(frozen=True)
class Setting(StaircaseSettings):
    """Everything a run depends on besides the estimator: the data's :class:`StaircaseSettings` (inherited, so
    a setting is itself the staircase its stream runs) plus the critic and optimiser.

    The defaults are the ``separable`` critic above (the SMILE code's: three hidden layers of 256, embed 32,
    batch 64, Adam 5e-4); :meth:`from_preset` builds the others.
    """

    critic: str = "separable"
    lr: float = 5e-4
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])
    embed_dim: int = 32

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Setting:
        """The setting of a named critic (:data:`CRITIC_PRESETS`); ``overrides`` that are not None win."""
        if name not in CRITIC_PRESETS:
            raise ValueError(f"Unknown critic {name!r}: choose one of {', '.join(CRITIC_PRESETS)}.")
        preset = CRITIC_PRESETS[name]
        values: dict[str, Any] = {
            "critic": preset.critic,
            "hidden_dims": list(preset.hidden_dims),
            "embed_dim": preset.embed_dim,
            "batch_size": preset.batch_size,
            "lr": preset.lr,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    @property
    def critic_label(self) -> str:
        """The critic's name in run names and tables (``joint``, ``separable_2h``...), read from its architecture.

        ``critic`` itself is the architecture kind, ``MIEstimation(critic_name=...)``: ``"separable"`` or ``"concat"``.
        """
        return critic_label(self.critic, self.hidden_dims, self.embed_dim)

    @property
    def data_name(self) -> str:
        if self.batch_correlation == 0.0:
            return "standard"
        kind = "U[0, c]" if self.batch_correlation_uniform else "c"
        return f"chained {kind} = {self.batch_correlation:g}"

    def stream(self) -> MIStaircase:
        return MIStaircase(self)

    def model(self, estimator: Estimator) -> MIEstimation:
        torch.manual_seed(self.seed)
        return MIEstimation(
            objective=estimator.objective,
            objective_args=estimator.objective_args,
            critic_name=self.critic,
            dim=self.dim,
            hidden_dims=self.hidden_dims,
            embed_dim=self.embed_dim,
            spectral_norm=estimator.spectral_norm,
            lr=self.lr,
        )


def run_name(setting: Setting, estimator: str) -> str:
    """``<task>__<critic>__<estimator>__s<seed>``, plus ``__c<c>`` when the batch is chained."""
    name = f"{setting.task}__{setting.critic_label}__{estimator}__s{setting.seed}"
    if setting.batch_correlation:
        name += f"__c{setting.batch_correlation:g}{'u' if setting.batch_correlation_uniform else ''}"
    return name
