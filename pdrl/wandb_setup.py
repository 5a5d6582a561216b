"""W&B that never blocks a run: offline when there is no API key, and one step axis across resumes.

- ``choose_wandb_mode()``: when ``WANDB_MODE`` is unset and no W&B credentials exist (no ``WANDB_API_KEY``, no
  ``WANDB_IDENTITY_TOKEN_FILE``, no W&B entry in the netrc file that ``wandb login`` writes), W&B runs offline
  instead of prompting for an account (on a TTY) or failing (without one). ``WANDB_MODE`` set by the user always
  wins, and so does a key.
- ``offline_notice(run)``: the one line that says where an offline run is written and how to upload it.
- ``WandbLogger``: Lightning's ``WandbLogger`` that logs every row at the trainer's step (W&B's ``_step`` equals the
  step Lightning passes, never decreasing), so a run resumed from a checkpoint continues the same step axis, also
  offline, where W&B itself would restart ``_step`` at 0.
- ``wandb_loggers(trainer)``: the run's W&B loggers that log somewhere, on rank 0; the one place callbacks find them.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pytorch_lightning import Trainer
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger
from pytorch_lightning.utilities import rank_zero_only

DEFAULT_HOST = "https://api.wandb.ai"
STOCK_WANDB_LOGGERS = ("pytorch_lightning.loggers.WandbLogger", "lightning.pytorch.loggers.WandbLogger")


def _netrc_paths(environ: Mapping[str, str]) -> list[Path]:
    if environ.get("NETRC"):
        return [Path(environ["NETRC"]).expanduser()]
    home = Path(environ.get("HOME") or Path.home())
    return [home / ".netrc", home / "_netrc"]


def has_wandb_credentials(environ: Mapping[str, str] | None = None) -> bool:
    """Whether W&B would find credentials: the key or token-file variables, or a netrc entry for the W&B host."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or DEFAULT_HOST).hostname
    for path in _netrc_paths(environ):
        try:
            if path.is_file() and netrc.netrc(str(path)).authenticators(host):
                return True
        except (OSError, netrc.NetrcParseError):  # an unreadable netrc holds no usable key either
            continue
    return False


def choose_wandb_mode(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``WANDB_MODE=offline`` (and ``WANDB_SILENT``) when neither a mode nor credentials are set.

    The variables are inherited by the processes that DDP launches. Returns whether pdrl chose offline.
    """
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE") or has_wandb_credentials(environ):
        return False
    environ["WANDB_MODE"] = "offline"
    environ.setdefault("WANDB_SILENT", "true")  # pdrl's one line replaces W&B's banner
    return True


def offline_notice(run: Any) -> str:
    """The one line about an offline run: where it is written and the command that uploads it later."""
    folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>; run.dir is its files/ folder
    try:
        shown = folder.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = folder
    return (
        f"pdrl: no W&B API key found, so W&B logs offline to {shown}; upload it later with "
        f"`wandb login` then `wandb sync {shown}` (set WANDB_MODE=disabled to log nothing)."
    )


def wandb_loggers(trainer: Trainer, include_disabled: bool = False) -> list[LightningWandbLogger]:
    """The trainer's W&B loggers on rank 0 (none on other ranks, where Lightning's W&B methods do nothing).

    Without ``include_disabled``, only those that log somewhere (not ``WANDB_MODE=disabled``).
    """
    if not trainer.is_global_zero:
        return []
    return [
        logger
        for logger in trainer.loggers
        if isinstance(logger, LightningWandbLogger)
        and (include_disabled or logger.experiment.settings.mode != "disabled")
    ]


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` whose W&B step (``_step``) is the trainer's step.

    Each row is logged with ``step=max(step, last step logged)``, so rows at one step merge, a metric logged with a
    smaller counter (Lightning logs training metrics at ``global_step - 1``, after a callback logged at
    ``global_step``) joins the newest row, and a resumed run continues from the checkpoint's step. The x-axis of
    the charts stays ``trainer/global_step``, as in Lightning. ``pdrl.fit`` uses this class for a config's stock
    ``pytorch_lightning.loggers.WandbLogger``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # W&B warns that the setting is gone, even when None
            self._wandb_init.pop("anonymous", None)
        self._last_wandb_step = 0

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        wandb_step = max(self._last_wandb_step, step or 0)
        prefix = f"{self._prefix}{self.LOGGER_JOIN_CHAR}" if self._prefix else ""
        row = {f"{prefix}{key}": value for key, value in metrics.items()}
        if step is not None and step >= self._last_wandb_step:  # a late row keeps the newest row's x value
            row["trainer/global_step"] = step
        self.experiment.log(row, step=wandb_step)
        self._last_wandb_step = wandb_step
