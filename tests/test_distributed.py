"""Exactness across devices: 2 CPU (gloo) ranks with half the batch each == 1 process on the whole batch.

One spawn of 2 processes runs every check (starting processes is the slow part); the single-process
references are computed here, in the pytest process, without any process group:

- every objective of ``pdrl.losses.OBJECTIVES`` (and a few options): loss value, MI readout and parameter
  gradients (after DDP averaging) of a tiny encoder + bilinear critic with ``gather_distributed=True``, on two
  successive batches (so that MINE's moving average is used, and its buffer must agree too);
- the same for SimCLR's two-view layout and MoCo's queue layout (with and without the batch's other keys as
  negatives) on a cosine critic, every objective; for the queue also the ``KeyQueue`` contents after every
  enqueue, which must be the queue of the whole batch on every rank;
- one optimiser step of ``DeepRepresentation`` (augmentation, encoder with its global-batch batch norm,
  multi-location critic, penalty, probe, Adam): every parameter and batch-norm statistic after the step;
- the online probe's validation accuracy (torchmetrics state sync) on an uneven split, 4 + 3 images.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pdrl.heads import BilinearCritic, CosineCritic
from pdrl.losses import OBJECTIVES, KeyQueue, TwoViewLayout, build_objective
from pdrl.tasks.deep_representation import DeepRepresentation

WORLD_SIZE = 2
BATCH = 8  # global batch; 4 per rank
N_BATCHES = 2
VALIDATION_SPLIT = (4, 3)  # uneven, as an unpadded distributed sampler gives
QUEUE_SIZE = 10  # warm-up 8 keys, then 8 more per batch: the second enqueue wraps around
SSL_LAYOUTS = ("two_view", "queue", "queue_only")
DEEP_ARGS = dict(ndf=4, n_rkhs=16, depth=1, batch_norm=True, warmup_steps=0, num_classes=3)
# every registry name with its defaults, plus the options that change what is averaged or normalised
CASES = {name: (name, {}) for name in OBJECTIVES} | {
    "drfc_alpha0.01": ("drfc", {"alpha": 0.01}),
    "drfc_self_normalized": ("drfc", {"readout": "self_normalized"}),
    "pc_imbalanced": ("pcc", {"balanced": False}),
    "mice_nwj_blocked": ("mice", {"form": "nwj", "partition_gradient": "blocked"}),
    "smile_tau5": ("smile", {"tau": 5.0}),
}

# training_step is called by hand here, without a Trainer to log to
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


class PairModel(nn.Module):
    """Two tiny encoders and a bilinear critic: ``scores = F(x) W G(y)^T``, columns gathered over ranks."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder_x = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
        self.encoder_y = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
        self.critic = BilinearCritic(4, 4, gather_distributed=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.critic(self.encoder_x(x), self.encoder_y(y))


def make_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    pairs = []
    for _ in range(N_BATCHES):
        x = torch.randn(BATCH, 5, generator=generator, dtype=torch.float64)
        pairs.append((x, x + 0.3 * torch.randn(BATCH, 5, generator=generator, dtype=torch.float64)))
    return pairs


def make_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(BATCH, 3, 32, 32, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, DEEP_ARGS["num_classes"], (BATCH,), generator=generator)
    validation = torch.rand(sum(VALIDATION_SPLIT), 3, 32, 32, generator=generator, dtype=torch.float64)
    return images, labels, validation


def objective_run(case: str, rows: slice) -> dict[str, list]:
    """Loss, MI readout, gradients (DDP-averaged when distributed) and buffers of ``case`` on ``rows`` per batch."""
    torch.manual_seed(0)
    model = PairModel().double()
    name, kwargs = CASES[case]
    objective = build_objective(name, **kwargs)
    if dist.is_initialized():
        model = DistributedDataParallel(model)
    result: dict[str, list] = {"loss": [], "mi": [], "grads": [], "buffers": []}
    for x, y in make_pairs():
        model.zero_grad()
        scores = model(x[rows], y[rows])
        loss = objective(scores)
        loss.backward()
        result["loss"].append(loss.detach())
        result["mi"].append(objective.mi(scores))
        result["grads"].append([p.grad.clone() for p in model.parameters()])
        result["buffers"].append([b.clone() for b in objective.buffers()])
    return result


class SSLModel(nn.Module):
    """Query and key encoders and a cosine critic gathering over ranks, for the two-view and queue layouts."""

    def __init__(self, with_key_encoder: bool) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
        if with_key_encoder:
            self.key_encoder = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4))
        self.critic = CosineCritic(temperature=0.5, gather_distributed=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor, queue: KeyQueue | None) -> tuple[torch.Tensor, torch.Tensor]:
        if queue is None:  # SimCLR: one encoder, both views anchors
            return self.critic.two_view(self.encoder(x), self.encoder(y)), x.new_empty(0)
        keys = self.key_encoder(y)
        return self.critic.with_queue(self.encoder(x), keys, queue), keys


