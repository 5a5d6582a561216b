"""A run that dies mid-training and is resumed from its last checkpoint ends with the weights of an uninterrupted
run, for every task family: MI estimation, GAN, retrieval and the deep task, each at a tiny size from its own
config (the shallow quick start is SIGKILLed for real in tests/test_resume.py).

The crash is an exception thrown in ``on_train_batch_end`` at a chosen step, before that step's checkpoint is
written (Lightning runs ModelCheckpoint after every other callback): the run folder then holds what a SIGKILL
at that point leaves, a checkpoint of the previous step saved mid-epoch, and the resume continues from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pytorch_lightning import Callback

from pdrl import fit
from pdrl.checkpointing import find_last_checkpoint, read_checkpoint
from tests.conftest import write_fake_cifar10
from tests.tiny_run import write_config

REPO = Path(__file__).resolve().parents[1]


class Crash(RuntimeError):
    pass


class CrashAtStep(Callback):
    """Raise ``Crash`` at the end of the batch that brought the run to ``step`` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            raise Crash(f"killed at step {trainer.global_step}")


def family_config(name: str, tmp_path: Path, run: str, crash_at: int | None) -> Path:
    """The family's config at a tiny size: a checkpoint every step, no logger, deterministic."""
    config = yaml.safe_load((REPO / "configs" / FAMILIES[name]["config"]).read_text())
    for section, values in FAMILIES[name]["overrides"].items():
        target = config[section]["init_args"] if section in ("model", "data") else config[section]
        target.update(values)
    callbacks = [
        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
         "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": 0}},
        {"class_path": "pdrl.callbacks.finite_guard.FiniteGuard", "init_args": {"action": "raise"}},
    ]  # fmt: skip
    if crash_at is not None:
        callbacks.append({"class_path": f"{__name__}.CrashAtStep", "init_args": {"step": crash_at}})
    config["trainer"].update(
        logger=False, callbacks=callbacks, deterministic=True, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path / run),
    )  # fmt: skip
    if name == "deep":
        config["data"]["init_args"]["root"] = str(tmp_path / "data")
    return write_config(tmp_path / f"{run}.yaml", config)


FAMILIES = {
    "mi": {
        "config": "mi_gaussian.yaml",
        "max_steps": 9,
        "crash_at": 5,  # in the second MI stage, one step before the held-out batch of its end
        "overrides": {
            "model": {"dim": 4, "hidden_dims": [16], "embed_dim": 8},
            "data": {
                "dim": 4,
                "batch_size": 16,
                "mi_levels": [1.0, 2.0, 3.0],
                "steps_per_level": 3,
                "heldout_batches": 1,
            },
            "trainer": {"max_steps": 9, "accelerator": "cpu"},
        },  # fmt: skip
    },
    "gan": {
        "config": "gan_25gaussians_mice.yaml",
        "max_steps": 16,  # two optimizer steps (D, G) per batch: 8 batches over epochs of 3, validated at each end
        "crash_at": 10,
        "overrides": {
            "model": {"hidden_dims": [16]},
            "data": {"batch_size": 32, "batches_per_epoch": 3, "num_eval_samples": 100},
            "trainer": {"max_steps": 16},
        },
    },
    "retrieval": {
        "config": "retrieval.yaml",
        "max_steps": 9,  # epochs of 4 batches, a validation at each end
        "crash_at": 6,
        "overrides": {
            "model": {"input_dim": 8, "hidden_dims": [16], "embedding_dim": 8},
            "data": {"batch_size": 16, "num_test_words": 20},
            "trainer": {"max_steps": 9, "max_epochs": -1},
        },
    },
    "deep": {
        "config": "deep_cifar_small.yaml",
        "max_steps": 7,  # epochs of 5 batches, a validation at each end
        "crash_at": 4,
        "overrides": {
            "model": {"ndf": 8, "n_rkhs": 32, "depth": 1, "warmup_steps": 2},
            "data": {"batch_size": 16},
            "trainer": {"max_steps": 7, "val_check_interval": 1.0, "limit_val_batches": 1},
        },
    },
}


def prepare_data(name: str, tmp_path: Path) -> None:
    if name == "deep":
        write_fake_cifar10(tmp_path / "data", per_batch=16, n_test=16)
    if name == "retrieval":
        from pdrl.data.word_vectors import synthetic_word_vectors, write_word_vectors

        words, audio, text = synthetic_word_vectors(84, 8, noise=0.1, seed=0)
        write_word_vectors(tmp_path / "audio.vec", words, audio)
        write_word_vectors(tmp_path / "text.vec", words, text)
        FAMILIES[name]["overrides"]["data"].update(audio_path=str(tmp_path / "audio.vec"),
                                                   text_path=str(tmp_path / "text.vec"))  # fmt: skip


@pytest.mark.parametrize("name", list(FAMILIES))
def test_crash_and_resume_equals_uninterrupted_run(tmp_path, name):
    family = FAMILIES[name]
    prepare_data(name, tmp_path)
    fit.main(["--config", str(family_config(name, tmp_path, "reference", None))])
    reference = read_checkpoint(find_last_checkpoint(tmp_path / "reference"))

    crashing = family_config(name, tmp_path, "resumed", family["crash_at"])
    with pytest.raises(Crash):
        fit.main(["--config", str(crashing)])
    stopped = read_checkpoint(find_last_checkpoint(tmp_path / "resumed"))
    assert 0 < stopped["global_step"] < family["max_steps"]
    fit.main(["--config", str(family_config(name, tmp_path, "resumed", None)), "--ckpt_path", "last"])
    resumed = read_checkpoint(find_last_checkpoint(tmp_path / "resumed"))

    assert resumed["global_step"] == reference["global_step"] == family["max_steps"]
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for key, weight in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], weight), f"{name}: {key} differs after a crash and resume"
