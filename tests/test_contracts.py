"""The representation contract: every task that the linear probe evaluates is an Embedder."""

from __future__ import annotations

import torch
from torch import nn

from pdrl.contracts import Embedder
from pdrl.heads import SeparableCritic
from pdrl.tasks import DeepRepresentation, MIEstimation, RepresentationLearning


def test_the_probed_tasks_declare_and_honour_embed() -> None:
    torch.manual_seed(0)
    shallow = RepresentationLearning(nn.Linear(6, 4), nn.Linear(6, 4), SeparableCritic())
    deep = DeepRepresentation(ndf=4, n_rkhs=16, depth=1).eval()
    assert isinstance(shallow, Embedder) and isinstance(deep, Embedder)
    assert shallow.embed(torch.randn(5, 6)).shape == (5, 4)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    representation = deep.embed(images)
    assert representation.shape == (5, 16)
    torch.testing.assert_close(representation, deep(images))


def test_a_task_without_a_representation_is_not_an_embedder() -> None:
    assert not isinstance(MIEstimation(dim=2), Embedder)


def test_probe_data_and_objective_name_contracts() -> None:
    from pdrl.callbacks.finite_guard import objective_name
    from pdrl.contracts import NamesObjective, ProbeDataSource
    from pdrl.data.gaussians import GaussianMIDataModule
    from pdrl.data.images import DigitsDataModule
    from pdrl.tasks import GAN, CrossModalRetrieval

    assert isinstance(DigitsDataModule(), ProbeDataSource)
    assert not isinstance(GaussianMIDataModule(), ProbeDataSource)
    tasks = [
        RepresentationLearning(nn.Linear(6, 4), nn.Linear(6, 4), SeparableCritic(), objective="drfc"),
        DeepRepresentation(ndf=4, n_rkhs=16, depth=1, objective="drfc"),
        MIEstimation(dim=2, objective="drfc"),
        CrossModalRetrieval(input_dim=4, hidden_dims=[8], embedding_dim=4, objective="drfc"),
        GAN(beta=1.0, objective="drfc"),
    ]
    for task in tasks:
        assert isinstance(task, NamesObjective) and objective_name(task) == "drfc", type(task).__name__
    assert objective_name(nn.Linear(2, 2)) == "Linear"  # a module that declares no objective: its class name