def ssl_run(case: str, layout_name: str, rows: slice) -> dict[str, list]:
    """Like ``objective_run`` on SimCLR's or MoCo's layout; also the queue's keys after every enqueue."""
    torch.manual_seed(0)
    model = SSLModel(with_key_encoder=layout_name != "two_view").double()
    name, kwargs = CASES[case]
    objective = build_objective(name, **kwargs)
    queue = None if layout_name == "two_view" else KeyQueue(QUEUE_SIZE, 4).double()  # outside DDP: no broadcast
    if queue is not None:
        warm_up = torch.randn(BATCH, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        with torch.no_grad():
            queue.enqueue(model.key_encoder(warm_up[rows]))
    if dist.is_initialized():
        model = DistributedDataParallel(model)
    result: dict[str, list] = {"loss": [], "mi": [], "grads": [], "buffers": [], "queue": []}
    for x, y in make_pairs():
        model.zero_grad()
        scores, keys = model(x[rows], y[rows], queue)
        layout = TwoViewLayout() if queue is None else queue.layout(batch_negatives=layout_name == "queue")
        loss = objective(scores, layout)
        loss.backward()
        result["loss"].append(loss.detach())
        result["mi"].append(objective.mi(scores, layout))
        result["grads"].append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        result["buffers"].append([b.clone() for b in objective.buffers()])
        if queue is not None:
            queue.enqueue(keys)
            result["queue"].append(queue.keys.clone())
    return result


class TrainingStep(nn.Module):
    """Calls ``training_step`` in ``forward`` so that DDP sees it (as Lightning's own wrapper does)."""

    def __init__(self, task: DeepRepresentation) -> None:
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.task.training_step((images, labels), 0)


def deep_run(rows: slice, validation_rows: slice) -> dict[str, object]:
    """Parameters after one step of ``DeepRepresentation`` and the probe accuracy on the validation rows."""
    images, labels, validation = make_images()
    torch.manual_seed(0)
    task = DeepRepresentation(objective="drfc", objective_args={"alpha": 0.01}, **DEEP_ARGS).double()
    step = TrainingStep(task)
    if dist.is_initialized():
        step = DistributedDataParallel(step)
    (optimizer,), _ = task.configure_optimizers()
    torch.manual_seed(3)  # the same random draws on every rank, as Lightning's seed_everything gives
    loss = step(images[rows], labels[rows])
    loss.backward()
    optimizer.step()
    task.eval()
    with torch.no_grad():
        all_logits = task.probe(task(validation))
    # labels that the probe gets right on about half of the images, so that the accuracy is not trivial
    predicted = all_logits.argmax(1)
    validation_labels = torch.where(
        torch.arange(len(predicted)) % 2 == 0, predicted, (predicted + 1) % len(all_logits[0])
    )
    task.validation_step((validation[validation_rows], validation_labels[validation_rows]), 0)
    return {
        "params": {name: p.detach().clone() for name, p in task.named_parameters()},
        "buffers": {name: b.detach().clone() for name, b in task.named_buffers()},
        "accuracy": task.val_probe_accuracy.compute(),
        "labels": validation_labels,
    }


def worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["WANDB_MODE"] = "disabled"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        share = BATCH // WORLD_SIZE
        rows = slice(rank * share, (rank + 1) * share)
        start = sum(VALIDATION_SPLIT[:rank])
        validation_rows = slice(start, start + VALIDATION_SPLIT[rank])
        results = {case: objective_run(case, rows) for case in CASES}
        results["ssl"] = {(case, layout): ssl_run(case, layout, rows) for case in CASES for layout in SSL_LAYOUTS}
        results["deep"] = deep_run(rows, validation_rows)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ranks")
    # fork: the workers inherit the imported modules (a spawned interpreter re-imports torch and Lightning)
    mp.start_processes(worker, args=(free_port(), str(out_dir)), nprocs=WORLD_SIZE, start_method="fork")
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_objective_loss_and_gradients_match_one_process(ranks: list[dict], name: str) -> None:
    single = objective_run(name, slice(None))
    for result in ranks:
        for step in range(N_BATCHES):
            torch.testing.assert_close(result[name]["loss"][step], single["loss"][step], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(result[name]["mi"][step], single["mi"][step], rtol=1e-9, atol=1e-9)
            for grad, expected in zip(result[name]["grads"][step], single["grads"][step], strict=True):
                torch.testing.assert_close(grad, expected, rtol=1e-7, atol=1e-9)
            for buffer, expected in zip(result[name]["buffers"][step], single["buffers"][step], strict=True):
                torch.testing.assert_close(buffer, expected, rtol=1e-9, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("layout", SSL_LAYOUTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_ssl_layouts_match_one_process(ranks: list[dict], name: str, layout: str) -> None:
    single = ssl_run(name, layout, slice(None))
    assert len(single["grads"][0]) == (4 if layout == "two_view" else 8)  # the key encoder gets gradients too
    for result in ranks:
        result = result["ssl"][name, layout]
        for step in range(N_BATCHES):
            torch.testing.assert_close(result["loss"][step], single["loss"][step], rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(result["mi"][step], single["mi"][step], rtol=1e-9, atol=1e-9)
            assert len(result["grads"][step]) == len(single["grads"][step])
            for grad, expected in zip(result["grads"][step], single["grads"][step], strict=True):
                torch.testing.assert_close(grad, expected, rtol=1e-7, atol=1e-9)
            for buffer, expected in zip(result["buffers"][step], single["buffers"][step], strict=True):
                torch.testing.assert_close(buffer, expected, rtol=1e-9, atol=1e-9, equal_nan=True)
        for keys, expected in zip(result["queue"], single["queue"], strict=True):
            # float64 keys of half a batch per rank against the whole batch: the same values up to the last bit or
            # so (a CPU may round a matrix product of another size differently: 1e-16 on an AMX Xeon), while a key
            # in the wrong slot or from the wrong rank differs by O(1)
            torch.testing.assert_close(keys, expected, rtol=1e-12, atol=1e-12)
    if layout != "two_view":
        assert [len(keys) for keys in single["queue"]] == [QUEUE_SIZE] * N_BATCHES


def test_mine_moving_average_is_used(ranks: list[dict]) -> None:
    """The MINE comparison above is meaningful: its buffer is set and moves between the two batches."""
    first, second = ranks[0]["mine"]["buffers"][0][0], ranks[0]["mine"]["buffers"][1][0]
    assert torch.isfinite(first) and torch.isfinite(second) and first != second


@pytest.fixture(scope="module")
def single_deep() -> dict[str, object]:
    return deep_run(slice(None), slice(None))


def test_deep_training_step_matches_one_process(ranks: list[dict], single_deep: dict) -> None:
    torch.manual_seed(0)
    initial = dict(DeepRepresentation(objective="drfc", objective_args={"alpha": 0.01}, **DEEP_ARGS).named_parameters())
    for result in ranks:
        for name, value in result["deep"]["params"].items():
            torch.testing.assert_close(value, single_deep["params"][name], rtol=1e-7, atol=1e-10, msg=name)
        for name, value in result["deep"]["buffers"].items():  # batch-norm running statistics
            torch.testing.assert_close(value, single_deep["buffers"][name], rtol=1e-7, atol=1e-10, msg=name)
    moved = [name for name, value in single_deep["params"].items() if not torch.allclose(value.float(), initial[name])]
    assert len(moved) == len(initial), f"the step left parameters unchanged, the comparison is partly vacuous: {moved}"


def test_probe_accuracy_matches_one_process(ranks: list[dict], single_deep: dict) -> None:
    single = single_deep
    assert 0.0 < single["accuracy"] < 1.0
    for result in ranks:
        torch.testing.assert_close(result["deep"]["labels"], single["labels"])
        torch.testing.assert_close(result["deep"]["accuracy"], single["accuracy"])
