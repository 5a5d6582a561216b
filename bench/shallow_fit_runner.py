"""The shallow MNIST task through ``pdrl.fit`` itself, continued step by step, for the benchmarks that time it
(``bench/shallow_speed.py``, ``bench/shallow_step_profile.py``)."""

from __future__ import annotations

from pathlib import Path

CONFIG = Path(__file__).parents[1] / "configs" / "shallow_mnist.yaml"


def pdrl_fit_runner(root: str, checkpoint: Path | None = None, start_step: int = 0, objective: str | None = None):
    """A closure that continues one ``pdrl.fit`` run of the shipped config by ``k`` more steps, and its CLI; with
    ``checkpoint`` (saved at ``start_step``), the run starts from it (its first ``fit`` resumes it); ``objective``
    replaces the config's (``--model.objective``)."""
    from pdrl.fit import build_cli

    arguments = [
        "--config", str(CONFIG),
        "--data.root", root, "--data.download", "false",
        "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", "runs/shallow_speed",
        *(["--model.objective", objective] if objective else []),
    ]  # fmt: skip
    cli = build_cli(arguments, save_config=False)  # pdrl.fit's own command, parsed and built, not fitted
    trainer = cli.trainer

    def run(steps: int) -> None:
        nonlocal checkpoint
        trainer.fit_loop.epoch_loop.max_steps = (start_step if checkpoint else trainer.global_step) + steps
        trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)
        checkpoint = None  # resumed once; later calls continue in memory

    return run, cli
