"""Checkpoints a resume can trust: atomic writes, a clear error for a corrupt file, and finding a run's last one.

- ``AtomicCheckpointIO`` writes ``<name>.ckpt`` as ``.<name>.ckpt.tmp-<pid>`` in the same folder, flushes it
  to disk and renames it over the target with ``os.replace`` (atomic on POSIX), so a SIGKILL mid-write leaves
  the previous checkpoint intact and at most a temp file that nothing loads. Loading a file that is not a
  readable checkpoint raises ``CorruptCheckpointError`` naming the file.
- A run folder (``trainer.default_root_dir``) keeps its checkpoints in ``<run folder>/checkpoints``;
  ``find_last_checkpoint`` resolves ``--ckpt_path last`` there.
- ``check_resume`` compares the run config stored in a checkpoint (by ``pdrl.callbacks.checkpoint_state.RunConfig``)
  with the config of a resume before anything is built, logged or trained. The callbacks that put state into every
  checkpoint (run config, W&B run id, random generators) live in ``pdrl.callbacks.checkpoint_state``.

Loading is safe: ``torch.load(..., weights_only=True)``, whose unpickler rebuilds only tensors, plain Python
containers and numbers, and nothing else. Everything pdrl saves is of that kind (the numpy generator state is
stored as a tensor), so no extra class is allow-listed. A checkpoint that needs any other class (one written by
other code, or carrying a pickled callable) is refused with one line, without running anything from it; a user
who trusts the file opts in with the environment variable ``PDRL_TRUSTED_CHECKPOINTS=1``, which loads with
``weights_only=False`` (this runs code from the file: only for files you made or fully trust).
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from pdrl.errors import ConfigError, CorruptCheckpointError

CHECKPOINT_FOLDER = "checkpoints"
WANDB_RUN_ID_KEY = "wandb_run_id"
RUN_CONFIG_KEY = "pdrl_run_config"
TRUST_VARIABLE = "PDRL_TRUSTED_CHECKPOINTS"


class UntrustedCheckpointError(CorruptCheckpointError):
    """A checkpoint that needs more than tensors and plain containers to load; it was not unpickled."""


def trusted_by_user() -> bool:
    """True when the user opted in to full unpickling with ``PDRL_TRUSTED_CHECKPOINTS=1``."""
    return os.environ.get(TRUST_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load`` a Lightning checkpoint safely (``weights_only=True``), or raise one clear error.

    Raises:
        FileNotFoundError: no file at ``path``.
        UntrustedCheckpointError: the file needs a class beyond tensors and plain containers (nothing ran).
        CorruptCheckpointError: the file is truncated or not a Lightning checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist: give the path of a .ckpt file or --ckpt_path last.")
    trusted = trusted_by_user()
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as error:  # noqa: BLE001 - whatever a damaged file makes the unpickler raise
        needed = [] if trusted else _needed_globals(path)
        if needed:
            raise UntrustedCheckpointError(
                f"Checkpoint {path} needs {', '.join(needed[:5])} to load, which pdrl never saves, so it was not "
                f"loaded (unpickling it could run code from the file): if you trust it, set {TRUST_VARIABLE}=1."
            ) from None
        cause = error.__cause__ or error.__context__ or error  # torch wraps the unpickler's error
        first_line = (str(cause).strip().splitlines() or [""])[0][:200]
        raise CorruptCheckpointError(
            f"Checkpoint {path} is corrupt or truncated ({type(cause).__name__}: {first_line}): "
            "delete it and resume from an earlier checkpoint of the run, or start without --ckpt_path."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CorruptCheckpointError(
            f"Checkpoint {path} is not a Lightning checkpoint (no 'state_dict'): give a .ckpt file saved by pdrl.fit."
        )
    return checkpoint


def _needed_globals(path: str) -> list[str]:
    """The classes and functions beyond the safe set that the file's pickle names ([] if it cannot be read)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - a file torch cannot even list is corrupt, which the caller reports
        return []


