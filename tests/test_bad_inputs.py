"""Bad configs and bad files: each ends in one line on stderr saying what is wrong and what to do, exit status 2,
and leaves no checkpoint in the run folder that a later ``--ckpt_path last`` would trust."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from pdrl import fit
from pdrl.checkpointing import AtomicCheckpointIO, find_last_checkpoint
from pdrl.errors import ConfigError, one_sentence, run_command
from pdrl.losses import OBJECTIVES
from tests.tiny_run import fit_command, subprocess_env, tiny_config, write_config

CHECK_KEY = "Check the config value"

# (case id, extra command-line arguments, text the one-line message must contain)
BAD_ARGUMENTS = [
    (
        "unknown objective",
        ["--model.objective", "foo"],
        f"model.objective: 'foo' is not one of the choices: {', '.join(OBJECTIVES)}.",
    ),
    ("unknown objective argument", ["--model.objective_args", '{"bogus": 1}'], "takes no argument bogus"),
    (
        "alpha out of range",
        ["--model.objective", "drfc", "--model.objective_args", '{"alpha": 2}'],
        "alpha must be in [0, 1)",
    ),
    ("unknown head", ["--model.critic", "pdrl.heads.NoSuchCritic"], "model.critic: Expected a path but pdrl.heads"),
    ("unknown dataset", ["--data", "pdrl.data.images.NoSuchData"], "data: Expected a path but pdrl.data.images.No"),
    ("unknown logger", ["--trainer.logger", "pytorch_lightning.loggers.NoLogger"], "trainer.logger: Expected a path"),
    (
        "unknown lr schedule",
        ["--model.lr_schedule", "linear"],
        "model.lr_schedule: 'linear' is not one of the choices: constant, cosine.",
    ),
    (
        "cosine schedule in a run without end",
        ["--model.lr_schedule", "cosine", "--trainer.max_steps", "-1", "--trainer.max_epochs", "-1"],
        "lr_schedule='cosine' decays the rate over the run's steps, but this run has no end: set trainer.max_steps",
    ),
    ("wrong type of lr", ["--model.lr", "abc"], "model.lr: Expected a <class 'float'>. Got value: abc"),
    ("zero learning rate", ["--model.lr", "0"], "lr=0.0 must be > 0, e.g. 1e-4"),
    ("negative learning rate", ["--model.lr", "-0.1"], "lr=-0.1 must be > 0"),
    ("negative batch size", ["--data.batch_size", "-5"], "batch_size=-5 must be an integer >= 2"),
    (
        "wrong type of batch size",
        ["--data.batch_size", "1.5"],
        "data.batch_size: Expected a <class 'int'>. Got value: 1.5",
    ),
    ("test fraction out of range", ["--data.test_fraction", "1.5"], "test_fraction=1.5 must be in (0, 1)"),
    ("unknown config key", ["--model.learning_rate", "0.1"], "model: Option 'learning_rate' is not accepted"),
    ("wrong type of max_steps", ["--trainer.max_steps", "ten"], "trainer.max_steps: Expected a <class 'int'>"),
    ("negative max_steps", ["--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer or -1"),
    (
        "missing MNIST while offline",
        ["--data", "pdrl.data.images.MNISTDataModule", "--data.root", "{tmp}/no_data", "--data.download", "false"],
        "MNIST is not under root='{tmp}/no_data'. Put these files there",
    ),
    (
        "missing image folder",
        ["--data", "pdrl.data.images.ImageFolderDataModule", "--data.root", "{tmp}/no_images"],
        "The image folder {tmp}/no_images does not exist: give the folder that holds train/<class>/ and test/<class>/",
    ),
    (
        "batch larger than the train split",
        ["--data.batch_size", "100000"],
        "fewer than batch_size=100000: set data.batch_size to at most",
    ),
    ("checkpoint that does not exist", ["--ckpt_path", "{tmp}/nowhere.ckpt"], "Checkpoint {tmp}/nowhere.ckpt does not"),
    ("--ckpt_path last without a checkpoint", ["--ckpt_path", "last"], "--ckpt_path last found no last*.ckpt in"),
    ("config file that does not exist", ["--config", "{tmp}/missing.yaml"], "missing.yaml"),
]


def corrupt_checkpoints(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoint files a resume must refuse, each with the text its message must contain."""
    run = tmp / "run" / "checkpoints"
    run.mkdir(parents=True, exist_ok=True)
    good = tmp / "good.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, good)
    truncated = tmp / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    not_lightning = tmp / "not_lightning.ckpt"
    torch.save({"weights": torch.ones(3)}, not_lightning)
    empty = tmp / "empty.ckpt"
    empty.write_bytes(b"")
    return {
        "truncated": (truncated, f"Checkpoint {truncated} is corrupt or truncated"),
        "garbage": (garbage, f"Checkpoint {garbage} is corrupt or truncated"),
        "empty": (empty, f"Checkpoint {empty} is corrupt or truncated"),
        "not a Lightning checkpoint": (not_lightning, f"Checkpoint {not_lightning} is not a Lightning checkpoint"),
    }


def run_and_read_error(tmp_path: Path, capsys, args: list[str]) -> tuple[int, str]:
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps=2, probe_every=100))
    status = run_command(fit.main, ["--config", str(config), *args])
    lines = capsys.readouterr().err.strip().splitlines()
    return status, lines[-1] if lines else ""


