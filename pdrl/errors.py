"""Errors a user can fix, and the command-line wrapper that reports them in one sentence.

``run_command(main, args)`` calls ``main(args)``; an error a user can fix (a bad config value or type, a missing
or malformed file, a corrupt checkpoint, a non-finite loss) ends in one line on stderr, ``pdrl: error: <what is
wrong and what to do>``, and exit status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from jsonargparse import ArgumentError

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


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, FloatingPointError, ArgumentError)


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
    except USER_ERRORS as error:
        print(f"pdrl: error: {one_sentence(error)}", file=sys.stderr)
        return EXIT_STATUS
    return 0