def plain_config(value: Any) -> Any:
    """A config value as plain dicts, lists, strings and numbers (what a safe load rebuilds)."""
    if isinstance(value, dict):
        return {str(key): plain_config(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_config(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> current`` for every config value that differs (dotted keys, sorted).

    A key that the saved config lacks and whose current value is its class's default is an argument added to pdrl
    since the checkpoint was saved (e.g. ``view_noise_std``): the run trained as that default, so it is no change.
    """
    current = plain_config(current)
    old, new = _flatten(plain_config(saved), ""), _flatten(current, "")
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and not (key not in old and is_added_default(current, key))]  # fmt: skip


def is_added_default(config: dict[str, Any], key: str) -> bool:
    """Whether the dotted ``key`` is ``<...>.init_args.<name>`` of a ``class_path`` whose constructor gives ``name``
    exactly this value as its default."""
    parts = key.split(".")
    if len(parts) < 2:
        return False
    *owner_path, init_args, name = parts
    owner: Any = config
    for part in owner_path:
        owner = owner.get(part) if isinstance(owner, dict) else None
    if init_args != "init_args" or not isinstance(owner, dict):
        return False
    config_class = imported_class(owner.get("class_path"))
    try:
        parameter = inspect.signature(config_class).parameters.get(name) if config_class is not None else None
    except (TypeError, ValueError):  # no signature to read
        return False
    value = (owner.get("init_args") or {}).get(name)
    return parameter is not None and parameter.default is not inspect.Parameter.empty and parameter.default == value


def imported_class(class_path: Any) -> Any:
    """The object that a config's ``class_path`` (``"module.Name"``) names, or None where it does not import."""
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module_name, _, class_name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name, None)


def check_resume(checkpoint: dict[str, Any], path: str, run_config: dict[str, Any], allow_changes: bool) -> list[str]:
    """Check that a checkpoint belongs to the run configured by ``run_config`` (``{"model": ..., "data": ...}``).

    A different task class is always an error (its weights cannot load). A different model or data config (another
    objective, batch size, ...) is an error unless ``allow_changes``; then the changes are returned to be warned
    about. Trainer settings (``max_steps``, devices, ...) may always change.
    """
    saved = checkpoint.get(RUN_CONFIG_KEY)
    saved_class = (saved or {}).get("model", {}).get("class_path") or checkpoint.get("hyper_parameters", {}).get(
        "_class_path"
    )
    current_class = run_config.get("model", {}).get("class_path")
    if saved_class and current_class and saved_class != current_class:
        raise ConfigError(
            f"Checkpoint {path} is of task {saved_class}, but the config trains {current_class}: give a checkpoint "
            "of this task (or the config of that run), or start without --ckpt_path."
        )
    if saved is None:
        return []
    changes = config_changes(saved, run_config)
    if changes and not allow_changes:
        raise ConfigError(
            f"Checkpoint {path} was trained with another config ({'; '.join(changes[:4])}"
            f"{'; ...' if len(changes) > 4 else ''}): resume with the run's own config, or pass "
            "--resume_with_changes true to continue it with the new values on purpose."
        )
    return changes


def check_weights_fit(checkpoint: dict[str, Any], path: str, model: torch.nn.Module) -> None:
    """Raise a ``ConfigError`` when the checkpoint's weights do not fit ``model`` (other task, other sizes)."""
    saved = {name: tuple(value.shape) for name, value in checkpoint["state_dict"].items()}
    current = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    if saved == current:
        return
    missing, unexpected = sorted(current.keys() - saved.keys()), sorted(saved.keys() - current.keys())
    resized = sorted(name for name in saved.keys() & current.keys() if saved[name] != current[name])
    details = [f"{label} {names[:3]}" for label, names in
               (("missing", missing), ("unexpected", unexpected), ("of another shape", resized)) if names]  # fmt: skip
    raise ConfigError(
        f"Checkpoint {path} does not fit this model ({'; '.join(details)}): it is from another task or model size; "
        "give a checkpoint of this run, or start without --ckpt_path."
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoint I/O that never leaves a half-written ``.ckpt`` behind and names a corrupt file on load."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}.")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            if temporary.exists():
                temporary.unlink()

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None):
        return read_checkpoint(path, map_location if map_location is not None else "cpu")


def checkpoint_folder(run_folder: str | os.PathLike) -> Path:
    """Where a run folder keeps its checkpoints."""
    return Path(run_folder) / CHECKPOINT_FOLDER


def find_last_checkpoint(run_folder: str | os.PathLike) -> Path:
    """The newest ``last*.ckpt`` in ``<run_folder>/checkpoints`` (temp files of interrupted writes never match)."""
    folder = checkpoint_folder(run_folder)
    candidates = sorted(folder.glob("last*.ckpt"), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []
    if not candidates:
        raise ConfigError(
            f"--ckpt_path last found no last*.ckpt in {folder}: this run folder has no checkpoint to resume; start "
            "without --ckpt_path, set trainer.default_root_dir to the folder of the run to resume, or save checkpoints "
            "with ModelCheckpoint(save_last=True)."
        )
    return candidates[-1]
