"""The training-loss values of the variational objectives against their formulas, written out by hand.

Added for survivors of ``bench/mutation.sh`` on ``pdrl/losses/variational.py``: the JS objective's sign, the
NWJ joint term's offset, and MINE's value outside training and its readout (see bench/results/reliability.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pdrl.losses import DVLoss, JSLoss, MINELoss, NWJLoss


def parts(n: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scores = torch.randn(n, n, dtype=torch.float64)
    return scores, scores.diagonal(), scores[~torch.eye(n, dtype=torch.bool)]


def test_js_loss_is_the_softplus_form():
    """Kills: the JS objective with its sign flipped (loss = -objective = E_P softplus(-f) + E_Q softplus(f))."""
    scores, joint, marginal = parts()
    expected = F.softplus(-joint).mean() + F.softplus(marginal).mean()
    torch.testing.assert_close(JSLoss()(scores), expected)


def test_nwj_loss_is_one_plus_mean_joint_minus_mean_exp():
    """Kills: an offset other than -1 on NWJ's joint term (loss = -(1 + E_P[f - 1] - E_Q[e^(f - 1)]))."""
    scores, joint, marginal = parts()
    expected = -(1 + (joint - 1).mean() - (marginal - 1).exp().mean())
    torch.testing.assert_close(NWJLoss()(scores), expected)


def test_mine_value_outside_training_and_readout_are_dv():
    """Kills: MINE's eval-mode objective or readout adding the log-partition instead of subtracting it."""
    scores, joint, marginal = parts()
    dv = joint.mean() - (marginal.logsumexp(0) - math.log(len(marginal)))
    mine = MINELoss(momentum=0.9).eval()
    torch.testing.assert_close(mine(scores), -dv)
    torch.testing.assert_close(mine.mi(scores), dv)
    torch.testing.assert_close(DVLoss().mi(scores), dv)