def assert_nothing_to_resume(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        find_last_checkpoint(tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else ["<none>"]


@pytest.mark.parametrize(("args", "expected"), [case[1:] for case in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_argument_ends_in_one_line(tmp_path, capsys, args, expected):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    status, error = run_and_read_error(tmp_path, capsys, args)
    assert status == 2
    assert error.startswith("pdrl: error: ") and expected.replace("{tmp}", str(tmp_path)) in error, error
    assert listing(tmp_path / "run") == ["<none>"]  # a failing start writes nothing: no folder, config or checkpoint


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "not a Lightning checkpoint"])
def test_bad_checkpoint_ends_in_one_line(tmp_path, capsys, kind):
    path, expected = corrupt_checkpoints(tmp_path)[kind]
    before = listing(tmp_path / "run")
    status, error = run_and_read_error(tmp_path, capsys, ["--ckpt_path", str(path)])
    assert status == 2 and error.startswith("pdrl: error: ") and expected in error, error
    assert "delete it and resume from an earlier checkpoint" in error or "give a .ckpt file saved by" in error
    assert_nothing_to_resume(tmp_path)
    assert listing(tmp_path / "run") == before


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (
            {"class_path": "pdrl.callbacks.finite_guard.FiniteGuard", "init_args": {"action": "ignore"}},
            "FiniteGuard(action='ignore') is unknown: choose one of ('raise', 'skip')",
        ),
        (
            {"class_path": "pdrl.callbacks.linear_probe.LinearProbe", "init_args": {"every_n_steps": 0}},
            "LinearProbe(every_n_steps=0) must be a positive integer",
        ),
    ],
    ids=["unknown guard action", "probe every 0 steps"],
)
def test_bad_callback_in_config_ends_in_one_line(tmp_path, capsys, callback, expected):
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", 2, 100, extra_callbacks=[callback]))
    status = run_command(fit.main, ["--config", str(config)])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and error.startswith("pdrl: error: ") and expected in error, error
    assert_nothing_to_resume(tmp_path)


def test_malformed_yaml_config_ends_in_one_line(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("model: [unclosed\n  lr: 1\n")
    status = run_command(fit.main, ["--config", str(config)])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and error.startswith("pdrl: error: ") and "Problems parsing config" in error, error
    assert "line 1, column 8" in error


def test_a_bug_inside_pdrl_keeps_its_traceback_and_says_it_is_one(tmp_path, monkeypatch):
    """A plain ValueError raised inside pdrl during fit is not a user error: it propagates with a note."""
    from pdrl.tasks.representation import RepresentationLearning

    def broken_step(self, batch, batch_idx):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(RepresentationLearning, "training_step", broken_step)
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps=2, probe_every=100))
    with pytest.raises(ValueError, match="an internal invariant broke") as raised:
        run_command(fit.main, ["--config", str(config)])
    assert any("this is a bug in pdrl" in note for note in raised.value.__notes__)


def test_a_bug_in_a_constructor_wrapped_by_jsonargparse_keeps_its_traceback(tmp_path, monkeypatch):
    """jsonargparse re-raises a constructor's error as its own ValueError: a bug under it is still a bug."""
    from pdrl.nets import realnvp

    def broken_coupling(*args, **kwargs):
        raise TypeError("a bug in a coupling layer")

    monkeypatch.setattr(realnvp, "AdditiveCoupling", broken_coupling)
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps=2, probe_every=100))
    with pytest.raises(ValueError) as raised:
        run_command(fit.main, ["--config", str(config)])
    assert any("this is a bug in pdrl" in note for note in raised.value.__notes__)


def test_one_sentence_keeps_plain_messages_and_folds_lines():
    assert one_sentence(ValueError("a is wrong:\n  b\n  c")) == "a is wrong: b c"
    assert one_sentence(KeyError()) == "KeyError"


def test_real_process_exit_status_and_single_line(tmp_path):
    """As a user meets it: a corrupt last.ckpt in the run folder ends the process with exit 2 and one line."""
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps=2, probe_every=100))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # what a non-atomic writer leaves when killed
    for args, expected in [
        (["--ckpt_path", "last"], f"pdrl: error: Checkpoint {last} is corrupt or truncated"),
    ]:
        finished = subprocess.run(
            fit_command("--config", str(config), *args),
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        error_lines = [line for line in finished.stderr.splitlines() if line.startswith("pdrl: error:")]
        assert finished.returncode == 2 and len(error_lines) == 1 and error_lines[0].startswith(expected), (
            finished.stderr
        )
        assert "Traceback" not in finished.stderr


@pytest.mark.parametrize(
    ("audio_text", "expected"),
    [
        ("3 4\nalpha 1 2 3 4\nbeta 1 2 x 4\ngamma 1 2 3 4\n", "audio.vec, line 3"),
        ("3 4\nalpha 1 2 3 4\nbeta 1 2 3\ngamma 1 2 3 4\n", "audio.vec, line 3"),
    ],
    ids=["malformed word-vector value", "word-vector dimension mismatch"],
)
def test_malformed_word_vector_file_ends_in_one_line(tmp_path, capsys, audio_text, expected):
    from pdrl.data.word_vectors import synthetic_word_vectors, write_word_vectors

    audio_path, text_path = tmp_path / "audio.vec", tmp_path / "text.vec"
    audio_path.write_text(audio_text)
    _, _, text = synthetic_word_vectors(3, 4, noise=0.1, seed=0)
    write_word_vectors(text_path, ["alpha", "beta", "gamma"], text)
    arguments = ["--config", "configs/retrieval.yaml", "--data.audio_path", str(audio_path),
                 "--data.text_path", str(text_path), "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    status = run_command(fit.main, arguments)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and error.startswith("pdrl: error: ") and expected in error, error
    assert listing(tmp_path / "run") == ["<none>"]  # read before anything is written (no probe loads it earlier)
