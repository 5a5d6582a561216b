"""One meaning per config: a shipped config trains the same objective on 1 process and on 2 (gloo, CPU).

The quick start's model (encoders, critic, objective, optimiser, all from the shipped config) is trained for 2 steps
through ``python -m pdrl.fit`` twice on the same global batches of 64 pairs: once on 1 process, once under DDP on 2
processes with 32 pairs each. With the critic's ``gather_distributed: true`` every rank scores against the whole
global batch, so the weights after 2 steps agree; with the quick start's view noise too, since every rank draws the
global batch's noise and adds its own rows. A static check covers every shipped config.

Both runs are float64 (``--trainer.precision 64-true``). In float32 they cannot agree for CPC, and not because of
DDP: CPC is unchanged when a constant is added to a row of scores, and shifting G's output by c adds
``a_i @ W @ c`` to row i, so the output biases of G's couplings have zero gradient (float64: 1e-16 to 1e-10). In
float32 that gradient is rounding noise of ~7e-8, above Adam's eps of 1e-8, so Adam turns it into steps of about
lr whose sign depends on the order of the sums, which differs between 1 and 2 ranks (up to 1.9 lr after 2 steps).
The objective never sees that direction; float64 brings the noise far below eps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from pdrl.data.view_noise import ViewNoise
from pdrl.fit import SHIPPED_CONFIGS, shipped_configs
from tests.tiny_run import REPO, subprocess_env, write_config

GLOBAL_BATCH = 64


class FixedGlobalBatches(LightningDataModule):
    """Fixed random pairs in fixed global batches; rank r of k gets rows ``[r * n, (r + 1) * n)`` of each (n = B / k).

    That is the row order of the gathered columns, so 1 process with batch B and k ranks with B / k see the same
    global score matrix. ``view_noise_std``: the half-image datamodules' Gaussian view noise (``ViewNoise``).
    """

    def __init__(
        self, global_batch: int = GLOBAL_BATCH, num_batches: int = 2, dim: int = 32, view_noise_std: float = 0.0
    ) -> None:
        super().__init__()
        self.global_batch, self.num_batches = global_batch, num_batches
        self.view_noise = ViewNoise(view_noise_std)
        generator = torch.Generator().manual_seed(0)
        top = torch.randn(global_batch * num_batches, dim, generator=generator)
        self.pairs = TensorDataset(top, top + 0.5 * torch.randn(top.shape, generator=generator))

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        local = self.global_batch // world
        batches = [
            list(range(start + rank * local, start + (rank + 1) * local))
            for start in range(0, self.global_batch * self.num_batches, self.global_batch)
        ]
        return DataLoader(self.pairs, batch_sampler=batches)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return self.view_noise(batch, self.trainer.global_rank, self.trainer.world_size)


def fit_quick_start(folder: Path, devices: int, objective: str, noise: float = 0.0) -> dict[str, torch.Tensor]:
    """2 steps of the shipped quick start on ``FixedGlobalBatches``; the weights of its last checkpoint."""
    overrides = {
        "trainer": {
            "callbacks": [
                {
                    "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                    "init_args": {"every_n_train_steps": 2, "save_last": True, "save_top_k": 0},
                }
            ]
        }
    }
    run = folder / f"{objective}_noise{noise}_devices{devices}"
    override = write_config(folder / f"override{devices}.yaml", overrides)
    arguments = [
        *("--config", "quickstart_digits.yaml", "--config", str(override)),
        *("--data", "tests.test_fit_distributed.FixedGlobalBatches", "--data.view_noise_std", str(noise)),
        *("--model.objective", objective),
        *("--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.use_distributed_sampler", "false"),
        *("--trainer.precision", "64-true"),
        *("--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.default_root_dir", str(run)),
        *(("--trainer.strategy", "ddp") if devices > 1 else ()),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pdrl.fit", *arguments],
        cwd=folder,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2
    return checkpoint["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("objective, noise", [("pcc", 0.0), ("cpc", 0.0), ("pcc", 0.25)])
def test_quick_start_trains_the_same_on_one_process_and_on_two(tmp_path: Path, objective: str, noise: float) -> None:
    # noise: the quick start's view noise, drawn for the whole global batch on every rank, each rank taking its rows
    single = fit_quick_start(tmp_path, devices=1, objective=objective, noise=noise)
    two_ranks = fit_quick_start(tmp_path, devices=2, objective=objective, noise=noise)
    assert single.keys() == two_ranks.keys()
    # In float64 the two runs agree to 2e-13 lr with PCC, and with CPC to 1.2e-8 lr, in G's output biases: the null
    # direction, whose float64 noise (~1e-16) over Adam's eps (1e-8) is still a step of ~1e-8 lr. A real mismatch
    # (gather_distributed: false, scoring only the local half of the batch, or a gather whose backward does not sum
    # over ranks) moves weights by up to a whole Adam step (~lr), so 1e-6 lr tells them apart.
    lr = yaml.safe_load((SHIPPED_CONFIGS / "quickstart_digits.yaml").read_text())["model"]["init_args"]["lr"]
    for name, weight in single.items():
        torch.testing.assert_close(two_ranks[name], weight, rtol=0, atol=1e-6 * lr, msg=f"{name} differs")


def critics_that_can_gather(node: object) -> list[dict]:
    """The init_args of every class_path in a config whose class takes ``gather_distributed``."""
    found = []
    if isinstance(node, dict):
        if "class_path" in node and "gather_distributed" in _parameters(node["class_path"]):
            found.append(node.get("init_args") or {})
        for value in node.values():
            found += critics_that_can_gather(value)
    elif isinstance(node, list):
        for value in node:
            found += critics_that_can_gather(value)
    return found


def _parameters(class_path: str) -> set[str]:
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    return set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)


@pytest.mark.parametrize("config", shipped_configs())
def test_every_shipped_config_gathers_where_its_head_can(config: str) -> None:
    """Each critic or task that takes ``gather_distributed`` sets it to true, so the global batch is the same on k."""
    content = yaml.safe_load((SHIPPED_CONFIGS / config).read_text())
    for init_args in critics_that_can_gather(content):
        assert init_args.get("gather_distributed") is True, f"{config}: set gather_distributed: true in {init_args}"


def test_configs_are_shipped_inside_the_package() -> None:
    assert shipped_configs() == sorted(path.name for path in (REPO / "configs").glob("*.yaml"))
