"""Errors a user can fix, and the command-line wrapper that reports them in one sentence.

``run_command(main, args)`` calls ``main(args)``; an error a user can fix ends in one line on stderr,
``pdrl: error: <what is wrong and what to do>``, and exit status 2, without a traceback. User errors are exactly
the classes in ``USER_ERRORS``: pdrl's own (``ConfigError`` for a config value that cannot work,
``DataFileError`` for a missing/truncated/corrupt data file, ``CorruptCheckpointError``, the non-finite loss
of ``FiniteGuard``), jsonargparse's parse errors, ``OSError`` (a file that cannot be opened or written) and
Lightning's ``MisconfigurationException`` (a trainer setting such as ``--trainer.max_steps -5``).

Anything else (a plain ``ValueError``/``TypeError``/``RuntimeError`` raised inside pdrl, torch or Lightning) is a
bug: it keeps its full traceback, with a last line saying that it is a bug in pdrl and not in the config.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from jsonargparse import ArgumentError
from lightning_fabric.utilities.exceptions import MisconfigurationException

EXIT_STATUS = 2

# the lines of a jsonargparse message that only describe its nesting, not the problem
_STRUCTURE = re.compile(
    r"^(-\s*)?(Does not validate|Subtypes:|Errors:|Given value|Problem with given class_path|"
    r"Expected a <class 'NoneType'>|Not a valid subclass|Validation failed|Import path)"
)
_KEY = re.compile(r'Parser key "([^"]+)"')
# a value outside a Literal type (e.g. an unknown objective name): say the value and the choices in words
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)$")


class ConfigError(ValueError):
    """A config value that cannot work; the message says which key, why, and what to set instead."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint); the message names the file."""


class DataFileError(ValueError):
    """A data file that is there but unusable (truncated, corrupt, wrong checksum, wrong format); says what to do."""


class MissingDataError(DataFileError, FileNotFoundError):
    """Data files that are not there (and could not be downloaded); the message lists only the missing ones."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataFileError,
    CorruptCheckpointError,
    FloatingPointError,  # pdrl.callbacks.finite_guard.NonFiniteLossError: the loss diverged
    ArgumentError,
    OSError,
    MisconfigurationException,
)

BUG_NOTE = (
    "pdrl: this is a bug in pdrl, not an error in your config or data (those end in one line 'pdrl: error: ...'); "
    "please report it with the traceback above."
)


def _raised_in(error: BaseException) -> str:
    """The file of the frame that raised ``error``."""
    traceback = error.__traceback__
    if traceback is None:
        return ""
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code.co_filename


def is_user_error(error: BaseException) -> bool:
    """True for an error the user can fix (see the module docstring), False for a bug.

    jsonargparse re-raises what a constructor raised as its own ``ValueError`` ("Does not validate ..."), with the
    original as ``__cause__``: that is a user error when jsonargparse found it itself, or when every error it
    wraps is one; any other error among the causes (a plain ``ValueError``/``TypeError`` raised in a constructor's
    code) makes it a bug.
    """
    if isinstance(error, USER_ERRORS):
        return True
    if "/jsonargparse/" not in _raised_in(error):
        return False
    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, USER_ERRORS):
            return True
        if "/jsonargparse/" not in _raised_in(cause):
            return False
        cause = cause.__cause__
    return True


def one_sentence(error: BaseException) -> str:
    """The message of ``error`` on one line; a nested jsonargparse message becomes ``key.sub: problem``."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, ArgumentError) or 'Parser key "' in text or "Does not validate" in text:
        keys = _KEY.findall(text)
        lines = [line.strip() for line in text.splitlines()]
        problems = [line for line in lines if line and not _KEY.search(line) and not _STRUCTURE.match(line)]
        if len(problems) > 1:  # drop the other members of a union type ("- Expected a <class 'bool'>")
            problems = [line for line in problems if not line.startswith("- Expected a <class")] or problems
        problems = list(dict.fromkeys(line.lstrip("- ").strip() for line in problems))  # each once, in order
        problem = " ".join(problems) if problems else text.splitlines()[-1].strip()
        literal = _LITERAL.search(problem)
        if literal:
            choices = literal.group(1).replace("'", "")
            problem = f"{literal.group(2)!r} is not one of the choices: {choices}"
        key = ".".join(keys)
        text = f"{key}: {problem}" if key else problem
        if not text.endswith("."):
            text += "."
        text += " Check the config value (python -m pdrl.fit --help lists every key)."
    return " ".join(text.split())


def run_command(main: Callable[[list[str] | None], object], args: list[str] | None = None) -> int:
    """Run ``main(args)``; return 0, or print a user error in one line and return ``EXIT_STATUS``."""
    try:
        main(args)
    except Exception as error:
        if not is_user_error(error):
            error.add_note(BUG_NOTE)
            raise
        print(f"pdrl: error: {one_sentence(error)}", file=sys.stderr)
        return EXIT_STATUS
    return 0
