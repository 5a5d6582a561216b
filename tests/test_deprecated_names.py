"""Old names that still work, with a DeprecationWarning: a loss's ``objective(matrix)``, now ``training_value``, and
``MIEstimation(critic=...)``, now ``critic_name`` (old checkpoints resuming: ``tests/test_resume_checks.py``)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from pdrl.errors import ConfigError
from pdrl.heads import ConcatCritic
from pdrl.losses import OBJECTIVES, CPCLoss, DependencyLoss, NWJLoss, ScoreMatrix
from pdrl.losses.locations import LocationScoreMatrix, location_losses
from pdrl.tasks.mi_estimation import MIEstimation


def scores(n: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, n, generator=generator, dtype=torch.float64).abs() + 2.0 * torch.eye(n, dtype=torch.float64)


def test_a_subclass_defining_objective_warns_at_class_creation_and_still_trains() -> None:
    with pytest.warns(DeprecationWarning, match=r"OldNWJ defines objective\(self, matrix\).*training_value") as record:

        class OldNWJ(NWJLoss):
            def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
                return 2.0 * matrix.joint_mean(matrix.joint)

    assert record[0].filename == __file__, "the warning points at the class statement"
    matrix = ScoreMatrix(scores())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # used as training_value: forward and the location losses do not warn
        loss = OldNWJ()(scores())
        assert torch.equal(OldNWJ().training_value(matrix), 2.0 * matrix.joint_mean(matrix.joint))
        stacked = torch.stack([scores(), scores()], dim=2)
        assert location_losses(OldNWJ(), stacked, torch.zeros(2, dtype=torch.long)).shape == (2,)
    assert torch.equal(loss, -2.0 * matrix.joint_mean(matrix.joint))
    assert OldNWJ().mi(scores()) == NWJLoss().mi(scores()), "the readout is the parent's"


def test_an_abstract_base_subclass_defining_objective_is_instantiable() -> None:
    with pytest.warns(DeprecationWarning, match="training_value"):

        class OldLoss(DependencyLoss):
            def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
                return matrix.joint_mean(matrix.joint)

            def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
                return matrix.joint_mean(matrix.joint)

    matrix = ScoreMatrix(scores())
    assert torch.equal(OldLoss()(scores()), -matrix.joint_mean(matrix.joint))


def test_super_objective_in_an_old_subclass_reaches_the_parent() -> None:
    with pytest.warns(DeprecationWarning, match="training_value"):

        class ShiftedCPC(CPCLoss):
            def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
                return super().objective(matrix) + 1.0

    matrix = ScoreMatrix(scores())
    with pytest.warns(DeprecationWarning, match=r"objective\(matrix\) is deprecated"):  # the super() call
        value = ShiftedCPC().training_value(matrix)
    torch.testing.assert_close(value, CPCLoss().training_value(matrix) + 1.0)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_calling_objective_on_a_shipped_loss_warns_and_forwards(name: str) -> None:
    loss = OBJECTIVES[name]()
    matrix = ScoreMatrix(scores())
    expected = OBJECTIVES[name]().training_value(matrix)  # a fresh module: MINE's moving average is state
    with pytest.warns(DeprecationWarning, match=r"objective\(matrix\) is deprecated.*training_value\(matrix\)"):
        value = loss.objective(matrix)
    torch.testing.assert_close(value, expected)


def test_the_pooled_cpc_alias_forwards_on_location_matrices() -> None:
    loss, stacked = OBJECTIVES["cpc_pooled"](), torch.stack([scores(), scores()], dim=2)
    matrix = LocationScoreMatrix(stacked, torch.zeros(2, dtype=torch.long))
    with pytest.warns(DeprecationWarning):
        value = loss.objective(matrix)
    torch.testing.assert_close(value, loss.training_value(matrix))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_the_shipped_losses_raise_no_warning(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = OBJECTIVES[name]()
        loss(scores()).item()
        loss.training_value(ScoreMatrix(scores())).item()
        loss.mi(scores()).item()


def test_importing_the_losses_raises_no_deprecation_warning() -> None:
    """The shipped losses define ``training_value``: creating their classes warns about nothing."""
    code = (
        "import warnings, torch; warnings.simplefilter('error', DeprecationWarning); "
        "import pdrl.losses, pdrl.losses.locations"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_mi_task_takes_the_old_critic_keyword_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"MIEstimation\(critic='concat'\) is deprecated.*critic_name"):
        model = MIEstimation(critic="concat", hidden_dims=[4])
    assert isinstance(model.head, ConcatCritic)
    assert model.hparams.critic_name == "concat" and "critic" not in model.hparams, "checkpoints get the new name"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(MIEstimation(critic_name="concat", hidden_dims=[4]).head, ConcatCritic)
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="give critic_name only"):
        MIEstimation(critic="separable", critic_name="concat")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['critics'\\]"):
        MIEstimation(critics="concat")
