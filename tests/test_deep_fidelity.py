"""The deep task against AMDIM's formulas: the score penalty, the pooled NCE, one loss call per step."""

from __future__ import annotations

import pytest
import torch

from pdrl.losses.locations import PooledCPCLoss
from pdrl.tasks.deep_representation import PAIRINGS, DeepRepresentation

TINY = dict(ndf=4, n_rkhs=16, depth=1)


def raw_pairings(n: int = 4, d: int = 16, seed: int = 0) -> dict[str, list[torch.Tensor]]:
    """Six unclipped (n, n, L) score tensors of the deep task's sizes, L = 25, 49, 25, as leaves."""
    generator = torch.Generator().manual_seed(seed)
    sizes = {"1to5": 25, "1to7": 49, "5to5": 25}
    return {
        name: [(3.0 * torch.randn(n, n, size, generator=generator, dtype=torch.float64)).requires_grad_() for _ in "12"]
        for name, size in sizes.items()
    }


def test_score_penalty_is_amdims_on_the_unclipped_scores() -> None:
    """AMDIM (costs.py): lgt_reg = 0.5 * sum over six directions of 0.05 * mean(raw ** 2), raw = <a, b> / sqrt(d)."""
    torch.manual_seed(0)
    task = DeepRepresentation(score_clip=2.0, **TINY).double()
    n, d = 3, 16
    sources = [torch.randn(n, d, dtype=torch.float64) for _ in range(6)]
    targets = [torch.randn(n, d, 5, 5, dtype=torch.float64) for _ in range(6)]
    by_hand = 0.0
    for a, b in zip(sources, targets, strict=True):
        squares = [
            (sum(a[i, c] * b[j, c, y, x] for c in range(d)).item() / d**0.5) ** 2
            for i in range(n)
            for j in range(n)
            for y in range(5)
            for x in range(5)
        ]
        by_hand += 0.05 * sum(squares) / len(squares)
    by_hand *= 0.5
    raw = torch.cat([task.critic.raw_scores(a, b) for a, b in zip(sources, targets, strict=True)], dim=2)
    groups = torch.arange(6).repeat_interleave(25)
    penalty = task.hparams.score_penalty * task.score_penalty_term(raw, groups)
    assert penalty.item() == pytest.approx(by_hand, rel=1e-10)
    # the clip (here at 2) bounds the scores the objectives see, not the ones the penalty reads
    clipped = task.critic.soft_clip(raw)
    assert clipped.abs().max() < 2.0 < raw.abs().max()


@pytest.mark.parametrize(
    ("objective", "objective_args", "cpc_negatives"),
    [
        ("drfc", {"alpha": 0.01}, "pooled"),
        ("pcc", None, "pooled"),
        ("cpc", None, "per_location"),
        ("nwj", None, "pooled"),
    ],
)
def test_one_batched_call_equals_the_per_pair_sum(
    objective: str, objective_args: dict | None, cpc_negatives: str
) -> None:
    """Value and gradient of the batched loss equal sum over pairings of 0.5 * (mean_l dir1 + mean_l dir2)."""
    task = DeepRepresentation(objective=objective, objective_args=objective_args, cpc_negatives=cpc_negatives, **TINY)
    assert task.batched_loss
    pairings = raw_pairings()
    leaves = [raw for pairing in PAIRINGS for raw in pairings[pairing]]
    batched = task.dependency_loss(pairings)
    batched_grads = torch.autograd.grad(batched["loss"], leaves)
    per_pair = 0.0
    for pairing in PAIRINGS:
        for raw in pairings[pairing]:
            scores = task.critic.soft_clip(raw)
            per_pair = per_pair + 0.5 * sum(task.objective(scores[:, :, k]) for k in range(raw.shape[2])) / raw.shape[2]
    per_pair_grads = torch.autograd.grad(per_pair, leaves)
    torch.testing.assert_close(batched["loss"], per_pair)
    for grad, expected in zip(batched_grads, per_pair_grads, strict=True):
        torch.testing.assert_close(grad, expected)
    looped = DeepRepresentation(
        objective=objective, objective_args=objective_args, cpc_negatives=cpc_negatives, batched_loss=False, **TINY
    ).dependency_loss(pairings)
    for key, value in batched.items():
        torch.testing.assert_close(value, looped[key])


def test_cpc_pools_the_negatives_of_every_location_by_default() -> None:
    pooled = DeepRepresentation(objective="cpc", **TINY)
    per_location = DeepRepresentation(objective="cpc", cpc_negatives="per_location", **TINY)
    assert isinstance(pooled.objective, PooledCPCLoss) and not isinstance(per_location.objective, PooledCPCLoss)
    pairings = raw_pairings()
    loss_pooled, loss_per_location = (
        pooled.dependency_loss(pairings)["loss"],
        per_location.dependency_loss(pairings)["loss"],
    )
    assert not torch.allclose(loss_pooled, loss_per_location)
    # AMDIM's total: sum over pairings of 0.5 * (NCE dir 1 + NCE dir 2), NCE = -mean over (i, l) of the log-softmax
    expected = 0.0
    for pairing in PAIRINGS:
        for raw in pairings[pairing]:
            scores = pooled.critic.soft_clip(raw)
            n, _, size = scores.shape
            negatives = scores.masked_fill(torch.eye(n, dtype=torch.bool)[:, :, None], -torch.inf).flatten(1)
            positives = scores.diagonal().T  # (n, L)
            log_softmax = positives - torch.logaddexp(positives, torch.logsumexp(negatives, dim=1, keepdim=True))
            expected = expected - 0.5 * log_softmax.mean()
    constants = sum(torch.log(torch.tensor(1.0 + 3 * size)) for size in (25, 25, 49, 49, 25, 25)) / 2
    torch.testing.assert_close(loss_pooled.float(), (expected - constants).float())


def test_mine_keeps_one_call_per_location_and_contradictions_are_refused() -> None:
    assert not DeepRepresentation(objective="mine", **TINY).batched_loss
    with pytest.raises(ValueError, match="cpc_negatives"):
        DeepRepresentation(objective="cpc_pooled", cpc_negatives="per_location", **TINY)
    with pytest.raises(ValueError, match="batched_loss=False"):
        DeepRepresentation(objective="cpc", batched_loss=False, **TINY)
    with pytest.raises(ValueError, match="unknown"):
        DeepRepresentation(cpc_negatives="sometimes", **TINY)


def test_training_step_under_cpu_bf16_autocast_is_finite_and_trains() -> None:
    """The GPU's bf16 autocast path, run on the CPU: float32 losses and penalty, gradients everywhere."""
    torch.manual_seed(0)
    task = DeepRepresentation(objective="cpc", **TINY)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        view1, view2 = task.augmentation(images)
        features = task.encoder(torch.cat([view1, view2]))
        assert features.map5.dtype == torch.bfloat16
        first, second = (type(features)(*halves) for halves in zip(*(f.chunk(2) for f in features), strict=True))
        terms = task.dependency_loss(task.raw_score_pairings(first, second))
    assert terms["loss"].dtype == torch.float32 and terms["penalty"].dtype == torch.float32
    (terms["loss"] + terms["penalty"]).backward()
    assert all(torch.isfinite(p.grad).all() for p in task.encoder.parameters() if p.grad is not None)
    assert sum(p.grad is not None for p in task.encoder.parameters()) == len(list(task.encoder.parameters()))
