"""SSL layouts: CPC on SimCLR's two-view cosine matrix is NT-Xent and on a queue is MoCo's loss (value and
gradient, against independent implementations written here); every objective runs on both layouts and
ignores what the layout excludes; readouts count the marginal candidates of the layout; the key queue is a
checkpointed FIFO. (2 ranks == 1 process for these layouts: tests/test_distributed.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pdrl.errors import ConfigError
from pdrl.heads import CosineCritic, SeparableCritic
from pdrl.losses import (
    OBJECTIVES,
    CPCLoss,
    DRFCLoss,
    KeyQueue,
    MICELoss,
    PairedLayout,
    PCCLoss,
    QueueLayout,
    SMILELoss,
    TwoViewLayout,
)

VARIANTS = {
    **{name: cls for name, cls in OBJECTIVES.items() if name != "infonce"},
    "cpc_cross_entropy": lambda: CPCLoss(cross_entropy=True),
    "pcc_imbalanced": lambda: PCCLoss(balanced=False),
    "drfc_relative": lambda: DRFCLoss(alpha=0.01, readout="self_normalized"),
    "smile_unclipped": lambda: SMILELoss(tau=math.inf),
    "mice_nwj_blocked": lambda: MICELoss(form="nwj", partition_gradient="blocked"),
}
TEMPERATURE = 0.3


def nt_xent_reference(out0: torch.Tensor, out1: torch.Tensor, temperature: float) -> torch.Tensor:
    """lightly's NTXentLoss formula, written out: cross-view logits, then same-view logits without the diagonal,
    cross-entropy with the cross-view partner as label, averaged over the 2N anchors."""
    out0, out1 = F.normalize(out0, dim=1), F.normalize(out1, dim=1)
    n = out0.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    logits_00 = (out0 @ out0.T / temperature)[off_diagonal].view(n, n - 1)
    logits_01 = out0 @ out1.T / temperature
    logits_10 = out1 @ out0.T / temperature
    logits_11 = (out1 @ out1.T / temperature)[off_diagonal].view(n, n - 1)
    logits = torch.cat([torch.cat([logits_01, logits_00], dim=1), torch.cat([logits_10, logits_11], dim=1)])
    labels = torch.arange(n).repeat(2)
    return F.cross_entropy(logits, labels)


def moco_reference(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: cross-entropy over ``[q.k+, q.queue] / T`` with the positive at index 0."""
    queries, keys, queue = F.normalize(queries, dim=1), F.normalize(keys, dim=1), F.normalize(queue, dim=1)
    positive = (queries * keys).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, queries @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(queries), dtype=torch.long))


