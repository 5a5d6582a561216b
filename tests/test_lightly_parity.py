"""Drop-in proof against the real lightly package, in float64: CPC's cross-entropy on SimCLR's two-view cosine
matrix is ``lightly.loss.NTXentLoss(temperature)``, and on a queue of K past keys without batch negatives it is
``NTXentLoss(temperature, memory_bank_size=(K, d))``, value and gradient, step after step, with the queue holding
the very keys of lightly's memory bank. (tests/test_layouts.py checks the same formulas written out by hand.)

lightly's bank starts full, as K random unit vectors, and is never renormalised; pdrl's ``KeyQueue`` starts empty.
Both start here from the same K unit vectors (enqueued into the ``KeyQueue``), and the keys are enqueued
normalised, as lightly stores them (``CosineCritic`` normalises at scoring, so the loss would not change without).
lightly writes a batch that overruns the end of its bank only up to the end and drops the rest, so K is a multiple
of the batch size, where both are the same first-in first-out queue.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pdrl.heads import CosineCritic
from pdrl.losses import CPCLoss, KeyQueue, QueueLayout, TwoViewLayout

lightly_loss = pytest.importorskip(
    "lightly.loss", reason="lightly is not installed (pip install -e '.[dev]' installs the version this test pins)"
)

TEMPERATURES = (0.07, 0.5)
N, DIM, QUEUE_SIZE = 8, 16, 32  # K = 4 batches: the queue is full from the first step and wraps every 4 steps
STEPS = 11  # more than fill the queue twice over, ending with the pointer mid-queue


def embeddings(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (N, DIM) float64 batches of raw (unnormalised) embeddings that require gradients."""
    out0 = torch.randn(N, DIM, generator=generator, dtype=torch.float64) * 3
    out1 = out0 + torch.randn(N, DIM, generator=generator, dtype=torch.float64)  # correlated views
    return out0.requires_grad_(), out1.requires_grad_()


def value_and_gradients(loss: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (loss.detach(), *torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_cpc_on_the_two_view_cosine_matrix_is_lightlys_nt_xent(temperature: float) -> None:
    generator = torch.Generator().manual_seed(0)
    critic, objective = CosineCritic(temperature=temperature), CPCLoss(cross_entropy=True)
    reference = lightly_loss.NTXentLoss(temperature=temperature)
    for _ in range(3):
        out0, out1 = embeddings(generator)
        ours = value_and_gradients(objective(critic.two_view(out0, out1), TwoViewLayout()), out0, out1)
        theirs = value_and_gradients(reference(out0, out1), out0, out1)
        for mine, lightlys in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine, lightlys, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_cpc_on_a_queue_without_batch_negatives_is_lightlys_nt_xent_with_a_memory_bank(temperature: float) -> None:
    generator = torch.Generator().manual_seed(1)
    start = F.normalize(torch.randn(QUEUE_SIZE, DIM, generator=generator, dtype=torch.float64), dim=1)
    reference = lightly_loss.NTXentLoss(temperature=temperature, memory_bank_size=(QUEUE_SIZE, DIM)).double()
    reference.memory_bank.bank = start.clone()  # lightly's own start is K random unit vectors: these ones
    queue = KeyQueue(size=QUEUE_SIZE, dim=DIM).double()
    queue.enqueue(start)
    critic, objective = CosineCritic(temperature=temperature), CPCLoss(cross_entropy=True)
    for _ in range(STEPS):
        out0, out1 = embeddings(generator)
        scores = critic.with_queue(out0, out1, queue)  # (N, N + K); scored before the enqueue, as lightly
        assert scores.shape == (N, N + QUEUE_SIZE)
        ours = value_and_gradients(objective(scores, QueueLayout(len(queue), batch_negatives=False)), out0, out1)
        queue.enqueue(F.normalize(out1.detach(), dim=1))
        theirs = value_and_gradients(reference(out0, out1), out0, out1)  # updates its bank with out1, normalised
        for mine, lightlys in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine, lightlys, rtol=1e-12, atol=1e-12)
        # the same keys in the same ring slots, and the same next slot
        torch.testing.assert_close(queue.keys_buffer, reference.memory_bank.bank, rtol=0, atol=0)
        assert int(queue.pointer) == int(reference.memory_bank.bank_ptr)
    assert int(queue.pointer) == STEPS * N % QUEUE_SIZE != 0
