"""A quiet terminal: the README's quick start, shortened, as a new user runs it (no W&B key, no WANDB_* variable, an
empty HOME, so W&B goes offline), prints pdrl's own lines, the model summary, the progress bar and real warnings,
and none of Lightning's noise: its "Tip" lines, its "GPU available" / "TPU available" lines, its ``num_workers`` hint
(forced here to fire, as on a machine of 16 cores) or the LeafSpec deprecation its own code triggers in torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_wandb_default import NOTICE, fresh_machine_env

# `python -m pdrl.fit ...` on a machine where Lightning counts 16 cores, so it would suggest DataLoader workers
FIT_ON_16_CORES = (
    "import runpy, sys\n"
    "import lightning_fabric.utilities.data as data\n"
    "data._num_cpus_available = lambda: 16\n"
    "assert data.suggested_max_num_workers(1) > 1  # so the num_workers hint would fire\n"
    "sys.argv[0] = 'pdrl.fit'\n"
    "runpy.run_module('pdrl.fit', run_name='__main__', alter_sys=True)\n"
)
SHORT_QUICK_START = [
    "--config", "configs/quickstart_digits.yaml",
    "--trainer.max_steps", "20",
    "--trainer.log_every_n_steps", "10",
    "--trainer.callbacks.init_args.every_n_steps", "20",
    "--trainer.callbacks.init_args.max_iter", "20",
    "--trainer.callbacks.init_args.raw_pixel_baseline", "false",
]  # fmt: skip
NOISE = ("Tip", "litlogger", "litmodels", "GPU available", "TPU available", "PossibleUserWarning", "num_workers",
         "LeafSpec")  # fmt: skip


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("quiet")
    home = folder / "home"
    home.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", FIT_ON_16_CORES, *SHORT_QUICK_START],
        cwd=folder,
        env=fresh_machine_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_fit_prints_no_lightning_noise(output: str) -> None:
    found = [(word, line) for line in output.splitlines() for word in NOISE if word in line]
    assert not found, output[-4000:]


@pytest.mark.slow
def test_a_fit_prints_pdrl_lines_and_the_rest_of_lightning(output: str) -> None:
    lines = output.splitlines()
    assert sum(line.startswith(NOTICE) for line in lines) == 1, output[-4000:]  # W&B went offline, said once
    assert any(line.startswith("probe at step 0: accuracy ") for line in lines), output[-4000:]
    assert any(line.startswith("probe at step 20: accuracy ") for line in lines), output[-4000:]
    assert "Trainable params" in output  # the model summary stays
    assert "`Trainer.fit` stopped: `max_steps=20` reached." in output  # Lightning's other info lines stay


def test_quiet_lightning_is_scoped_to_its_block() -> None:
    """Outside ``main``'s block nothing is filtered: importing pdrl changes no warning filter or logger."""
    import logging
    import warnings

    from pdrl.terminal import LIGHTNING_RANK_ZERO_LOGGER, quiet_lightning

    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    filters, logger_filters = list(warnings.filters), list(logger.filters)
    with quiet_lightning():
        assert len(warnings.filters) > len(filters) and len(logger.filters) == len(logger_filters) + 1
    assert warnings.filters == filters and logger.filters == logger_filters


def test_the_dropped_lines_are_only_lightnings_noise(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from pdrl.terminal import LIGHTNING_RANK_ZERO_LOGGER, quiet_lightning

    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    with caplog.at_level(logging.INFO, logger=LIGHTNING_RANK_ZERO_LOGGER), quiet_lightning():
        for message in ("💡 Tip: try litlogger", "GPU available: False, used: False", "Restoring states from x"):
            logger.info(message)
    assert [record.getMessage() for record in caplog.records] == ["Restoring states from x"]


def test_torchs_no_cuda_runtime_line_is_dropped_on_a_cpu_and_its_other_lines_stay() -> None:
    """A compiled fit on a CPU with torch's CUDA wheels: inductor's first C++ build logs that it found no CUDA."""
    import logging

    from pdrl.terminal import TORCH_CPP_EXTENSION_LOGGER, quiet_lightning

    class Keep(logging.Handler):  # torch's loggers do not propagate to the root logger that caplog reads
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    logger, kept = logging.getLogger(TORCH_CPP_EXTENSION_LOGGER), Keep()
    logger.addHandler(kept)
    try:
        with quiet_lightning():
            logger.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
            logger.warning("Error checking compiler version for c++")
        logger.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")  # outside the block: kept
    finally:
        logger.removeHandler(kept)
    assert kept.messages == [
        "Error checking compiler version for c++",
        "No CUDA runtime is found, using CUDA_HOME='/usr/local'",
    ]


def test_warnings_other_than_the_dropped_ones_still_show() -> None:
    import warnings

    from pytorch_lightning.utilities.warnings import PossibleUserWarning

    from pdrl.terminal import quiet_lightning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning shows, except what the block's own filters drop
        with quiet_lightning():
            warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.",
                          PossibleUserWarning, stacklevel=1)  # fmt: skip
            warnings.warn("Something real about the run", PossibleUserWarning, stacklevel=1)
    assert [str(warning.message) for warning in caught] == ["Something real about the run"]