def value_and_grads(loss_fn, *tensors: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    tensors = tuple(t.detach().clone().requires_grad_(True) for t in tensors)
    loss = loss_fn(*tensors)
    return loss.detach(), torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpc_on_the_two_view_cosine_layout_is_nt_xent(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    view_a, view_b = torch.randn(2, 12, 7, generator=generator, dtype=dtype)
    view_b = view_a + 0.5 * view_b
    critic = CosineCritic(temperature=TEMPERATURE)
    expected, expected_grads = value_and_grads(lambda a, b: nt_xent_reference(a, b, TEMPERATURE), view_a, view_b)
    value, grads = value_and_grads(
        lambda a, b: CPCLoss(cross_entropy=True)(critic.two_view(a, b), TwoViewLayout()), view_a, view_b
    )
    torch.testing.assert_close(value, expected.to(value.dtype), rtol=0, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)
    # the MI-bound form differs by the constant log(2N - 1) only: same gradient
    bound, bound_grads = value_and_grads(lambda a, b: CPCLoss()(critic.two_view(a, b), TwoViewLayout()), view_a, view_b)
    torch.testing.assert_close(bound, (expected - math.log(2 * 12 - 1)).to(bound.dtype), rtol=0, atol=1e-6)
    for grad, expected_grad in zip(bound_grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpc_on_the_queue_layout_is_moco_infonce(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(2, 10, 6, generator=generator, dtype=dtype)
    queue = torch.randn(25, 6, generator=generator, dtype=dtype)
    critic = CosineCritic(temperature=TEMPERATURE)
    expected, expected_grads = value_and_grads(lambda q, k: moco_reference(q, k, queue, TEMPERATURE), queries, keys)
    layout = QueueLayout(len(queue), batch_negatives=False)
    value, grads = value_and_grads(
        lambda q, k: CPCLoss(cross_entropy=True)(critic.with_queue(q, k, F.normalize(queue, dim=1)), layout),
        queries,
        keys,
    )
    torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


def test_queue_layout_with_batch_negatives_adds_the_other_keys_of_the_batch() -> None:
    generator = torch.Generator().manual_seed(2)
    queries, keys = torch.randn(2, 8, 5, generator=generator)
    queue = torch.randn(11, 5, generator=generator)
    critic = CosineCritic(temperature=TEMPERATURE)
    scores = critic.with_queue(queries, keys, queue)
    assert scores.shape == (8, 8 + 11)
    logits = torch.cat([critic(queries, keys), critic.score(queries, queue)], dim=1)
    expected = F.cross_entropy(logits, torch.arange(8))
    torch.testing.assert_close(CPCLoss(cross_entropy=True)(scores, QueueLayout(11)), expected)
    assert CPCLoss().mi(torch.where(torch.eye(8, 19, dtype=torch.bool), 1e4, -1e4), QueueLayout(11)).item() == (
        pytest.approx(math.log(8 + 11))
    )


def two_view_scores(n: int = 6, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    view_a = torch.randn(n, 5, generator=generator)
    view_b = view_a + 0.3 * torch.randn(n, 5, generator=generator)
    return CosineCritic(temperature=0.5).two_view(view_a, view_b)


def queue_scores(n: int = 6, queued: int = 9, seed: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(n, 5, generator=generator)
    keys = queries + 0.3 * torch.randn(n, 5, generator=generator)
    return CosineCritic(temperature=0.5).with_queue(queries, keys, torch.randn(queued, 5, generator=generator))


LAYOUT_CASES = {
    "two_view": (two_view_scores, TwoViewLayout(), lambda n, m: torch.eye(n, m, dtype=torch.bool)),
    "queue_batch_negatives": (queue_scores, QueueLayout(9), None),
    "queue_only": (
        queue_scores,
        QueueLayout(9, batch_negatives=False),
        lambda n, m: torch.cat([~torch.eye(n, dtype=torch.bool), torch.zeros(n, m - n, dtype=torch.bool)], 1),
    ),
}


@pytest.mark.parametrize("layout_name", sorted(LAYOUT_CASES))
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_objective_runs_on_the_ssl_layouts_and_ignores_excluded_entries(name: str, layout_name: str) -> None:
    make_scores, layout, excluded = LAYOUT_CASES[layout_name]
    scores = make_scores().detach().requires_grad_(True)
    objective = VARIANTS[name]()
    loss = objective(scores, layout)
    (gradient,) = torch.autograd.grad(loss, scores)
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()
    assert torch.isfinite(objective.mi(scores, layout))
    assert gradient.abs().sum() > 0
    if excluded is None:
        return
    mask = excluded(*scores.shape)
    assert not gradient[mask].any(), "an excluded entry receives gradient"
    moved = scores.detach().masked_fill(mask, 1e4)
    torch.testing.assert_close(VARIANTS[name]()(moved, layout), VARIANTS[name]()(scores.detach(), layout))
    torch.testing.assert_close(objective.mi(moved, layout), objective.mi(scores.detach(), layout))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_minus_infinity_on_excluded_self_pairs_is_harmless(name: str) -> None:
    """Hand-built NT-Xent matrices put -inf on the self-pairs; in the two-view layout that changes nothing."""
    scores = two_view_scores().detach()
    with_inf = scores.clone().fill_diagonal_(-math.inf).requires_grad_(True)
    loss = VARIANTS[name]()(with_inf, TwoViewLayout())
    (gradient,) = torch.autograd.grad(loss, with_inf)
    torch.testing.assert_close(loss.detach(), VARIANTS[name]()(scores, TwoViewLayout()))
    assert torch.isfinite(gradient).all()


def test_readouts_count_the_candidates_of_the_layout() -> None:
    """On SimCLR's 2N x 2N matrix each anchor has 2N - 1 candidates (its self-pair is none), 2N - 2 negatives."""
    n = 5
    rows = torch.arange(2 * n)
    separated = torch.full((2 * n, 2 * n), -1e4)
    separated[rows, (rows + n) % (2 * n)] = 1e4
    assert CPCLoss().mi(separated, TwoViewLayout()).item() == pytest.approx(math.log(2 * n - 1))
    zero = torch.zeros(2 * n, 2 * n)
    assert PCCLoss(balanced=False).mi(zero, TwoViewLayout()).item() == pytest.approx(math.log(2 * n - 2))
    torch.testing.assert_close(PCCLoss(balanced=False).log_pd(zero, TwoViewLayout()), zero + math.log(2 * n - 2))
    torch.testing.assert_close(
        PCCLoss(balanced=False).scores_from_log_pd(torch.zeros(4, 4 + 7), QueueLayout(7, batch_negatives=False)),
        torch.full((4, 11), -math.log(7)),
    )


def test_paired_layout_is_the_default() -> None:
    scores = torch.randn(6, 6, requires_grad=True)
    for name, make in VARIANTS.items():
        torch.testing.assert_close(make()(scores, PairedLayout()), make()(scores), msg=name)


def test_layouts_reject_matrices_they_do_not_fit() -> None:
    with pytest.raises(ValueError, match="fit no two-view layout"):
        CPCLoss()(torch.randn(5, 5), TwoViewLayout())
    with pytest.raises(ValueError, match="fit no queue layout with 3 queued keys.*before enqueue"):
        CPCLoss()(torch.randn(4, 8), QueueLayout(3))
    with pytest.raises(ValueError, match="no marginal"):
        CPCLoss()(torch.randn(4, 4), QueueLayout(0, batch_negatives=False))
    with pytest.raises(ValueError, match="no marginal"):
        CPCLoss()(torch.randn(2, 2), TwoViewLayout())
    with pytest.raises(ValueError, match="queue_size=-1"):
        QueueLayout(-1)
    with pytest.raises(TypeError, match="layout must be a pdrl.losses layout"):
        CPCLoss()(torch.randn(4, 4), "two_view")


def test_cosine_critic_is_a_scaled_cosine_similarity() -> None:
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    expected = F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1) / 0.2
    torch.testing.assert_close(CosineCritic(temperature=0.2)(a, b), expected)
    torch.testing.assert_close(SeparableCritic(temperature=0.2, normalize=True)(a, b), expected)
    with pytest.raises(ValueError, match="temperature=0"):
        CosineCritic(temperature=0)


def test_two_view_matrix_puts_both_views_against_both_views() -> None:
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    critic = SeparableCritic()
    both = torch.cat([a, b])
    torch.testing.assert_close(critic.two_view(a, b), both @ both.T)
    with pytest.raises(ValueError, match="same shape"):
        critic.two_view(a, b[:3])


def test_key_queue_is_a_checkpointed_fifo() -> None:
    queue = KeyQueue(size=5, dim=2)
    assert len(queue) == 0 and queue.keys.shape == (0, 2)
    batches = [torch.full((3, 2), float(step)) + torch.arange(3.0)[:, None] / 10 for step in range(3)]
    queue.enqueue(batches[0])
    torch.testing.assert_close(queue.keys, batches[0])
    assert queue.layout().queue_size == 3
    queue.enqueue(batches[1])  # 6 keys into 5 slots: the oldest one goes
    torch.testing.assert_close(queue.keys, torch.cat(batches[:2])[1:])
    restored = KeyQueue(size=5, dim=2)
    restored.load_state_dict(queue.state_dict())
    assert {"keys_buffer", "pointer", "count"} <= set(queue.state_dict())
    for copy in (queue, restored):
        copy.enqueue(batches[2])
    torch.testing.assert_close(restored.keys, torch.cat(batches)[-5:])
    torch.testing.assert_close(restored.keys, queue.keys)
    queue.enqueue(torch.arange(14.0).view(7, 2))  # more than the queue holds: the newest 5
    torch.testing.assert_close(queue.keys, torch.arange(14.0).view(7, 2)[2:])
    with pytest.raises(ValueError, match=r"needs \(n, 2\) keys"):
        queue.enqueue(torch.zeros(3, 4))


@pytest.mark.parametrize(
    "build",
    [
        lambda: QueueLayout(-1),
        lambda: QueueLayout(4, batch_negatives=1),
        lambda: CPCLoss(cross_entropy=1),
        lambda: KeyQueue(0, 2),
        lambda: SeparableCritic(temperature=0.0),
        lambda: SeparableCritic(normalize=1),
    ],
    ids=["queue_size", "batch_negatives", "cross_entropy", "queue_length", "temperature", "normalize"],
)
def test_bad_constructor_values_are_config_errors(build) -> None:
    # a ConfigError ends in one line 'pdrl: error: ...' (exit 2); a plain ValueError/TypeError is reported as a bug
    with pytest.raises(ConfigError):
        build()
