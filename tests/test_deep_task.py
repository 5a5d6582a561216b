"""The deep task: DeepRepresentation on tiny random images, and its two configs end to end."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from pdrl.fit import main
from pdrl.tasks.deep_representation import DeepRepresentation

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = dict(ndf=4, n_rkhs=16, depth=1)

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


class TinyImages(pl.LightningDataModule):
    """Random uint8 32x32 RGB images with labels, standing in for CIFAR10 (what the task expects)."""

    def __init__(self, batch_size: int = 8, n_images: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n_images, 3, 32, 32), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, num_classes, (n_images,), generator=generator)
        self.dataset, self.batch_size = TensorDataset(images, labels), batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size)


@pytest.fixture(autouse=True)
def offline_wandb_one_thread(monkeypatch: pytest.MonkeyPatch):
    """No W&B network access; one torch thread (many small ops: faster, and kind to a shared 2-core CI)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_config(name: str, tmp_path: Path, model_overrides: dict, trainer_overrides: dict) -> pl.LightningModule:
    """Fit ``configs/<name>`` for a few steps on TinyImages; the config's model and trainer keys otherwise kept."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    config["data"] = {"class_path": f"{__name__}.TinyImages", "init_args": {"batch_size": 8}}
    config["model"]["init_args"].update(model_overrides)
    trainer = config["trainer"]
    trainer.update(trainer_overrides)
    trainer.update(max_steps=2, max_epochs=None, limit_val_batches=1, val_check_interval=2)
    trainer.update(check_val_every_n_epoch=None, enable_progress_bar=False, log_every_n_steps=1)
    trainer["default_root_dir"] = str(tmp_path / "run")
    trainer["logger"]["init_args"]["save_dir"] = str(tmp_path / "run")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    cli = main(["--config", str(path)])
    assert cli.trainer.global_step == 2
    metrics = cli.trainer.callback_metrics
    assert math.isfinite(metrics["train/loss"]) and 0.0 <= metrics["val/probe_acc"] <= 1.0
    return cli.model


def test_deep_cifar_small_config_runs(tmp_path: Path) -> None:
    model = run_config("deep_cifar_small.yaml", tmp_path, dict(TINY), {})
    assert model.hparams.objective == "drfc" and model.objective.alpha == 0.01
    assert os.path.exists(tmp_path / "run")


def test_deep_cifar_config_runs_at_tiny_width(tmp_path: Path) -> None:
    """The full config as written (bf16-mixed, synced batch norm, gradient value clipping), narrowed to run."""
    model = run_config("deep_cifar.yaml", tmp_path, dict(TINY), {"accelerator": "cpu"})
    assert model.trainer.precision == "bf16-mixed"
    assert model.hparams.warmup_steps == 500 and list(model.hparams.lr_milestones) == [250, 280]


@pytest.mark.parametrize(("objective", "objective_args"), [("cpc", None), ("pcc", None), ("drfc", {"alpha": 0.01})])
def test_training_step_trains_every_part(objective: str, objective_args: dict | None) -> None:
    torch.manual_seed(0)
    task = DeepRepresentation(objective=objective, objective_args=objective_args, **TINY)
    images, labels = TinyImages().dataset.tensors
    loss = task.training_step((images[:6], labels[:6]), 0)
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in task.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_probe_reads_detached_features() -> None:
    """The probe's loss trains the probe only: the encoder's gradient is that of the dependency loss."""
    torch.manual_seed(0)
    task = DeepRepresentation(score_penalty=0.0, **TINY)
    images, labels = TinyImages().dataset.tensors
    torch.manual_seed(1)
    task.training_step((images[:6], labels[:6]), 0).backward()
    with_probe = [p.grad.clone() for p in task.encoder.parameters()]
    task.zero_grad()
    torch.manual_seed(1)
    task.training_step((images[:6], (labels[:6] + 1) % 10), 0).backward()
    for grad, other in zip(with_probe, task.encoder.parameters(), strict=True):
        torch.testing.assert_close(grad, other.grad)


def test_learning_rate_warms_up_then_steps_down_at_milestones() -> None:
    task = DeepRepresentation(lr=1e-3, warmup_steps=4, lr_milestones=(2,), lr_gamma=0.5, **TINY)
    (optimizer,), (warmup, milestones) = task.configure_optimizers()
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        warmup["scheduler"].step()
    assert rates[0] == pytest.approx(1e-3 / 4) and rates[4] == pytest.approx(1e-3)
    assert warmup["interval"] == "step" and milestones["interval"] == "epoch"
    milestones["scheduler"].step()
    milestones["scheduler"].step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)


def test_bad_configuration_raises_one_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown objective"):
        DeepRepresentation(objective="nope", **TINY)
    with pytest.raises(ValueError, match="score_penalty"):
        DeepRepresentation(score_penalty=-1.0, **TINY)
    with pytest.raises(ValueError, match="32x32"):
        DeepRepresentation(**TINY)(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


def test_a_half_image_datamodule_is_refused_with_a_pointer_to_whole_images(tmp_path: Path, fake_data) -> None:
    from pdrl.data.images import MNISTDataModule
    from pdrl.errors import ConfigError

    fake_data.mnist(tmp_path)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="WholeImageDataModule with dataset"):
        trainer.fit(
            DeepRepresentation(**TINY), datamodule=MNISTDataModule(root=str(tmp_path), download=False, batch_size=8)
        )


def test_the_deep_task_trains_on_an_image_folder_and_mnist(tmp_path: Path, fake_data) -> None:
    from PIL import Image

    from pdrl.data.whole_images import WholeImageDataModule

    fake_data.mnist(tmp_path)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "folder" / split / label).mkdir(parents=True)
            for index in range(3):
                pixels = torch.randint(0, 256, (24, 24, 3), dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / "folder" / split / label / f"{index}.png")
    for datamodule in (
        WholeImageDataModule("mnist", root=str(tmp_path), download=False, batch_size=8),
        WholeImageDataModule("folder", root=str(tmp_path / "folder"), batch_size=4),
    ):
        trainer = pl.Trainer(
            max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
        )
        model = DeepRepresentation(objective="cpc", num_classes=10, **TINY)
        trainer.fit(model, datamodule=datamodule)
        assert trainer.global_step == 2 and math.isfinite(trainer.callback_metrics["train/loss"])
        (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
        assert 0.0 <= metrics["val/probe_acc"] <= 1.0


def test_deep_mnist_small_config_runs_with_its_linear_probe(tmp_path: Path, fake_data) -> None:
    """The MNIST config as written (pooled CPC, MNIST statistics, the probe against raw pixels), on fake MNIST."""
    fake_data.mnist(tmp_path)
    config = yaml.safe_load((CONFIGS / "deep_mnist_small.yaml").read_text())
    config["data"]["init_args"].update(root=str(tmp_path), batch_size=8, probe_train_size=30)
    config["model"]["init_args"].update(TINY)
    trainer = config["trainer"]
    trainer.update(max_steps=2, max_time=None, limit_val_batches=1, val_check_interval=2, enable_progress_bar=False)
    trainer["default_root_dir"] = str(tmp_path / "run")
    trainer["logger"]["init_args"]["save_dir"] = str(tmp_path / "run")
    path = tmp_path / "deep_mnist_small.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = main(["--config", str(path)])
    assert cli.trainer.global_step == 2 and cli.model.objective.__class__.__name__ == "PooledCPCLoss"
    (probe,) = [callback for callback in cli.trainer.callbacks if type(callback).__name__ == "LinearProbe"]
    assert probe.history[-1]["step"] == 2 and 0.0 <= probe.history[-1]["accuracy"] <= 1.0
    assert probe.raw_pixel_accuracy is not None


def test_deep_imagefolder_config_runs_on_a_generated_folder(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for label in ("circle", "square", "star"):
            (tmp_path / "folder" / split / label).mkdir(parents=True)
            for index in range(4):
                pixels = torch.randint(0, 256, (40, 40, 3), dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / "folder" / split / label / f"{index}.jpg")
    config = yaml.safe_load((CONFIGS / "deep_imagefolder_small.yaml").read_text())
    assert config["data"]["init_args"]["dataset"] == "folder"
    config["data"]["init_args"].update(root=str(tmp_path / "folder"), batch_size=4)
    config["model"]["init_args"].update(num_classes=3, **TINY)
    trainer = config["trainer"]
    trainer.update(max_steps=2, limit_val_batches=1, val_check_interval=2, enable_progress_bar=False)
    trainer["default_root_dir"] = str(tmp_path / "run")
    trainer["logger"]["init_args"]["save_dir"] = str(tmp_path / "run")
    path = tmp_path / "deep_imagefolder_small.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = main(["--config", str(path)])
    assert cli.trainer.global_step == 2 and math.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert 0.0 <= cli.trainer.callback_metrics["val/probe_acc"] <= 1.0
